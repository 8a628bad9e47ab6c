"""What both INT8 layouts share: the keep-float node set, the topological merge of Q/DQ nodes, the INT8 metadata."""
from __future__ import annotations

from typing import Any, Iterable

from gmg_deploy.errors import CalibrationError
from gmg_deploy.graph.metadata import MetadataLike, as_metadata


def stamp_int8(m: Any, meta: MetadataLike, ranges: dict[str, Any], target: str,
               **counts: Any) -> Any:
    """Attach the INT8 graph's metadata to ``m`` (``precision: int8``; ``calibration``: the ranges' method,
    fingerprint and sequences, the ``target`` and the pass's ``counts``) and check the model; -> ``m``."""
    import onnx

    calibration = {"method": ranges.get("method"), "fingerprint": ranges.get("fingerprint"),
                   "sequences": ranges.get("sequences"), "target": target, **counts}
    as_metadata(meta, "FP32 graph").replace(precision="int8", calibration=calibration).attach(m)
    onnx.checker.check_model(m)
    return m


def keep_float_nodes(graph: Any, keep_float: Iterable[str], ranges: dict[str, Any], where: str) -> set[str]:
    """The nodes left float: ``keep_float`` plus the ranges file's list, all of them nodes of ``graph``."""
    keep = set(keep_float) | set(ranges.get("keep_float", ()))
    unknown = keep - {n.name for n in graph.node}
    if unknown:
        raise CalibrationError(f"{where}: keep_float names nodes not in this graph: {sorted(unknown)[:3]}")
    return keep


def finish_graph(graph: Any, graph_nodes: list[Any], qdq_nodes: list[Any], qdq_inits: list[Any]) -> None:
    """Put the Q/DQ nodes in topological place (:func:`_topo_merge`), add their initializers and drop the
    initializers nothing reads any more (the float weights that became int8)."""
    del graph.node[:]
    graph.node.extend(_topo_merge(graph_nodes, qdq_nodes))
    graph.initializer.extend(qdq_inits)
    used = {i for n in graph.node for i in n.input}
    outputs = {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used or t.name in outputs]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _topo_merge(graph_nodes: list[Any], qdq_nodes: list[Any]) -> list[Any]:
    """Place each Q/DQ node right after the node producing its input (graph order otherwise kept)."""
    by_input: dict[str, list[Any]] = {}
    for q in qdq_nodes:
        by_input.setdefault(q.input[0], []).append(q)
    out: list[Any] = []

    def emit_after(tensor: str) -> None:
        for q in by_input.pop(tensor, []):
            out.append(q)
            emit_after(q.output[0])

    produced = {o for n in list(graph_nodes) + list(qdq_nodes) for o in n.output}
    for t in list(by_input):  # inputs that are graph inputs or initializers
        if t not in produced:
            emit_after(t)
    for n in graph_nodes:
        out.append(n)
        for o in n.output:
            emit_after(o)
    return out
