"""The template every streaming backend follows: shared checks and buffers here, one recurrent step per backend.

A backend's constructor calls, in this order, :meth:`StepBackend._set_batch_size`,
:meth:`StepBackend._set_metadata` (a step graph fit for that batch: its :class:`GraphMetadata`, whose
signature, config and batch mode it keeps), :meth:`StepBackend._set_device` and, once its engine is loaded,
:meth:`StepBackend._allocate` (buffers shaped by the signature). :meth:`StepBackend.run` checks the
buffer-set indices and calls the backend's :meth:`StepBackend.run_impl`: that, and loading, is all a
backend implements (the role of Polygraphy's ``BaseRunner.infer()`` -> ``infer_impl()``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from gmg_deploy.errors import InputError
from gmg_deploy.graph.metadata import GraphMetadata, MetadataError, MetadataLike, as_metadata
from gmg_deploy.graph.signature import GraphSignature
from gmg_deploy.model.config import ModelConfig
from gmg_deploy.runtime.buffers import NUM_SETS, BufferSet, allocate_sets, check_buffer_budget, torch_dtype


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"`` -> torch.device, with one clear error when CUDA is missing."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device {device!r} is not a device name; use 'cpu' or 'cuda' (or 'cuda:N')") from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device {device!r} is not supported; use 'cpu' or 'cuda'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but this PyTorch has no CUDA GPU available; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


_GRAPH_HINTS = {"step": "a step graph (gmg-export --graph step)", "forecast": "a forecast graph (--graph forecast)"}


def check_step_metadata(meta: MetadataLike, where: str, batch_size: int,
                        kinds: tuple[str, ...] = ("step",)) -> None:
    """The metadata describes a graph of one of ``kinds`` usable with ``batch_size`` streams, else one clear error."""
    m = as_metadata(meta, where)
    if m.graph not in kinds:
        raise MetadataError(
            f"{where} is a {m.graph!r} graph; the streaming runtime needs "
            + " or ".join(_GRAPH_HINTS.get(k, f"a {k} graph") for k in kinds)
        )
    if m.batch is not None and m.batch != batch_size:
        raise MetadataError(
            f"{where} was exported for batch {m.batch}, but batch_size={batch_size}; use --batch-size {m.batch} "
            "or export with a dynamic batch"
        )


class StepBackend(ABC):
    """Owns the buffers (three :class:`BufferSet` and one staging ``frame_in``) and runs steps on them."""

    name: str = "?"
    #: Graph kinds (:data:`gmg_deploy.graph.signature.GRAPH_KINDS`) this backend runs.
    graph_kinds: tuple[str, ...] = ("step",)
    config: ModelConfig
    metadata: GraphMetadata
    signature: GraphSignature
    batch_size: int
    device: torch.device
    batch_mode: str
    sets: list[BufferSet]
    frame_in: torch.Tensor
    #: Forecast graphs: frames per call, and the last call's ``forecast`` output ``(B,K,C,H,W)`` (allocated by
    #: :meth:`_allocate`); step graphs: None.
    horizon: int | None = None
    rollout: torch.Tensor | None = None
    #: False where the state lives outside this process (Triton): Forecaster.snapshot/restore cannot copy it.
    supports_snapshot: bool = True

    # ------------------------------------------------------------------ shared construction steps
    def _set_batch_size(self, batch_size: int) -> None:
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise InputError(f"batch_size={batch_size} must be >= 1")

    def _set_metadata(self, metadata: MetadataLike, where: str) -> None:
        """Accept the metadata (a :class:`GraphMetadata`, or its JSON dict: checked once here, names against the
        state list included) of a graph of :attr:`graph_kinds` for ``self.batch_size`` streams; keep it and its
        signature, config and batch mode."""
        meta = as_metadata(metadata, where)
        check_step_metadata(meta, where, self.batch_size, self.graph_kinds)
        self.metadata = meta
        self.signature = meta.signature
        self.config = meta.config
        self.batch_mode = meta.batch_mode

    def _require_device_type(self, device: str | torch.device, kind: str) -> None:
        """Refuse a device of another type than ``kind`` before any engine work (no CUDA needed to say so)."""
        if str(device).split(":")[0] != kind:
            raise InputError(f"the {self.name} backend runs on {kind.upper() if kind == 'cuda' else kind} only, "
                             f"not device {str(device)!r}; use --device {kind}")

    def _set_device(self, device: str | torch.device) -> None:
        self.device = resolve_device(device)

    def _allocate(self) -> None:
        """The buffer sets and the staging frame, shaped and typed by the signature for ``batch_size``."""
        sig = self.signature
        frame = tuple(sig.inputs(self.batch_size)[0].shape)
        shapes = sig.state_shapes(self.batch_size)
        self.io_dtype = torch_dtype(sig.io_dtype)
        self.state_dtype = torch_dtype(sig.state_dtype)
        check_buffer_budget(frame, shapes, device=self.device, io_dtype=self.io_dtype, state_dtype=self.state_dtype)
        self.sets = allocate_sets(
            frame, shapes, device=self.device, io_dtype=self.io_dtype, state_dtype=self.state_dtype,
        )
        self.frame_in = torch.zeros(frame, dtype=self.io_dtype, device=self.device)
        if sig.graph == "forecast":
            self.horizon = int(sig.horizon)
            self.rollout = torch.zeros((frame[0], self.horizon, *frame[1:]), dtype=self.io_dtype, device=self.device)

    # ------------------------------------------------------------------ stepping
    @property
    def state_names(self) -> list[str]:
        return list(self.sets[0].state)

    def run(self, src: int, dst: int, from_pred: bool) -> None:
        """One step: input ``sets[src].pred`` if ``from_pred`` else ``frame_in``, state ``sets[src].state``
        -> ``sets[dst].pred``, ``sets[dst].state``. Asynchronous on CUDA."""
        if src == dst or not (0 <= src < NUM_SETS and 0 <= dst < NUM_SETS):
            raise ValueError(f"run({src}, {dst}): source and destination must be two different sets of {NUM_SETS}")
        self.run_impl(src, dst, from_pred)

    @abstractmethod
    def run_impl(self, src: int, dst: int, from_pred: bool) -> None:
        """The backend's step between two checked, distinct buffer sets (see :meth:`run`)."""

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    def reset_slots(self, slots: list[int]) -> None:  # noqa: B027 - optional hook
        """Called by :meth:`Forecaster.reset` with the slots it zeroes; backends whose state lives elsewhere
        (Triton) restart those streams there."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine resources (buffers go with the object)."""
