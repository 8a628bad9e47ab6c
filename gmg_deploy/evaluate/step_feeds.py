"""Each step's inputs (``frame`` + ``state_in.*``) as a real FP32 ONNX Runtime rollout reaches them, for step-wise checks.

A recurrent step graph cannot be compared on random inputs: its states are only realistic after real frames
went through the model. :func:`recurrent_feeds` rolls an FP32 reference step graph out (:func:`rollout`) and
yields, one chunk of sequences at a time, every step's feed dict, cast to the dtypes of the graph under test
(its metadata's ``io_dtype``/``state_dtype``). Polygraphy's ``--data-loader-script`` uses it
(:mod:`gmg_deploy.cli.polygraphy_data`).
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from gmg_deploy.errors import InputError
from gmg_deploy.evaluate.rollout import rollout, sequence_frames
from gmg_deploy.graph.metadata import GraphMetadata, MetadataLike, as_metadata

_NP = {"float32": np.float32, "float16": np.float16}


def check_reference(ref_meta: MetadataLike, where: str) -> GraphMetadata:
    """The reference must be an FP32 step graph (its states are the ones a real FP32 rollout reaches); -> its
    metadata."""
    ref = as_metadata(ref_meta, where)
    if ref.graph != "step":
        raise InputError(f"{where} is a {ref.graph} graph; the reference must be an FP32 step graph "
                         "(gmg-export --graph step)")
    if ref.precision != "fp32":
        raise InputError(f"{where} is {ref.precision}; the reference must be the FP32 step graph")
    return ref


def check_same_model(ref_meta: MetadataLike, test_meta: MetadataLike,
                     ref_where: str, test_where: str) -> None:
    """The graph under test must be a step graph with the reference's I/O names and per-sample shapes."""
    ref_m, test_m = as_metadata(ref_meta, ref_where), as_metadata(test_meta, test_where)
    if test_m.graph != "step":
        raise InputError(f"{test_where} is a {test_m.graph} graph; recurrent feeds are for step graphs")
    ref, test = ref_m.signature, test_m.signature
    if ref.input_names != test.input_names or ref.shapes(1) != test.shapes(1):
        raise InputError(f"{test_where} and the reference {ref_where} are not the same model (inputs or shapes "
                         "differ); point GMG_POLYGRAPHY_GRAPH at the FP32 step graph of the model under test")


def recurrent_feeds(
    session: Any,
    ref_meta: MetadataLike,
    frames: np.ndarray,
    *,
    test_meta: MetadataLike | None = None,
    batch: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield the feed of every step of every sequence: ``pre + aft - 1`` feeds per chunk of ``batch`` sequences.

    ``session`` runs the FP32 reference step graph (metadata ``ref_meta``); ``frames`` ``(N, T, C, H, W)``.
    Feeds carry ``frame`` (an observed frame for the first ``pre`` steps, then the reference's previous
    ``next_frame``) and every ``state_in.*``, in the input dtypes of ``test_meta`` (default: the reference's).
    ``batch`` sequences per feed (default: ``test_meta``'s fixed batch, else all of ``frames``); a short last
    chunk of a fixed-batch graph repeats its last sequence. Only one chunk's feeds are held at a time.
    """
    ref = check_reference(ref_meta, "the reference graph")
    test = ref if test_meta is None else as_metadata(test_meta, "the graph under test")
    frames = sequence_frames(frames, ref)
    fixed = test.batch or ref.batch
    if test.batch and ref.batch and test.batch != ref.batch:
        raise InputError(f"the graph's fixed batch {test.batch} differs from the reference's "
                         f"{ref.batch}; use a dynamic-batch reference (gmg-export without --batch)")
    if batch is not None and batch < 1:
        raise InputError(f"batch={batch} must be >= 1")
    if fixed and batch is not None and batch != fixed:
        raise InputError(f"batch={batch}: the graph has a fixed batch of {fixed}")
    bs = int(fixed or batch or frames.shape[0])
    dtypes = {t.name: _NP[t.dtype] for t in test.signature.inputs(bs)}
    for s in range(0, frames.shape[0], bs):
        chunk = frames[s : s + bs]
        if chunk.shape[0] < bs:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - chunk.shape[0], axis=0)])
        steps: list[dict[str, np.ndarray]] = []

        def keep(t: int, tensors: dict[str, np.ndarray]) -> None:
            steps.append({k: np.ascontiguousarray(v, dtype=dtypes[k]) for k, v in tensors.items() if k in dtypes})

        rollout(session, ref, chunk, on_step=keep, batch_size=bs)
        yield from steps
