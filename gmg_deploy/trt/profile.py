"""Optimization-profile shapes for a gmg-deploy graph: every input's (min, opt, max) over the batch axis."""
from __future__ import annotations

from dataclasses import dataclass

from gmg_deploy.errors import BuildError
from gmg_deploy.graph.metadata import GraphMetadata, MetadataLike, signature_of


@dataclass(frozen=True)
class BatchRange:
    min: int
    opt: int
    max: int


def batch_range(meta: MetadataLike, min_batch: int | None, opt_batch: int | None, max_batch: int | None) -> BatchRange:
    """Validate the requested batch range against the graph (a fixed-batch graph allows only its batch).

    ``meta``: the graph's metadata, or any mapping holding just its ``batch`` (None: dynamic)."""
    fixed = meta.batch if isinstance(meta, GraphMetadata) else meta.get("batch")  # {"batch": N} alone is enough
    if fixed:
        for name, v in (("--min-batch", min_batch), ("--opt-batch", opt_batch), ("--max-batch", max_batch)):
            if v is not None and v != fixed:
                raise BuildError(f"{name}={v}: this graph was exported with a fixed batch of {fixed}; "
                                 "re-export with a dynamic batch (no --batch) to build a range")
        return BatchRange(fixed, fixed, fixed)
    lo = 1 if min_batch is None else min_batch
    hi = max(lo, 8) if max_batch is None else max_batch
    opt = lo if opt_batch is None else opt_batch
    if lo < 1:
        raise BuildError(f"--min-batch={lo} must be >= 1")
    if not lo <= opt <= hi:
        raise BuildError(f"batch range min={lo}, opt={opt}, max={hi} must satisfy 1 <= min <= opt <= max")
    return BatchRange(lo, opt, hi)


def input_shapes(meta: MetadataLike) -> dict[str, list[int]]:
    """Every graph input's shape with batch 0 as a placeholder, in the signature's order (frame/frames first,
    then state_in.*)."""
    return {t.name: [int(d) for d in t.shape] for t in signature_of(meta).inputs(0)}


def profile_shapes(meta: MetadataLike, rng: BatchRange) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Input name -> (min, opt, max) shapes for ``IOptimizationProfile.set_shape``."""
    out = {}
    for name, shape in input_shapes(meta).items():
        out[name] = tuple(tuple([b] + shape[1:]) for b in (rng.min, rng.opt, rng.max))
    return out
