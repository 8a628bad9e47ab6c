"""The interface every streaming backend implements: one recurrent step between device buffer sets."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from gmg_deploy.model.config import ModelConfig
from gmg_deploy.model.network import state_shapes
from gmg_deploy.runtime.buffers import BufferSet, allocate_sets, check_buffer_budget, torch_dtype


class StepBackend(ABC):
    """Owns the buffers (three :class:`BufferSet` and one staging ``frame_in``) and runs steps on them.

    Subclasses set the attributes below in ``__init__`` and call :meth:`_allocate`.
    """

    name: str = "?"
    config: ModelConfig
    metadata: dict[str, Any]
    batch_size: int
    device: torch.device
    batch_mode: str
    sets: list[BufferSet]
    frame_in: torch.Tensor

    def _allocate(self, io_dtype: str = "float32", state_dtype: str = "float32") -> None:
        C, H, W = self.config.frame_shape
        frame = (self.batch_size, C, H, W)
        self.io_dtype = torch_dtype(io_dtype)
        self.state_dtype = torch_dtype(state_dtype)
        shapes = state_shapes(self.config, self.batch_size)
        check_buffer_budget(frame, shapes, device=self.device, io_dtype=self.io_dtype, state_dtype=self.state_dtype)
        self.sets = allocate_sets(
            frame, shapes, device=self.device, io_dtype=self.io_dtype, state_dtype=self.state_dtype,
        )
        self.frame_in = torch.zeros(frame, dtype=self.io_dtype, device=self.device)

    @property
    def state_names(self) -> list[str]:
        return list(self.sets[0].state)

    @abstractmethod
    def run(self, src: int, dst: int, from_pred: bool) -> None:
        """One step: input ``sets[src].pred`` if ``from_pred`` else ``frame_in``, state ``sets[src].state``
        -> ``sets[dst].pred``, ``sets[dst].state`` (``src != dst``). Asynchronous on CUDA."""

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine resources (buffers go with the object)."""
