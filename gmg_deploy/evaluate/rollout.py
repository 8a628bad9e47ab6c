"""Run an exported gmg-deploy graph in ONNX Runtime over whole sequences (OpenSTL test semantics).

Step graphs are chained: ``state_out.X`` feeds ``state_in.X``, zeros start, the first ``pre`` inputs are
observed frames and later ones the previous ``next_frame``. Sequence graphs run in one call. Input and
state dtypes follow the session's declared input types (FP16 I/O works). Used by the accuracy check and
by calibration (which asks for extra outputs through ``on_step``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from gmg_deploy.checks import check_finite_frames, check_frames, check_not_8bit_floats, check_numpy_file
from gmg_deploy.errors import InputError
from gmg_deploy.export.metadata import STATE_IN, STATE_OUT, metadata_from_proto

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def sequence_frames(frames: np.ndarray, meta: dict[str, Any], where: str = "data") -> np.ndarray:
    """``frames`` ``(N, T>=pre, C, H, W)`` checked against the graph's config (:func:`gmg_deploy.checks.check_frames`),
    as float32."""
    cfg = meta["config"]
    a = np.asarray(frames)
    check_frames(a, None, cfg["in_shape"][1:], where, sequences=True, min_steps=int(cfg["pre_seq_length"]))
    return a.astype(np.float32, copy=False)


def rollout(
    session: Any,
    meta: dict[str, Any],
    frames: np.ndarray,
    *,
    aft: int | None = None,
    extra_outputs: list[str] | None = None,
    on_step: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Forecast ``aft`` frames after the first ``pre`` of ``frames``: -> float32 ``(N, aft, C, H, W)``.

    For step graphs, ``extra_outputs`` are fetched at every step and ``on_step(t, tensors)`` receives them
    together with every graph input of that step (``frame`` and ``state_in.*``). ``batch_size`` splits N.
    """
    cfg = meta["config"]
    pre = int(cfg["pre_seq_length"])
    aft = int(cfg["aft_seq_length"]) if aft is None else int(aft)
    frames = sequence_frames(frames, meta)
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch_size={batch_size} must be >= 1")
    fixed = meta.get("batch")
    bs = int(fixed) if fixed else (batch_size or frames.shape[0])
    outs = []
    for s in range(0, frames.shape[0], bs):
        chunk = frames[s : s + bs]
        n = chunk.shape[0]
        if fixed and n < bs:  # pad a short last chunk for a fixed-batch graph
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - n, axis=0)])
        outs.append(_rollout_chunk(session, meta, chunk, pre, aft, extra_outputs or [], on_step)[:n])
    return np.concatenate(outs)


def _rollout_chunk(session, meta, frames, pre, aft, extra, on_step) -> np.ndarray:
    in_types = {i.name: _ORT_TYPES.get(i.type, np.float32) for i in session.get_inputs()}
    if meta["graph"] == "sequence":
        (preds,) = session.run(["preds"], {"frames": frames[:, :pre].astype(in_types["frames"])})
        return preds.astype(np.float32)[:, :aft]
    B = frames.shape[0]
    state = {}
    for st in meta["state"]:
        name = STATE_IN + st["name"]
        shape = [B] + list(st["shape"][1:])
        state[name] = np.zeros(shape, dtype=in_types[name])
    out_names = ["next_frame"] + [STATE_OUT + st["name"] for st in meta["state"]] + list(extra)
    preds = []
    x = None
    for t in range(pre + aft - 1):
        inp = frames[:, t] if t < pre else x
        feed = {"frame": np.asarray(inp).astype(in_types["frame"]), **state}
        res = dict(zip(out_names, session.run(out_names, feed)))
        if on_step is not None:
            on_step(t, {**feed, **{k: res[k] for k in extra}})
        x = res["next_frame"]
        state = {STATE_IN + st["name"]: res[STATE_OUT + st["name"]] for st in meta["state"]}
        if t >= pre - 1:
            preds.append(x.astype(np.float32))
    return np.stack(preds, axis=1)


def graph_metadata(model: Any) -> dict[str, Any]:
    """Metadata of a path or ModelProto."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False) if isinstance(model, (str, Path)) else model
    return metadata_from_proto(proto, str(model) if isinstance(model, (str, Path)) else "ONNX model")


def load_frames_npy(path: str | Path, what: str = "data") -> np.ndarray:
    """Load ``(N, T, C, H, W)`` sequences from a ``.npy`` file, or a ``.npz`` holding ``frames`` or one array."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file {p} does not exist")
    check_numpy_file(p, f"{what} file")
    try:
        obj = np.load(p, allow_pickle=False)
    except (ValueError, OSError):
        raise InputError(f"{what} file {p} is not a NumPy .npy/.npz array file") from None
    if hasattr(obj, "files"):
        if "frames" not in obj.files and len(obj.files) != 1:
            raise InputError(f"{what} file {p} holds arrays {obj.files[:5]}; keep one, or name the frames 'frames'")
        obj = obj["frames" if "frames" in obj.files else obj.files[0]]
    a = np.asarray(obj)
    if a.ndim == 4:  # a single sequence (T, C, H, W)
        a = a[None]
    if a.ndim != 5:
        raise InputError(f"{what} file {p} holds shape {a.shape}; expected (N, T, C, H, W) sequences")
    check_finite_frames(a, f"{what} file {p}")
    check_not_8bit_floats(a, f"{what} file {p}")
    return a
