"""ONNX Runtime CPU sessions with the project's settings (intra-op threads, spin-waiting, quiet logs)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from gmg_deploy.checks import check_threads


def session_options(threads: int | None = 1, spin: bool = True) -> Any:
    """ORT ``SessionOptions``: ``threads`` intra-op threads (``None``/0: ORT's default, one per core) and
    ``spin``: whether idle intra-op threads busy-wait for work (ORT's default; turn it off on a shared host)."""
    import onnxruntime as ort

    check_threads(threads, "threads")  # 0..4x the CPU count (more threads only cost memory)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.log_severity_level = 4  # fatal only: a failed run is reported once, by the caller's error line
    return opts


def make_session(model: Any, threads: int | None = 1, spin: bool = True) -> Any:
    """An ORT CPU session for a path or an ``onnx.ModelProto`` (graph optimisations on); see
    :func:`session_options` for ``threads``/``spin``."""
    import onnxruntime as ort

    opts = session_options(threads, spin)
    src = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
