"""Device buffers of a streaming step: three sets of (prediction, state) that steps ping-pong between.

A step reads the state (and, when running autoregressively, the prediction) of one set and writes the
next prediction and state into another. The observed state lives in one set; ``observe`` and
``forecast`` only ever write into the two other sets, so a failed call or a forecast never touches it,
and no state is copied: the set that a step wrote becomes the next step's input.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

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
    """One step's worth of outputs: ``pred`` ``(B,C,H,W)`` and the state tensors in metadata order."""

    pred: torch.Tensor
    state: "OrderedDict[str, torch.Tensor]"

    def tensors(self) -> list[torch.Tensor]:
        return [self.pred, *self.state.values()]


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
