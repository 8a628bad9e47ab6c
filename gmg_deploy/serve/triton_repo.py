"""Write a Triton model repository entry ``REPO/NAME/{config.pbtxt, 1/model.*}`` for a forecast graph or engine.

The entry is assembled in a temporary folder inside ``REPO`` and renamed into place, so a failure leaves
nothing behind (``force`` replaces an existing entry only once the new one is complete).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmg_deploy.errors import InputError
from gmg_deploy.export.metadata import MetadataError, read_metadata, signature_of
from gmg_deploy.export.trt_lint import GRIDSAMPLE_BAD_OPSET, check_tensorrt_compat
from gmg_deploy.io import OutputError, umask_mode
from gmg_deploy.serve.triton_config import (ServeOptions, check_forecast_metadata, check_options,
                                            config_text)

DEFAULT_MAX_BATCH = 8


@dataclass(frozen=True)
class RepoEntry:
    """What :func:`write_model_repository` wrote."""

    path: Path
    platform: str
    max_batch: int
    horizon: int
    states: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "platform": self.platform, "max_batch": self.max_batch,
                "horizon": self.horizon, "states": self.states}


def _plan_info(plan: Path, max_batch: int | None) -> tuple[dict[str, Any], int]:
    """Metadata and max batch of a TensorRT engine from its ``.plan.json`` sidecar (gmg-build)."""
    from gmg_deploy.engine.sidecar import read_sidecar, sidecar_path

    side = sidecar_path(plan)
    meta, _ = read_sidecar(side)
    check_forecast_metadata(meta, str(plan))
    import json

    doc = json.loads(side.read_text())
    hi = int((doc.get("batch") or {}).get("max") or 0)
    if hi < 1:
        raise MetadataError(f"{side} records no batch range; rebuild the engine with gmg-build")
    if max_batch is not None and max_batch > hi:
        raise InputError(f"--max-batch {max_batch} exceeds the engine's profile maximum {hi}; "
                         f"use <= {hi} or rebuild with gmg-build --max-batch {max_batch}")
    onnx_path = Path(str(doc.get("onnx") or ""))
    if onnx_path.is_file():  # the graph the engine was built from: the TensorRT lint (GridSample at opset >= 20, ...)
        check_tensorrt_compat(onnx_path)
    elif meta.get("opset") is not None and int(meta["opset"]) >= GRIDSAMPLE_BAD_OPSET:
        raise InputError(f"{plan} was built from an opset {meta['opset']} graph: TensorRT reads its GridSample modes "
                         "as nearest (TensorRT issue #4646); re-export with --opset 17 and rebuild")
    return meta, max_batch or hi


def write_model_repository(model: str | Path, repo: str | Path, options: ServeOptions, *,
                           force: bool = False) -> RepoEntry:
    """Write ``repo/options.name`` for ``model`` (a forecast ``.onnx`` or a ``.plan`` built from one)."""
    check_options(options)
    src = Path(model)
    if not src.is_file():
        raise InputError(f"model {src} does not exist; give a forecast graph (.onnx) or a TensorRT engine (.plan)")
    suffix = src.suffix.lower()
    if suffix in (".plan", ".engine"):
        if options.flavour == "python":
            raise InputError("--flavour python runs ONNX Runtime in the server; give the forecast .onnx graph")
        meta, max_batch = _plan_info(src, options.max_batch)
        platform, fname = "tensorrt_plan", "model.plan"
    elif suffix == ".onnx":
        meta = read_metadata(src)
        check_forecast_metadata(meta, str(src))
        max_batch = options.max_batch or DEFAULT_MAX_BATCH
        platform = "python" if options.flavour == "python" else "onnxruntime_onnx"
        fname = "model.onnx"
    else:
        raise InputError(f"model {src.name}: give a forecast graph (.onnx) or a TensorRT engine (.plan)")
    text = config_text(meta, options, platform=platform, max_batch=max_batch)
    root = Path(repo)
    if not root.parent.exists():
        raise OutputError(f"folder {root.parent} does not exist; create it first")
    root.mkdir(exist_ok=True)
    dest = root / options.name
    if dest.exists() and not force:
        raise OutputError(f"{dest} already exists; pass --force to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{options.name}.", dir=root))
    try:
        os.chmod(tmp, umask_mode("dir"))  # mkdtemp makes 0700; the entry gets what a plain mkdir would
        (tmp / "1").mkdir()
        shutil.copyfile(src, tmp / "1" / fname)
        if platform == "python":
            shutil.copyfile(Path(__file__).with_name("python_model.py"), tmp / "1" / "model.py")
        (tmp / "config.pbtxt").write_text(text)
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{options.name}.old.", dir=root))
            dest.rename(old / "entry")
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    sig = signature_of(meta)
    return RepoEntry(dest, platform, int(max_batch), int(sig.horizon), len(sig.state))
