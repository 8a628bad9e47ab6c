"""One index over an ONNX graph (producer and readers of every tensor, weights, graph I/O) and the shared op lists.

Floor 2 (the graph contract): imports nothing of gmg_deploy.

Every graph pass asks a :class:`GraphIndex` instead of building its own producer/consumer maps. The index
is a snapshot: a pass that rewires edges builds a new one afterwards.
"""
from __future__ import annotations

from typing import Any

#: Ops that only move or relabel data (no arithmetic): a value passed through them is still the same value.
LAYOUT_OPS = frozenset({
    "Reshape", "Transpose", "DepthToSpace", "SpaceToDepth", "Identity", "Cast", "Squeeze", "Unsqueeze", "Flatten",
})


class GraphIndex:
    """Producer and readers of each tensor of ``graph`` (an ``onnx.GraphProto``), its initializers and I/O names."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.producer: dict[str, Any] = {o: n for n in graph.node for o in n.output if o}
        self.consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.initializers: dict[str, Any] = {t.name: t for t in graph.initializer}
        self.constants: set[str] = {n.output[0] for n in graph.node if n.op_type == "Constant"}
        self.inputs: set[str] = {v.name for v in graph.input}
        self.outputs: set[str] = {v.name for v in graph.output}

    def readers(self, tensor: str) -> list[Any]:
        """The nodes that read ``tensor`` (empty when none)."""
        return self.consumers.get(tensor, [])

    def is_static(self, tensor: str) -> bool:
        """Whether ``tensor`` is an initializer or a ``Constant`` output (a weight, not an activation)."""
        return tensor in self.initializers or tensor in self.constants

    def source(self, tensor: str) -> Any:
        """The node producing ``tensor`` once layout-only ops (:data:`LAYOUT_OPS`) are walked back through."""
        p = self.producer.get(tensor)
        while p is not None and p.op_type in LAYOUT_OPS:
            p = self.producer.get(p.input[0])
        return p
