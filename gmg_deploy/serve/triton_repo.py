"""Write a Triton model repository entry ``REPO/NAME/{config.pbtxt, 1/model.*}`` for a forecast graph or engine.

The entry is assembled in a temporary folder beside its target and renamed into place (a new ``REPO`` as a
whole), so a failure leaves nothing behind (``force`` replaces an existing entry only once the new one is
complete). The ``config.pbtxt`` is parsed with Triton's schema before it is published.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmg_deploy.checks import check_graph_weights
from gmg_deploy.errors import GMGError, InputError
from gmg_deploy.graph.metadata import GraphMetadata, MetadataError, load_graph
from gmg_deploy.export.trt_lint import GRIDSAMPLE_BAD_OPSET, check_tensorrt_compat
from gmg_deploy.io import OutputError, umask_mode
from gmg_deploy.serve.triton_config import (ServeOptions, check_forecast_metadata, check_options,
                                            config_text, parse_config_text)

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


def _plan_info(plan: Path, max_batch: int | None) -> tuple[GraphMetadata, int]:
    """Metadata and max batch of a TensorRT engine from its ``.plan.json`` sidecar (gmg-build)."""
    from gmg_deploy.trt.sidecar import read_sidecar, read_sidecar_doc, sidecar_path

    side = sidecar_path(plan)
    meta, _ = read_sidecar(side)
    check_forecast_metadata(meta, str(plan))
    doc = read_sidecar_doc(side)  # the build's records beside the metadata: batch profile, source graph
    hi = int((doc.get("batch") or {}).get("max") or 0)
    if hi < 1:
        raise MetadataError(f"{side} records no batch range; rebuild the engine with gmg-build")
    if max_batch is not None and max_batch > hi:
        raise InputError(f"--max-batch {max_batch} exceeds the engine's profile maximum {hi}; "
                         f"use <= {hi} or rebuild with gmg-build --max-batch {max_batch}")
    onnx_path = Path(str(doc.get("onnx") or ""))
    if onnx_path.is_file():  # the graph the engine was built from: the TensorRT lint (GridSample at opset >= 20, ...)
        check_tensorrt_compat(onnx_path)
    elif meta.opset is not None and meta.opset >= GRIDSAMPLE_BAD_OPSET:
        raise InputError(f"{plan} was built from an opset {meta.opset} graph: TensorRT reads its GridSample modes "
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
        proto, meta = load_graph(src, weights=False)  # read once: its metadata, then its (inline) weights
        check_forecast_metadata(meta, str(src))
        check_graph_weights(proto, str(src))  # the weights held in the file (external ones are not read)
        max_batch = options.max_batch or DEFAULT_MAX_BATCH
        platform = "python" if options.flavour == "python" else "onnxruntime_onnx"
        fname = "model.onnx"
    else:
        raise InputError(f"model {src.name}: give a forecast graph (.onnx) or a TensorRT engine (.plan)")
    text = config_text(meta, options, platform=platform, max_batch=max_batch)
    parse_config_text(text, f"the config.pbtxt written for {src}")  # Triton's schema (skipped without tritonclient)
    dest = _publish(src, Path(repo), options.name, fname, text, python=platform == "python", force=force)
    sig = meta.signature
    return RepoEntry(dest, platform, int(max_batch), int(sig.horizon), len(sig.state))


def _publish(src: Path, root: Path, name: str, fname: str, text: str, *, python: bool, force: bool) -> Path:
    """Assemble ``NAME/`` in a temporary folder beside its target (inside ``root``, or beside ``root`` when
    ``root`` does not exist yet: then the whole repository folder is the unit renamed in) and rename it into
    place. Any failure (no permission, disk full, file size limit) is one :class:`OutputError` and leaves
    nothing behind; ``force`` replaces an existing entry only once the new one is complete."""
    where = root.parent if str(root.parent) else Path(".")
    if root.exists() and not root.is_dir():
        raise OutputError(f"-o {root} is a file, not a model repository folder; give a folder (new or existing)")
    if not where.is_dir():
        raise OutputError(f"folder {where} does not exist; create it first")
    dest = root / name
    if dest.exists() and not force:
        raise OutputError(f"{dest} already exists; pass --force to replace it")
    new_repo = not root.exists()
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name if new_repo else name}.", dir=where if new_repo else root))
        os.chmod(tmp, umask_mode("dir"))  # mkdtemp makes 0700; the entry gets what a plain mkdir would
        entry = tmp / name if new_repo else tmp
        if new_repo:
            entry.mkdir()
        (entry / "1").mkdir()
        shutil.copyfile(src, entry / "1" / fname)
        if python:
            shutil.copyfile(Path(__file__).with_name("python_model.py"), entry / "1" / "model.py")
        (entry / "config.pbtxt").write_text(text)
        if new_repo:
            os.rename(tmp, root)  # fails (no clobbering) if someone created root meanwhile
            return dest
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=root))
            dest.rename(old / "entry")
        tmp.rename(dest)
        tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return dest
    except OSError as e:
        if isinstance(e, GMGError):
            raise
        target = root if new_repo else dest
        full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        hint = "free some space or write elsewhere" if full else "check the folder's permissions or write elsewhere"
        raise OutputError(f"cannot write {target}: {e.strerror or e}; {hint}") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
