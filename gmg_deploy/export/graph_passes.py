"""ONNX graph clean-up after the TorchScript export: static shape plumbing, constant folding, pruning.

The exporter traces ``x.shape[0]`` as ``Shape -> Gather -> Concat -> Reshape`` chains. Every tensor here
has a static shape except (optionally) the batch axis, so :func:`resolve_shapes` probes the graph with
ONNX Runtime at two batch sizes, learns which axis of each tensor follows the batch, and replaces
``Reshape``/``Expand`` shape inputs and ``Shape`` nodes by constants (``-1`` for the batch axis of a
reshape, ``1`` for an expand that keeps the input's batch). :func:`fold_constants` then evaluates every
node whose inputs are all constant (with ``onnx.reference``), and :func:`prune` drops dead nodes and
unused initializers. Only standard ONNX operators are ever written. :func:`copy_nodes` gives the renamed
copies of a step graph that the sequence and forecast builders chain.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from gmg_deploy.graph.index import GraphIndex

#: Ops that blow small constants up into big ones: folded only when the result is small.
_NO_FOLD = {"ConstantOfShape", "Expand", "Tile"}
_FOLD_MAX_ELEMENTS = 1 << 16
#: ... unless their result is this small.
_SMALL_FOLD = 4096


def _c(a: np.ndarray) -> np.ndarray:
    """C-contiguous copy keeping 0-d arrays 0-d (``np.ascontiguousarray`` makes them 1-d)."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy(order="C")


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        out[v.name] = v.type.tensor_type.elem_type
    return out


def _probe_shapes(model: onnx.ModelProto, names: list[str], batches: Iterable[int]) -> dict[int, dict[str, tuple]]:
    """Run ``model`` on zeros at each batch size and return the shapes (for int64 values: also the data)."""
    import onnxruntime as ort

    types = _elem_types(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for n in names:
        if n not in existing:
            probe.graph.output.append(helper.make_tensor_value_info(n, types.get(n, onnx.TensorProto.FLOAT), None))
            existing.add(n)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    result: dict[int, dict[str, tuple]] = {}
    for b in batches:
        feeds = {}
        for i in sess.get_inputs():
            shape = [b if not isinstance(d, int) else d for d in i.shape]
            shape[0] = b
            feeds[i.name] = np.zeros(shape, dtype=np.float32)
        vals = sess.run(out_names, feeds)
        result[b] = {n: (tuple(v.shape), v if v.dtype == np.int64 else None) for n, v in zip(out_names, vals)}
    return result


def _const_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    vals = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            vals[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return vals


def _shape_derived(model: onnx.ModelProto) -> list[str]:
    """Values computed only from ``Shape`` nodes and constants (the int64 shape plumbing)."""
    consts = set(_const_values(model))
    derived: set[str] = set()
    order = []
    for n in model.graph.node:
        if n.op_type == "Constant":
            continue
        if n.op_type == "Shape" or (n.input and all((not i) or i in consts or i in derived for i in n.input)):
            for o in n.output:
                derived.add(o)
                order.append(o)
    return order


def resolve_shapes(model: onnx.ModelProto, batch: int | None) -> onnx.ModelProto:
    """Make shape plumbing constant: batch-independent values, Reshape (-1 on the batch axis), Expand."""
    g = model.graph
    consts = _const_values(model)
    derived = _shape_derived(model)
    wanted: set[str] = set(derived)
    for n in g.node:
        if n.op_type == "Reshape" and n.input[1] not in consts:
            wanted.add(n.output[0])
        elif n.op_type == "Expand" and n.input[1] not in consts:
            wanted.update([n.input[0], n.output[0]])
    if not wanted:
        return model
    batches = [batch] if batch else [2, 3]
    probes = _probe_shapes(model, sorted(wanted), batches)

    def varying(name: str) -> tuple[tuple, set[int]]:
        shapes = [probes[b][name][0] for b in batches]
        base = shapes[0]
        return base, {i for i in range(len(base)) if any(s[i] != base[i] for s in shapes)}

    new_inits = {}
    for name in derived:
        vals = [probes[b][name][1] for b in batches]
        if vals[0] is not None and all(v.shape == vals[0].shape and np.array_equal(v, vals[0]) for v in vals):
            new_inits[name] = vals[0]
    for n in g.node:
        if n.op_type == "Reshape" and n.input[1] not in consts and n.input[1] not in new_inits:
            shape, var = varying(n.output[0])
            if len(var) <= 1:
                name = n.output[0] + "__shape"
                new_inits[name] = np.array([-1 if i in var else d for i, d in enumerate(shape)], dtype=np.int64)
                n.input[1] = name
        elif n.op_type == "Expand" and n.input[1] not in consts and n.input[1] not in new_inits:
            shape, var = varying(n.output[0])
            in_shape, in_var = varying(n.input[0])
            off = len(shape) - len(in_shape)
            if all((i - off) in in_var for i in var):
                name = n.output[0] + "__shape"
                new_inits[name] = np.array([1 if i in var else d for i, d in enumerate(shape)], dtype=np.int64)
                n.input[1] = name
    keep = [n for n in g.node if not all(o in new_inits for o in n.output)]
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(numpy_helper.from_array(_c(a), k) for k, a in new_inits.items())
    return model


def _eval_node(node: onnx.NodeProto, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    ins = [helper.make_tensor_value_info(f"i{k}", helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
           for k, a in enumerate(inputs)]
    outs = [helper.make_empty_tensor_value_info(f"o{k}") for k in range(len(node.output))]
    mapping = {}
    for k, name in enumerate(node.input):
        if name:
            mapping[name] = f"i{k}"
    n2 = onnx.NodeProto()
    n2.CopyFrom(node)
    for k, name in enumerate(n2.input):
        if name:
            n2.input[k] = mapping[name]
    for k in range(len(n2.output)):
        n2.output[k] = f"o{k}"
    m = helper.make_model(helper.make_graph([n2], "fold", ins, outs),
                          opset_imports=[helper.make_opsetid("", opset)])
    feeds = {f"i{k}": a for k, a in enumerate(inputs)}
    return ReferenceEvaluator(m).run(None, feeds)


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every node whose inputs are all constants by initializers (Constant nodes too)."""
    g = model.graph
    opset = _opset(model)
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    graph_outputs = {o.name for o in g.output}
    keep = []
    new_inits: dict[str, np.ndarray] = {}
    for n in g.node:
        if n.op_type == "Constant" and n.output[0] not in graph_outputs:
            attr = n.attribute[0]
            if attr.name == "value":
                arr = numpy_helper.to_array(attr.t)
            else:
                arr = np.asarray(helper.get_attribute_value(attr))
            consts[n.output[0]] = new_inits[n.output[0]] = arr
            continue
        if (
            n.domain in ("", "ai.onnx")
            and all((not i) or i in consts for i in n.input)
            and not any(o in graph_outputs for o in n.output)
            and sum(consts[i].size for i in n.input if i) <= _FOLD_MAX_ELEMENTS * 16
        ):
            outs = _eval_node(n, [consts[i] for i in n.input if i], opset) if all(n.input) else None
            limit = _SMALL_FOLD if n.op_type in _NO_FOLD else _FOLD_MAX_ELEMENTS * 16
            if outs is not None and all(np.asarray(o).size <= limit for o in outs):
                for name, val in zip(n.output, outs):
                    consts[name] = new_inits[name] = np.asarray(val)
                continue
        keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    existing = {t.name for t in g.initializer}
    for name, arr in new_inits.items():
        if name not in existing:
            g.initializer.append(numpy_helper.from_array(_c(arr), name))
    return model


def remove_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop Identity nodes (rewiring their consumers), except those producing a graph output."""
    g = model.graph
    outputs = {o.name for o in g.output}
    alias: dict[str, str] = {}
    keep = []
    for n in g.node:
        if n.op_type == "Identity" and n.output[0] not in outputs:
            alias[n.output[0]] = alias.get(n.input[0], n.input[0])
            continue
        keep.append(n)
    for n in keep:
        for k, name in enumerate(n.input):
            if name in alias:
                n.input[k] = alias[name]
    del g.node[:]
    g.node.extend(keep)
    _fold_output_identities(model)
    return model


def _fold_output_identities(model: onnx.ModelProto) -> None:
    """``X = op(...); out = Identity(X)`` -> ``out = op(...)`` when X is an internal value."""
    g = model.graph
    index = GraphIndex(g)
    outputs, producer = index.outputs, index.producer
    protected = outputs | index.inputs | set(index.initializers)
    drop = set()
    rename: dict[str, str] = {}
    for n in g.node:
        if n.op_type == "Identity" and n.output[0] in outputs:
            src = n.input[0]
            if src in protected or src not in producer or src in rename:
                continue
            p = producer[src]
            p.output[list(p.output).index(src)] = n.output[0]
            rename[src] = n.output[0]
            drop.add(id(n))
    for n in g.node:
        for k, name in enumerate(n.input):
            if name in rename:
                n.input[k] = rename[name]
    if drop:
        keep = [n for n in g.node if id(n) not in drop]
        del g.node[:]
        g.node.extend(keep)


def remove_noop_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop ``Cast`` nodes whose input already has the target type."""
    types = _elem_types(model)
    for t in model.graph.initializer:
        types[t.name] = t.data_type
    outputs = {o.name for o in model.graph.output}
    for n in model.graph.node:
        if n.op_type == "Cast" and n.output[0] not in outputs:
            to = next(a.i for a in n.attribute if a.name == "to")
            if types.get(n.input[0]) == to:
                n.op_type = "Identity"
                del n.attribute[:]
    return remove_identities(model)


def prune(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove nodes whose outputs nobody uses, and unused initializers; drop stale value_info."""
    g = model.graph
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    return model


def clean(model: onnx.ModelProto, batch: int | None) -> onnx.ModelProto:
    """The whole post-export pipeline: identities, static shapes, folding (twice), no-op casts, pruning."""
    remove_identities(model)
    fold_constants(model)
    prune(model)
    resolve_shapes(model, batch)
    fold_constants(model)
    remove_noop_casts(model)
    prune(model)
    return model


def copy_nodes(graph: onnx.GraphProto, rename: Callable[[str], str], name_prefix: str = "") -> list[onnx.NodeProto]:
    """Copies of ``graph``'s nodes with every input and output name passed through ``rename``, except empty
    names and the graph's initializers (the copies share the weights); ``name_prefix`` prefixes node names."""
    shared = {t.name for t in graph.initializer}

    def new(v: str) -> str:
        return v if not v or v in shared else rename(v)

    out = []
    for node in graph.node:
        c = onnx.NodeProto()
        c.CopyFrom(node)
        if name_prefix:
            c.name = name_prefix + (node.name or node.output[0])
        for k, v in enumerate(c.input):
            c.input[k] = new(v)
        for k, v in enumerate(c.output):
            c.output[k] = new(v)
        out.append(c)
    return out
