"""Run an exported gmg-deploy graph in ONNX Runtime over whole sequences (OpenSTL test semantics).

Step graphs are chained: ``state_out.X`` feeds ``state_in.X``, zeros start, the first ``pre`` inputs are
observed frames and later ones the previous ``next_frame``. Sequence graphs run in one call. Input and
state dtypes follow the session's declared input types (FP16 I/O works); tensor names and order come from
the graph's :class:`~gmg_deploy.graph.signature.GraphSignature`. Used by the accuracy check and by
calibration (which asks for extra outputs through ``on_step``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from gmg_deploy.checks import check_frames
from gmg_deploy.errors import InputError
from gmg_deploy.graph.metadata import GraphMetadata, MetadataLike, as_metadata, load_graph
from gmg_deploy.graph.signature import GraphSignature, state_in, state_out

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def sequence_frames(frames: np.ndarray, meta: MetadataLike, where: str = "data") -> np.ndarray:
    """``frames`` ``(N, T>=pre, C, H, W)`` checked against the graph's config (:func:`gmg_deploy.checks.check_frames`),
    as float32."""
    frame_shape, pre = _frame_spec(meta)
    a = np.asarray(frames)
    check_frames(a, None, frame_shape, where, sequences=True, min_steps=pre)
    return a.astype(np.float32, copy=False)


def _frame_spec(meta: MetadataLike) -> tuple[tuple[int, ...], int]:
    """``(frame shape C,H,W, frames observed)`` of a graph's metadata. A bare ``{"config": {...}}`` without a
    schema (callers that know only the config's ``in_shape``/``pre_seq_length``) is read as given."""
    if isinstance(meta, GraphMetadata) or "schema" in meta:
        m = as_metadata(meta)
        return tuple(m.config.frame_shape), m.pre
    cfg = meta["config"]
    return tuple(int(d) for d in cfg["in_shape"][1:]), int(cfg["pre_seq_length"])


def rollout(
    session: Any,
    meta: MetadataLike,
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
    meta = as_metadata(meta)
    sig = meta.signature
    if sig.graph not in ("step", "sequence"):
        raise InputError(f"a {sig.graph} graph cannot be rolled out here; use its step graph (gmg-export --graph step)")
    aft = sig.aft if aft is None else int(aft)
    frames = sequence_frames(frames, meta)
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch_size={batch_size} must be >= 1")
    fixed = sig.batch
    bs = int(fixed) if fixed else (batch_size or frames.shape[0])
    outs = []
    for s in range(0, frames.shape[0], bs):
        chunk = frames[s : s + bs]
        n = chunk.shape[0]
        if fixed and n < bs:  # pad a short last chunk for a fixed-batch graph
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - n, axis=0)])
        outs.append(_rollout_chunk(session, sig, chunk, aft, extra_outputs or [], on_step)[:n])
    return np.concatenate(outs)


def _rollout_chunk(session: Any, sig: GraphSignature, frames: np.ndarray, aft: int, extra: list[str],
                   on_step: Callable[[int, dict[str, np.ndarray]], None] | None) -> np.ndarray:
    in_types = {i.name: _ORT_TYPES.get(i.type, np.float32) for i in session.get_inputs()}
    pre = sig.pre
    if sig.graph == "sequence":
        (preds,) = session.run([sig.frame_output],
                               {sig.frame_input: frames[:, :pre].astype(in_types[sig.frame_input])})
        return preds.astype(np.float32)[:, :aft]
    B = frames.shape[0]
    state_ins = [t for t in sig.inputs(B) if t.role == "state"]
    state = {t.name: np.zeros(t.shape, dtype=in_types[t.name]) for t in state_ins}
    out_names = sig.output_names + list(extra)
    carry = [(state_in(n), state_out(n)) for n in sig.state_names]  # state_out.X feeds state_in.X
    preds = []
    x = None
    for t in range(pre + aft - 1):
        inp = frames[:, t] if t < pre else x
        feed = {sig.frame_input: np.asarray(inp).astype(in_types[sig.frame_input]), **state}
        res = dict(zip(out_names, session.run(out_names, feed)))
        if on_step is not None:
            on_step(t, {**feed, **{k: res[k] for k in extra}})
        x = res[sig.frame_output]
        state = {i: res[o] for i, o in carry}
        if t >= pre - 1:
            preds.append(x.astype(np.float32))
    return np.stack(preds, axis=1)


def graph_metadata(model: Any) -> GraphMetadata:
    """Metadata of a path (its weights are not read) or ModelProto."""
    return load_graph(model, weights=False)[1]


def load_frames_npy(path: str | Path, what: str = "data") -> np.ndarray:
    """``(N, T, C, H, W)`` float32 sequences of ``path`` (:func:`gmg_deploy.frames.read_frames`: ``.npy``/``.npz``,
    a PNG folder; a 4-D array is one sequence), errors naming the ``{what} file``."""
    from gmg_deploy.frames import read_frames

    return read_frames(path, what=f"{what} file")
