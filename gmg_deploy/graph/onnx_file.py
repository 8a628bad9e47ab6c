"""The one ONNX loader: a path (or a proto, used as it is) -> ``onnx.ModelProto``, with one error for every failure.

Floor 2 (the graph contract): imports the utilities only. Every module that reads an ``.onnx`` file calls
:func:`load_onnx`; a missing file, a folder, a file that is not ONNX and unreadable external weights all
end in one :class:`gmg_deploy.errors.GraphFileError` line naming the file and what to do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from gmg_deploy.errors import GraphFileError, error_reason

__all__ = ["load_onnx", "GraphFileError"]


def load_onnx(model: str | Path | Any, *, weights: bool = True, what: str = "ONNX model") -> Any:
    """``model`` as an ``onnx.ModelProto``: a path is read (``weights=False``: external weight files are not
    loaded, for reading metadata or the graph's structure), a proto is returned as it is."""
    if not isinstance(model, (str, Path)):
        return model
    import onnx

    p = Path(model)
    if not p.exists():
        raise GraphFileError(f"{what} {p} does not exist; export it with gmg-export")
    if not p.is_file():
        raise GraphFileError(f"{what} {p} is not a file; give the .onnx file")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception:  # onnx raises DecodeError, OSError and others for non-ONNX input
        raise GraphFileError(f"{p} is not a readable ONNX model") from None
    if weights and any(t.external_data for t in proto.graph.initializer):
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(proto, str(p.parent))
        except Exception as e:  # a weight file missing or short
            raise GraphFileError(f"{p}: its external weights cannot be read ({error_reason(e, 100)})") from None
    return proto

