"""PyTorch backend: a checkpoint on any device, optionally one CUDA graph per step kind.

Its metadata (a :class:`GraphMetadata`, hence its :class:`GraphSignature` and buffers) is what exporting the
model would write.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from gmg_deploy.errors import InputError
from gmg_deploy.graph.metadata import GraphMetadata
from gmg_deploy.model.config import BATCH_MODES
from gmg_deploy.model.checkpoint import load_checkpoint
from gmg_deploy.model.network import RecurrentPredictor
from gmg_deploy.runtime.backend import StepBackend

#: The :func:`load_checkpoint` options (``checkpoint=`` of :meth:`TorchBackend.from_checkpoint` and
#: :meth:`gmg_deploy.runtime.Forecaster.open`; also accepted as flat keyword arguments, the older spelling).
CHECKPOINT_OPTIONS = ("trust_checkpoint", "config_file", "in_shape", "pre_seq_length", "aft_seq_length", "arch",
                      "warp", "warp_gate")


class TorchBackend(StepBackend):
    """Runs :meth:`RecurrentPredictor.step_tensors` and writes results into the destination buffers.

    ``cuda_graph=True`` (CUDA only) captures each (src, dst, input) step once with ``torch.cuda.graphs``
    and replays it: the buffers are static, so a replay launches the whole step at once.
    """

    name = "torch"

    def __init__(
        self,
        model: RecurrentPredictor,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 1,
        batch_mode: str = "invariant",
        cuda_graph: bool = False,
        fold: bool = True,
    ) -> None:
        if batch_mode not in BATCH_MODES:
            raise InputError(f"batch_mode={batch_mode!r}; use one of {', '.join(BATCH_MODES)}")
        self._set_device(device)
        if cuda_graph and self.device.type != "cuda":
            raise InputError("cuda_graph=True needs device='cuda'")
        self._set_batch_size(batch_size)
        self._set_metadata(GraphMetadata.build(
            model.config, graph="step", warp=model.warp_form, batch_mode=batch_mode, batch=None,
            test_mean=model.test_mean, test_std=model.test_std,
        ), "model")
        self.config = model.config  # the model's own object (the metadata's copy is equal)
        if fold:
            model.fold_multiscale()
        self.model = model.to(self.device).eval()
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple[int, int, bool], Any] = {}
        self._allocate()

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, checkpoint: Mapping[str, Any] | None = None,
                        **kwargs: Any) -> "TorchBackend":
        """Load a ``.ckpt``/``.pth``: ``checkpoint`` holds the :func:`load_checkpoint` options
        (:data:`CHECKPOINT_OPTIONS`: ``trust_checkpoint``, ``config_file``, ``in_shape``, ``warp_gate``, ...),
        ``kwargs`` the backend's (``device``, ``batch_size``, ``batch_mode``, ``cuda_graph``, ``fold``). The
        loader options may also be given flat in ``kwargs`` (the older spelling), not both ways at once."""
        return cls(load_checkpoint(path, **checkpoint_options(checkpoint, kwargs)), **kwargs)

    def _step(self, src: int, dst: int, from_pred: bool) -> None:
        s, d = self.sets[src], self.sets[dst]
        frame = s.pred if from_pred else self.frame_in
        nxt, new = self.model.step_tensors(frame, list(s.state.values()), self.batch_mode)
        d.pred.copy_(nxt)
        for buf, t in zip(d.state.values(), new):
            buf.copy_(t)

    @torch.no_grad()
    def run_impl(self, src: int, dst: int, from_pred: bool) -> None:
        if not self.cuda_graph:
            self._step(src, dst, from_pred)
            return
        key = (src, dst, from_pred)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._capture(key)
            self._graphs[key] = graph
        graph.replay()

    def _capture(self, key: tuple[int, int, bool]):
        # Warm up on a side stream (as torch.cuda.graphs asks), then capture; buffers are static.
        # Warm-up writes into dst, which is never the observed set, so it is harmless.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step(*key)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step(*key)
        return graph


def checkpoint_options(checkpoint: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The :func:`load_checkpoint` keyword arguments: ``checkpoint``'s, plus those popped out of ``kwargs``
    (flat, the older spelling); an unknown option or one given both ways is one :class:`InputError`."""
    given = dict(checkpoint or {})
    unknown = sorted(set(given) - set(CHECKPOINT_OPTIONS))
    if unknown:
        raise InputError(f"checkpoint= has unknown option(s) {', '.join(unknown)}; the options are "
                         f"{', '.join(CHECKPOINT_OPTIONS)}")
    twice = sorted(k for k in CHECKPOINT_OPTIONS if k in kwargs and k in given)
    if twice:
        raise InputError(f"{', '.join(twice)} given both in checkpoint= and as a keyword argument; give it once")
    given.update({k: kwargs.pop(k) for k in CHECKPOINT_OPTIONS if k in kwargs})
    return given
