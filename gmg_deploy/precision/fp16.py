"""FP16 graph pass: an FP32 gmg-deploy ONNX graph -> one that computes in FP16 with FP32 islands.

Strongly typed TensorRT (10 with ``STRONGLY_TYPED``, 11 always) runs every layer in the type the ONNX graph
gives it, so reduced precision is written into the graph: float initializers become FP16, every float
tensor outside the islands is FP16, and ``Cast`` nodes sit at the island borders and at the graph I/O.

FP32 islands (names accepted by ``islands=``):

* ``warp``: every ``GridSample`` and its grid's coordinate arithmetic - the backward slice from the grid
  input through elementwise and data-movement nodes, stopping at Conv/MatMul/Gemm/activation outputs and
  graph inputs (so the offset update ``off_prev*(1-u) + tanh(.)*u + mean`` is in it). A normalised
  coordinate near 1 has an FP16 step of 2**-11 (0.125 px at 512 px).
* ``softmax``: each attention ``Softmax`` (input cast up, probabilities cast back down).
* ``attention_logits``: the ``MatMul`` producing each Softmax input (the logits have no 1/sqrt(A) scale).
* ``growth``: each ``Exp`` (growth decay ``exp(-beta*t)``, present in ``batch_mode=reference`` graphs)
  and its exponent arithmetic.

Graph inputs/outputs stay FP32 unless ``io_fp16``; state tensors follow ``state_dtype``.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from gmg_deploy.errors import PrecisionError
from gmg_deploy.graph.index import LAYOUT_OPS, GraphIndex
from gmg_deploy.graph.signature import DTYPES
from gmg_deploy.precision.fp16_emulation import emulate_fp16  # noqa: F401 (its old home)
from gmg_deploy.precision.graph_types import FLOAT, FLOAT16, name_nodes as _name_nodes, value_types as _value_types
from gmg_deploy.precision.source_graph import fp32_source

DEFAULT_ISLANDS = ("warp", "softmax", "attention_logits", "growth")
_ONNX_TYPE = {"float32": FLOAT, "float16": FLOAT16}  # signature dtype name -> onnx element type

#: Ops that only look at a tensor's shape: their float inputs need no cast.
_SHAPE_ONLY = {"Shape", "Size"}
#: Elementwise / data-movement ops the warp island's backward slice walks through.
_WALK_THROUGH = LAYOUT_OPS | {
    "Add", "Sub", "Mul", "Div", "Neg", "Reciprocal", "Concat", "Slice", "Split", "Expand", "Gather", "Where", "Tile",
}
#: (op_type, input index) that ONNX requires to be float32 whatever the data type.
_ALWAYS_FP32_INPUTS = {("Resize", 2), ("Upsample", 1)}


def _check_islands(islands: Iterable[str]) -> tuple[str, ...]:
    out = tuple(islands)
    bad = [i for i in out if i not in DEFAULT_ISLANDS]
    if bad:
        raise PrecisionError(f"unknown FP32 island(s) {bad}; choose from {', '.join(DEFAULT_ISLANDS)}")
    return out


def find_islands(model: Any, islands: Iterable[str] = DEFAULT_ISLANDS) -> dict[str, list[str]]:
    """Island name -> names of the nodes it keeps in FP32 (``model`` is the FP32 graph)."""
    islands = _check_islands(islands)
    g = model.graph
    types = _value_types(model)
    index = GraphIndex(g)
    producer, inits = index.producer, index.initializers
    out: dict[str, list[str]] = {k: [] for k in islands}

    def backward_slice(start: str, walk: set[str]) -> list[str]:
        seen: list[str] = []
        stack = [start]
        visited: set[str] = set()
        while stack:
            t = stack.pop()
            if t in visited or t in inits or t not in producer:
                continue
            visited.add(t)
            n = producer[t]
            if n.op_type not in walk and n.op_type != "Constant":
                continue
            if n.name not in seen:
                seen.append(n.name)
            stack.extend(i for i in n.input if i and types.get(i) in (FLOAT, FLOAT16))
        return seen

    for n in g.node:
        if "warp" in islands and n.op_type == "GridSample":
            out["warp"].append(n.name)
            for name in backward_slice(n.input[1], _WALK_THROUGH):
                if name not in out["warp"]:
                    out["warp"].append(name)
        if "softmax" in islands and n.op_type == "Softmax":
            out["softmax"].append(n.name)
        if "attention_logits" in islands and n.op_type == "Softmax":
            p = producer.get(n.input[0])
            if p is not None and p.op_type in ("MatMul", "Gemm"):
                out["attention_logits"].append(p.name)
        if "growth" in islands and n.op_type == "Exp":
            out["growth"].append(n.name)
            for name in backward_slice(n.input[0], {"Mul", "Neg", "Sub", "Add", "Div", "Unsqueeze", "Cast"}):
                if name not in out["growth"]:
                    out["growth"].append(name)
    return out


def convert_to_fp16(
    model: Any,
    *,
    io_fp16: bool = False,
    state_dtype: str = "float32",
    islands: Iterable[str] = DEFAULT_ISLANDS,
    check: bool = True,
) -> Any:
    """Return an FP16 copy of the FP32 gmg-deploy graph ``model`` (an ``onnx.ModelProto``).

    ``islands`` lists the FP32 islands kept (default all; see the module docstring). ``io_fp16`` makes the
    frame input/output FP16; ``state_dtype`` (``float32``/``float16``) sets ``state_in.*``/``state_out.*``.
    The metadata is updated (``precision``, ``io_dtype``, ``state_dtype``, ``fp32_islands``).
    """
    import onnx

    islands = _check_islands(islands)
    state_dtype = {"fp16": "float16", "fp32": "float32"}.get(state_dtype, state_dtype)
    if state_dtype not in DTYPES:
        raise PrecisionError(f"state dtype {state_dtype!r} is not fp16 or fp32")
    meta = fp32_source(model, what="FP16 conversion", error=PrecisionError)

    m = onnx.ModelProto()
    m.CopyFrom(model)
    _name_nodes(m)
    g = m.graph
    types = _value_types(m)
    island_map = find_islands(m, islands)
    fp32_nodes = {name for names in island_map.values() for name in names}
    index = GraphIndex(g)
    io_dtype = "float16" if io_fp16 else "float32"
    # each graph input/output's dtype after the pass, as the converted graph's signature gives it
    io_dtypes = {t.name: t.dtype for t in meta.replace(io_dtype=io_dtype, state_dtype=state_dtype).signature.tensors()}

    def io_type(name: str) -> int:
        return _ONNX_TYPE[io_dtypes.get(name, io_dtype)]

    node_type = _node_types(g, types, fp32_nodes, index)
    new_type = _tensor_types(g, types, node_type, io_type)
    fp32_alias = _split_initializers(g, node_type, new_type, index)
    _rewrite_nodes(g, node_type, new_type, fp32_alias)
    _retype_graph_io(g, types, new_type, io_type, set(index.initializers))

    del g.value_info[:]
    m = onnx.shape_inference.infer_shapes(m)
    meta.replace(precision="fp16", io_dtype=io_dtype, state_dtype=state_dtype,
                 fp32_islands={k: len(v) for k, v in island_map.items()}).attach(m)
    if check:
        onnx.checker.check_model(m, full_check=True)
    return m


def _node_types(g: Any, types: dict[str, int], fp32_nodes: set[str], index: GraphIndex) -> dict[str, int]:
    """Phase 1: each node's compute type (FP32 in the islands, FP16 elsewhere; shape-only ops have none)."""
    node_type: dict[str, int] = {}
    for n in g.node:
        if n.op_type in _SHAPE_ONLY:
            continue
        has_float_out = any(types.get(o) == FLOAT for o in n.output)
        if n.name in fp32_nodes:
            node_type[n.name] = FLOAT
        elif n.op_type == "Constant" and has_float_out:
            users = index.readers(n.output[0])
            all_fp32 = users and all(u.name in fp32_nodes for u in users)
            node_type[n.name] = FLOAT if all_fp32 else FLOAT16
        elif has_float_out or n.op_type == "Cast":
            node_type[n.name] = FLOAT16
        else:
            node_type[n.name] = FLOAT  # float inputs, non-float outputs (compares): keep exact
    return node_type


def _tensor_types(g: Any, types: dict[str, int], node_type: dict[str, int], io_type: Any) -> dict[str, int]:
    """Phase 2: the type each float graph input and node output has after the pass."""
    new_type: dict[str, int] = {}
    for v in g.input:
        if types.get(v.name) == FLOAT:
            new_type[v.name] = io_type(v.name)
    for n in g.node:
        for o in n.output:
            if types.get(o) == FLOAT:
                new_type[o] = node_type.get(n.name, FLOAT)
    return new_type


def _split_initializers(g: Any, node_type: dict[str, int], new_type: dict[str, int],
                        index: GraphIndex) -> dict[str, str]:
    """Phase 3: FP16 copy of each float initializer an FP16 node reads, FP32 where an FP32 node does (both:
    an ``__fp32`` alias); updates ``new_type``; returns initializer -> its FP32 alias."""
    from onnx import numpy_helper

    new_inits = []
    fp32_alias: dict[str, str] = {}
    for t in g.initializer:
        if t.data_type != FLOAT:
            new_inits.append(t)
            continue
        users = index.readers(t.name)
        want16 = any(node_type.get(u.name) == FLOAT16 and not _must_fp32(u, t.name) for u in users)
        want32 = any(node_type.get(u.name, FLOAT) == FLOAT or _must_fp32(u, t.name) for u in users) or not users
        arr = numpy_helper.to_array(t)
        if want16:
            new_inits.append(numpy_helper.from_array(_to_fp16(arr, t.name), t.name))
            new_type[t.name] = FLOAT16
            if want32:
                fp32_alias[t.name] = t.name + "__fp32"
                new_inits.append(numpy_helper.from_array(arr.astype(np.float32), t.name + "__fp32"))
        else:
            new_inits.append(t)
            new_type[t.name] = FLOAT
    del g.initializer[:]
    g.initializer.extend(new_inits)
    return fp32_alias


def _rewrite_nodes(g: Any, node_type: dict[str, int], new_type: dict[str, int], fp32_alias: dict[str, str]) -> None:
    """Phase 4: retype constants and Casts, and insert a Cast wherever a tensor's type differs from its reader's."""
    from onnx import helper, numpy_helper

    cast_cache: dict[tuple[str, int], str] = {}
    new_nodes = []

    def cast_to(tensor: str, to: int) -> str:
        key = (tensor, to)
        if key not in cast_cache:
            out = f"{tensor}__to{'fp16' if to == FLOAT16 else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [tensor], [out], name=f"{out}__cast", to=to))
            cast_cache[key] = out
        return cast_cache[key]

    for n in g.node:
        nt = node_type.get(n.name)
        if n.op_type == "Constant" and nt == FLOAT16:
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(a.t), n.name), a.t.name))
        elif n.op_type == "ConstantOfShape" and nt == FLOAT16:
            values = [a for a in n.attribute if a.name == "value"]
            if not values:
                n.attribute.append(helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float16))))
            for a in values:
                if a.t.data_type == FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
        elif n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i == FLOAT:
                    a.i = nt
        if nt is not None and n.op_type not in ("Cast",):
            for idx, i in enumerate(n.input):
                if not i or i not in new_type:
                    continue
                want = FLOAT if _must_fp32(n, i, idx) else nt
                if i in fp32_alias and want == FLOAT:
                    n.input[idx] = fp32_alias[i]
                elif new_type[i] != want:
                    n.input[idx] = cast_to(i, want)
        new_nodes.append(n)
    del g.node[:]
    g.node.extend(new_nodes)


def _retype_graph_io(g: Any, types: dict[str, int], new_type: dict[str, int], io_type: Any,
                     init_names: set[str]) -> None:
    """Phase 5: graph inputs take their new type; a float output whose type differs from the asked I/O type
    gets a final Cast (``<name>__inner`` -> ``<name>``)."""
    from onnx import helper

    for v in g.input:
        if v.name in new_type and v.name not in init_names:
            v.type.tensor_type.elem_type = new_type[v.name]
    rename = {}
    for v in g.output:
        if types.get(v.name) != FLOAT:
            continue
        want = io_type(v.name)
        if new_type.get(v.name) != want:
            rename[v.name] = want
        v.type.tensor_type.elem_type = want
    for name, want in rename.items():
        inner = f"{name}__inner"
        for n in g.node:
            for k, o in enumerate(n.output):
                if o == name:
                    n.output[k] = inner
            for k, i in enumerate(n.input):
                if i == name:
                    n.input[k] = inner
        if any(v.name == name for v in g.input):  # a graph input passed straight through
            raise PrecisionError(f"graph output {name} is a graph input; cannot retype it")
        g.node.append(helper.make_node("Cast", [inner], [name], name=f"{name}__cast_out", to=want))


def _must_fp32(node: Any, tensor: str, idx: int | None = None) -> bool:
    idxs = [idx] if idx is not None else [k for k, i in enumerate(node.input) if i == tensor]
    return any((node.op_type, k) in _ALWAYS_FP32_INPUTS for k in idxs)


def _to_fp16(arr: np.ndarray, where: str) -> np.ndarray:
    finite = np.abs(arr[np.isfinite(arr)]) if arr.size else arr
    if finite.size and float(finite.max()) > 65504.0:
        raise PrecisionError(f"tensor {where} holds {float(finite.max()):.3g}, beyond FP16's range; keep fp32")
    return arr.astype(np.float16)
