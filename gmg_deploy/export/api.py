"""``export_model``: a model -> a checked, metadata-carrying ONNX file (step, unrolled sequence or forecast)."""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import onnx

from gmg_deploy.errors import InputError
from gmg_deploy.export.step_export import export_step_proto
from gmg_deploy.graph.metadata import GraphMetadata
from gmg_deploy.graph.signature import GRAPH_KINDS
from gmg_deploy.io import atomic_write_with, check_output_path
from gmg_deploy.model.network import RecurrentPredictor

#: The graph kinds this exporter writes: every kind a signature describes.
GRAPHS = GRAPH_KINDS


@dataclass
class ExportResult:
    """What :func:`export_model` wrote."""

    path: Path
    graph: str
    seconds: float
    node_count: int
    op_types: dict[str, int] = field(default_factory=dict)
    file_size: int = 0
    warp: str = "gridsample"
    warp_gate: str = "motionrnn"
    batch_mode: str = "invariant"
    batch: int | None = None
    opset: int = 17
    horizon: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "graph": self.graph,
            "seconds": round(self.seconds, 3),
            "node_count": self.node_count,
            "op_types": dict(self.op_types),
            "file_size": self.file_size,
            "warp": self.warp,
            "warp_gate": self.warp_gate,
            "batch_mode": self.batch_mode,
            "batch": self.batch,
            "opset": self.opset,
            **({"horizon": self.horizon} if self.horizon is not None else {}),
        }


def build_proto(
    model: RecurrentPredictor,
    *,
    graph: str = "step",
    batch: int | None = None,
    opset: int = 17,
    batch_mode: str = "invariant",
    progress: Callable[[str], None] | None = None,
    horizon: int | None = None,
    step_transform: Callable[[onnx.ModelProto], onnx.ModelProto] | None = None,
) -> onnx.ModelProto:
    """The ONNX model (with metadata) for ``model``; nothing is written. ``model`` is not modified.

    ``graph="forecast"``: ``horizon`` frames per call (default ``aft``); ``step_transform`` (a precision
    pass) is applied to the step graph before it is chained, so FP16/INT8 work as on the step graph.
    """
    if graph not in GRAPHS:
        raise InputError(f"graph={graph!r} is not known; choose step, sequence or forecast")
    if horizon is not None and graph != "forecast":
        raise InputError("horizon applies to the forecast graph only (--graph forecast)")
    say = progress or (lambda msg: None)
    say(f"exporting step ({model.config.arch}, warp={model.warp_form}, warp_gate={model.warp_gate}, "
        f"batch_mode={batch_mode}, "
        f"batch={'dynamic' if batch is None else batch}, opset {opset})...")
    proto = export_step_proto(model, batch=batch, opset=opset, batch_mode=batch_mode)
    if graph == "sequence":
        from gmg_deploy.export.sequence_build import build_sequence

        cfg = model.config
        say(f"chaining {cfg.total_steps} steps (pre={cfg.pre_seq_length}, aft={cfg.aft_seq_length})...")
        proto = build_sequence(proto, cfg, batch=batch)
    meta = GraphMetadata.build(
        model.config,
        graph="step" if graph == "forecast" else graph,
        warp=model.warp_form,
        batch_mode=batch_mode,
        batch=batch,
        test_mean=model.test_mean,
        test_std=model.test_std,
    )
    meta.attach(proto)
    if graph == "forecast":
        from gmg_deploy.export.forecast_build import build_forecast

        k = model.config.aft_seq_length if horizon is None else horizon
        if step_transform is not None:
            proto = step_transform(proto)
        say(f"chaining {k} forecast steps into one call...")
        step_meta = GraphMetadata.from_proto(proto)
        proto = build_forecast(proto, k)
        step_meta.for_forecast(k).attach(proto)
    return proto


def export_model(
    model: RecurrentPredictor,
    path: str | Path,
    *,
    graph: str = "step",
    batch: int | None = None,
    opset: int = 17,
    batch_mode: str = "invariant",
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    transform: Callable[[onnx.ModelProto], onnx.ModelProto] | None = None,
    horizon: int | None = None,
) -> ExportResult:
    """Export ``model`` (either warp form; conv_g folded on a copy) to ``path`` atomically.

    ``graph="step"``: ``frame`` + ``state_in.*`` -> ``next_frame`` + ``state_out.*``;
    ``graph="sequence"``: ``frames (B,pre,C,H,W)`` -> ``preds (B,aft,C,H,W)``, all steps unrolled;
    ``graph="forecast"``: ``frame`` + ``state_in.*`` -> ``forecast (B,horizon,C,H,W)`` + ``state_out.*``
    (``transform`` then runs on the step graph before chaining).
    ``batch=None`` gives a dynamic batch axis. ``progress`` receives human-readable progress lines.
    ``transform`` (e.g. an FP16 or INT8 pass) rewrites the graph in memory before the one write, so a
    failing pass leaves no file behind.
    """
    out = check_output_path(path, force=force)
    t0 = time.perf_counter()
    fc = graph == "forecast"
    proto = build_proto(model, graph=graph, batch=batch, opset=opset, batch_mode=batch_mode, progress=progress,
                        horizon=horizon, step_transform=transform if fc else None)
    if transform is not None and not fc:
        proto = transform(proto)
    data = proto.SerializeToString()
    atomic_write_with(out, lambda tmp: tmp.write_bytes(data))
    seconds = time.perf_counter() - t0
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    return ExportResult(
        path=out,
        graph=graph,
        seconds=seconds,
        node_count=len(proto.graph.node),
        op_types=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        file_size=out.stat().st_size,
        warp=model.warp_form,
        warp_gate=model.warp_gate,
        batch_mode=batch_mode,
        batch=batch,
        opset=int(opset),
        horizon=(model.config.aft_seq_length if horizon is None else int(horizon)) if fc else None,
    )
