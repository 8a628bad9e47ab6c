"""Polygraphy ``--data-loader-script``: every step's ``frame`` + ``state_in.*`` of a real FP32 rollout (``load_data``).

Compare TensorRT and ONNX Runtime (or two graphs) step by step on the states a real rollout reaches::

    polygraphy run step16.onnx --onnxrt --trt \\
        --data-loader-script "$(python3 -c 'import gmg_deploy.cli.polygraphy_data as m; print(m.__file__)')"

With no configuration the feeds come from the shipped demo model: its FP32 step graph (exported in memory)
rolled out on its held-out test sequences (``gmg_deploy.data.demo.demo_dataset("test")``), so any step graph
exported from the demo checkpoint (FP32, FP16, INT8; fixed or dynamic batch) works as is. Environment:

* ``GMG_POLYGRAPHY_DATA=seqs.npy`` - sequences ``(N, T, C, H, W)`` (``.npy``/``.npz``) instead of the demo's;
* ``GMG_POLYGRAPHY_GRAPH=fp32_step.onnx`` - the FP32 step graph whose rollout gives the states (needed for a
  model other than the demo);
* ``GMG_POLYGRAPHY_SEQUENCES=N`` - use the first N sequences (default 4);
* ``GMG_POLYGRAPHY_BATCH=B`` - sequences per feed (default: the graph's fixed batch, else all N);
* ``GMG_POLYGRAPHY_MODEL=graph.onnx`` - the graph Polygraphy runs, whose input dtypes and batch the feeds take
  (default: the first ``.onnx`` file on Polygraphy's command line; none: the reference's dtypes).

Each sequence chunk gives ``pre + aft - 1`` feeds (Polygraphy iterations), steps in order. A configuration
mistake prints ``error: <one line>`` and exits with status 2.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from gmg_deploy.cli.common import say_error
from gmg_deploy.errors import GMGError, InputError

if TYPE_CHECKING:
    from gmg_deploy.graph.metadata import GraphMetadata

ENV_DATA = "GMG_POLYGRAPHY_DATA"
ENV_GRAPH = "GMG_POLYGRAPHY_GRAPH"
ENV_SEQUENCES = "GMG_POLYGRAPHY_SEQUENCES"
ENV_BATCH = "GMG_POLYGRAPHY_BATCH"
ENV_MODEL = "GMG_POLYGRAPHY_MODEL"
DEFAULT_SEQUENCES = 4


def _positive(env: dict[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    try:
        v = int(raw)
    except ValueError:
        raise InputError(f"{name}={raw!r} is not an integer; set it to a count >= 1") from None
    if v < 1:
        raise InputError(f"{name}={v} must be >= 1")
    return v


def model_under_test(argv: list[str], env: dict[str, str]) -> str | None:
    """The graph Polygraphy runs: ``GMG_POLYGRAPHY_MODEL``, else the first existing ``.onnx`` argument after
    ``run`` on its command line, else None."""
    if env.get(ENV_MODEL):
        return env[ENV_MODEL]
    args = argv[argv.index("run") + 1 :] if "run" in argv else argv[1:]
    return next((a for a in args if a.endswith(".onnx") and not a.startswith("-") and Path(a).is_file()), None)


def _graph_meta(path: str, what: str) -> GraphMetadata:
    from gmg_deploy.graph.metadata import GraphMetadata

    if not Path(path).is_file():
        raise InputError(f"{what} {path} does not exist")
    return GraphMetadata.read(path)


def _reference(env: dict[str, str]) -> tuple[Any, GraphMetadata, str]:
    """(ORT session, metadata, name) of the FP32 reference step graph: GMG_POLYGRAPHY_GRAPH or the demo's."""
    from gmg_deploy.evaluate.ort_session import make_session
    from gmg_deploy.evaluate.step_feeds import check_reference
    from gmg_deploy.graph.metadata import GraphMetadata

    path = env.get(ENV_GRAPH)
    if path:
        meta = _graph_meta(path, ENV_GRAPH)
        check_reference(meta, f"{ENV_GRAPH}={path}")
        return make_session(path, threads=None), meta, f"{ENV_GRAPH}={path}"
    from gmg_deploy.data.demo import demo_checkpoint_path
    from gmg_deploy.export.api import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint

    proto = build_proto(load_checkpoint(demo_checkpoint_path()))
    return make_session(proto, threads=None), GraphMetadata.from_proto(proto), "the demo model's FP32 step graph"


def _frames(env: dict[str, str], n: int) -> Any:
    data = env.get(ENV_DATA)
    if data:
        from gmg_deploy.frames import read_frames

        return read_frames(data, what=ENV_DATA)[:n]
    from gmg_deploy.data.demo import demo_dataset

    return demo_dataset("test", n=n)


def feeds(env: dict[str, str] | None = None, argv: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The feed dicts for ``env`` (default ``os.environ``) and Polygraphy's ``argv`` (default ``sys.argv``).

    Everything is checked before the first feed is produced; raises :class:`GMGError` subclasses.
    """
    from gmg_deploy.evaluate.step_feeds import check_same_model, recurrent_feeds

    env = dict(os.environ if env is None else env)
    argv = list(sys.argv if argv is None else argv)
    n = _positive(env, ENV_SEQUENCES) or DEFAULT_SEQUENCES
    batch = _positive(env, ENV_BATCH)
    frames = _frames(env, n)  # the cheap checks first: the reference may be the demo, exported here
    test_path = model_under_test(argv, env)
    test_meta = None if test_path is None else _graph_meta(test_path, "graph under test")
    session, ref_meta, ref_name = _reference(env)
    if test_meta is not None:
        check_same_model(ref_meta, test_meta, ref_name, str(test_path))
    gen = recurrent_feeds(session, ref_meta, frames, test_meta=test_meta, batch=batch)
    first = next(gen)  # shapes and batch are checked here, not in the middle of Polygraphy's run
    yield first
    yield from gen


def load_data() -> Iterator[dict[str, Any]]:
    """Polygraphy's entry point (its default ``--data-loader-func-name``): the feeds of :func:`feeds`.

    A :class:`GMGError` becomes ``error: <one line>`` on stderr and exit status 2.
    """
    gen = feeds()
    try:
        first = next(gen)
    except GMGError as e:
        say_error(str(e))
        raise SystemExit(2) from None
    return _guarded(first, gen)


def _guarded(first: dict[str, Any], gen: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    try:
        yield from gen
    except GMGError as e:
        say_error(str(e))
        raise SystemExit(2) from None
