"""``gmg-infer``'s model-opening options (MODEL/``--model``/``--engine``, ``--backend``, ...) as one object."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gmg_deploy.cli.common import fields_of
from gmg_deploy.errors import InputError


@dataclass(frozen=True)
class ForecasterOptions:
    """How to open the :class:`~gmg_deploy.runtime.forecaster.Forecaster`: which model (checkpoint, ONNX graph,
    TensorRT engine or ``triton://`` URL), backend and device, how many slots, and the backend-specific options."""

    model: str
    backend: str = "auto"
    device: str | None = None
    batch_size: int = 1
    config_file: str | None = None
    trust_checkpoint: bool = False
    warp_gate: str = "auto"
    in_shape: str | None = None
    arch: str | None = None
    pre: int | None = None  # also the run's --pre/--aft (InferOptions); a bare state dict's config needs them
    aft: int | None = None
    threads: int | None = None
    no_spin: bool = False
    precision_hint: str | None = None
    cache_dir: str | None = None
    timeout: float | None = None  # triton:// engines: seconds per request (the backend's default when None)

    @property
    def engine(self) -> str:
        """The model path (old name of :attr:`model`)."""
        return self.model

    @classmethod
    def from_click(cls, options: Mapping[str, Any]) -> "ForecasterOptions":
        """The options from a command's click ``options`` (the model under ``model``, or ``engine``: old name)."""
        own = fields_of(cls, options)
        if "model" not in own and "engine" in options:
            own["model"] = options["engine"]
        return cls(**own)

    def open(self, batch_size: int | None = None, *, streams: int | None = None) -> Any:
        """The :class:`Forecaster` with ``batch_size`` slots (default ``--batch-size``), no more than ``streams``
        when known (unless the engine's batch is fixed)."""
        from gmg_deploy.checks import check_threads, check_timeout
        from gmg_deploy.runtime.forecaster import pick_backend

        check_threads(self.threads, "--threads")
        if self.timeout is not None:
            check_timeout(self.timeout, "--timeout")
        kind = pick_backend(self.model, self.backend)
        dev = self.device or ("cuda" if kind == "tensorrt" else "cpu")
        kwargs: dict[str, Any] = {}
        if kind == "torch":
            from gmg_deploy.cli.model_options import CheckpointOptions

            bare = self.config_file is not None  # a bare state dict: its config also needs pre/aft
            ck = CheckpointOptions(trust_checkpoint=self.trust_checkpoint, config_file=self.config_file,
                                   in_shape=self.in_shape, pre=self.pre if bare else None,
                                   aft=self.aft if bare else None, arch=self.arch, warp_gate=self.warp_gate)
            kwargs = {"checkpoint": {k: v for k, v in ck.load_kwargs().items() if v is not None}}
        elif self.config_file or self.trust_checkpoint or self.warp_gate != "auto" or self.in_shape or self.arch:
            raise InputError("--config-file/--trust-checkpoint/--in-shape/--arch/--warp-gate apply to checkpoints "
                             "(.ckpt/.pth) only; an exported graph or engine carries its configuration and warp-gate "
                             "layout")
        if kind == "onnxruntime":
            kwargs = {"threads": self.threads, "spin": not self.no_spin}
        elif kind == "openvino":
            dev = self.device or "cpu"
            kwargs = {"threads": self.threads, "precision_hint": self.precision_hint, "cache_dir": self.cache_dir}
            if self.no_spin:
                raise InputError("--no-spin applies to the onnxruntime backend only")
        elif self.threads is not None or self.no_spin:
            raise InputError("--threads/--no-spin apply to the onnxruntime backend (--threads also to openvino): "
                             "an .onnx graph only")
        if kind != "openvino" and (self.precision_hint or self.cache_dir):
            raise InputError("--precision-hint/--cache-dir apply to the openvino backend (--backend openvino) only")
        if kind == "triton" and self.timeout is not None:
            kwargs = {"timeout": self.timeout}
        elif self.timeout is not None:
            raise InputError("--timeout applies to a remote engine (triton://HOST:PORT/NAME) only")
        return _open_clamped(self.model, streams, self.batch_size if batch_size is None else batch_size, kind,
                             dev, kwargs)


def _open_clamped(model: str, streams: int | None, batch_size: int, kind: str, dev: str, kwargs: dict) -> Any:
    """Open the model with no more slots than the input has streams (unless the engine's batch is fixed)."""
    from gmg_deploy.errors import GMGError
    from gmg_deploy.runtime.forecaster import Forecaster

    slots = batch_size if streams is None or streams < 1 else min(batch_size, streams)
    try:
        return Forecaster.open(model, backend=kind, device=dev, batch_size=slots, **kwargs)
    except GMGError:
        if slots == batch_size:
            raise
        return Forecaster.open(model, backend=kind, device=dev, batch_size=batch_size, **kwargs)


#: The old name (the class holds any model file, not only a TensorRT engine).
EngineOptions = ForecasterOptions
