"""Device buffers of a streaming step: three sets of (prediction, state) that steps ping-pong between.

A step reads the state (and, when running autoregressively, the prediction) of one set and writes the
next prediction and state into another. The observed state lives in one set; ``observe`` and
``forecast`` only ever write into the two other sets, so a failed call or a forecast never touches it,
and no state is copied: the set that a step wrote becomes the next step's input. Shapes, order and dtypes
come from the graph's :class:`gmg_deploy.graph.signature.GraphSignature` (see ``StepBackend._allocate``).
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from gmg_deploy.errors import InputError
from gmg_deploy.frames.budget import BUDGET_ENV, memory_budget  # one budget: defined below the frame reader

#: How many buffer sets a backend holds (observed state + two for ping-pong).
NUM_SETS = 3

_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """``"float32"``/``"float16"`` (metadata ``io_dtype``/``state_dtype``) -> torch dtype."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unsupported tensor dtype {name!r}; expected one of {sorted(_DTYPES)}") from None


@dataclass
class BufferSet:
    """One step's worth of outputs: ``pred`` ``(B,C,H,W)`` and the state tensors in the signature's order."""

    pred: torch.Tensor
    state: "OrderedDict[str, torch.Tensor]"

    def tensors(self) -> list[torch.Tensor]:
        return [self.pred, *self.state.values()]


def _human(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def check_buffer_budget(frame_shape: Sequence[int], state_shapes: Mapping[str, Sequence[int]], *,
                        device: torch.device, io_dtype: torch.dtype, state_dtype: torch.dtype) -> int:
    """Bytes of the buffers for this batch (``NUM_SETS`` sets + the staging frame); refuse over budget."""
    def nbytes(shape: Sequence[int], dtype: torch.dtype) -> int:
        return math.prod(int(d) for d in shape) * torch.empty((), dtype=dtype).element_size()

    per_set = nbytes(frame_shape, io_dtype) + sum(nbytes(s, state_dtype) for s in state_shapes.values())
    need = NUM_SETS * per_set + nbytes(frame_shape, io_dtype)
    budget = memory_budget(device)
    if need > budget:
        batch = max(int(frame_shape[0]), 1)
        fits = max(budget * batch // need, 0)
        source = f"${BUDGET_ENV}" if os.environ.get(BUDGET_ENV) else "a quarter of the available memory"
        raise InputError(
            f"batch size {batch} needs {_human(need)} of stream buffers on {device} ({_human(need // batch)} per "
            f"stream), over the budget of {_human(budget)} ({source}); use --batch-size {fits} or less"
        )
    return need


def allocate_sets(
    frame_shape: Sequence[int],
    state_shapes: Mapping[str, Sequence[int]],
    *,
    device: torch.device,
    io_dtype: torch.dtype,
    state_dtype: torch.dtype,
    count: int = NUM_SETS,
) -> list[BufferSet]:
    """``count`` zero-filled buffer sets (allocated once, contiguous, on ``device``)."""
    return [
        BufferSet(
            pred=torch.zeros(tuple(frame_shape), dtype=io_dtype, device=device),
            state=OrderedDict(
                (n, torch.zeros(tuple(s), dtype=state_dtype, device=device)) for n, s in state_shapes.items()
            ),
        )
        for _ in range(count)
    ]


def other_sets(cur: int) -> tuple[int, int]:
    """The two set indices that are not ``cur`` (the ping-pong pair)."""
    a, b = (i for i in range(NUM_SETS) if i != cur)
    return a, b


def check_horizon_budget(horizon: int, flag: str, *, frame_shape: Sequence[int], streams: int,
                         device: torch.device, kept: int = 0) -> int:
    """Refuse a forecast horizon whose forecasts do not fit the memory budget (:func:`memory_budget`).

    One call of ``forecast(horizon)`` on ``streams`` slots holds ``horizon`` float32 frames per slot twice
    (the steps and their stack); ``kept`` more frames per unit of horizon stay for the whole run (e.g. the
    ``(N, aft, C, H, W)`` predictions of N sequences). Returns the largest horizon allowed.
    """
    frame = math.prod(int(d) for d in frame_shape) * 4
    per_unit = frame * (2 * max(int(streams), 1) + max(int(kept), 0))
    budget = memory_budget(device)
    largest = max(budget // per_unit, 0)
    if horizon > largest:
        source = f"${BUDGET_ENV}" if os.environ.get(BUDGET_ENV) else "a quarter of the available memory"
        need = _human(horizon * per_unit) if horizon < 2**62 // per_unit else "more memory than any machine has"
        raise InputError(f"{flag} {horizon} needs {need} for its forecasts ({_human(per_unit)} per frame ahead), over "
                         f"the memory budget of {_human(budget)} ({source}); use {flag} {largest} or less")
    return largest
