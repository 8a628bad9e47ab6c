"""Cross-check of the FP16 pass against onnxconverter-common's ``convert_float_to_float16`` (test extra).

Both convert the same FP32 step graph of each fixture: ours with its default FP32 islands, theirs with
``keep_io_types=True, node_block_list=<the same islands' node names>``. Both then run in ONNX Runtime CPU on
the same inputs (``frame`` + ``state_in.*`` of an FP32 rollout, so errors do not compound over steps).

Every node computes in the same type in both graphs (checked node by node). They differ only in a few
extra FP16 round trips in theirs (see :func:`test_where_the_two_passes_differ`), so outputs may differ by a
couple of FP16 roundings of tensors of the output's size. FP16 has eps = 2**-10 and unit roundoff
u = 2**-11 (one rounding moves ``x`` by at most ``u*|x|``): we allow ``2*u*scale``, one FP16 ulp at the
output's largest magnitude ``scale``. Measured worst over steps 2-7 and all outputs: 0.46 (plain ORT) and
0.78 (emulated FP16) of that bound for gmg_tiny, 0.44 / 0.59 for motionrnn_tiny.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gmg_deploy.export.metadata import metadata_from_proto
from gmg_deploy.evaluate.ort_session import make_session
from gmg_deploy.precision.fp16 import FLOAT, FLOAT16, _value_types, convert_to_fp16, emulate_fp16, find_islands
from precision_helpers import fp32_step, sequences

float16_lib = pytest.importorskip("onnxconverter_common.float16", reason="pip install gmg-deploy[test]")

U16 = 2.0 ** -11  # FP16 unit roundoff (eps / 2)


def _reroute_read_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy in which each graph output that other nodes also read is written by an ``Identity``.

    onnxconverter-common (1.16) with ``keep_io_types`` renames such an output's producer and casts it back
    to FP32 under the output's name, but its internal readers keep the name and get FP32 where they expect
    FP16 (ORT refuses the graph: 'Type parameter (T) of Optype (Concat) bound to different types'). Every
    ``state_out.*`` of our step graphs is such an output (``state_out.h.0`` also feeds layer 1, ...).
    ``Identity`` changes no value. Blocking it too does not work: a blocked node that writes a graph output
    gets an FP16 output despite ``keep_io_types`` (ORT then refuses the graph as well).
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    outs = {o.name for o in m.graph.output}
    read = {i for n in m.graph.node for i in n.input} & outs
    for n in m.graph.node:
        for k, o in enumerate(n.output):
            if o in read:
                n.output[k] = o + "__read"
        for k, i in enumerate(n.input):
            if i in read:
                n.input[k] = i + "__read"
    for o in sorted(read):
        m.graph.node.append(helper.make_node("Identity", [o + "__read"], [o], name=o + "__identity"))
    return m



@pytest.fixture(scope="module", params=["gmg_tiny", "motionrnn_tiny"])
def both(request):
    p32 = fp32_step(request.param)
    assert all(n.name for n in p32.graph.node)  # the block list names nodes: every node has a name
    block = sorted({n for names in find_islands(p32).values() for n in names})
    ours = convert_to_fp16(p32)
    theirs = float16_lib.convert_float_to_float16(_reroute_read_outputs(p32), keep_io_types=True,
                                                  node_block_list=block)
    return request.param, p32, ours, theirs, block


def _feeds(p32, steps: int = 7) -> list[dict[str, np.ndarray]]:
    """``frame`` + ``state_in.*`` at each step of an FP32 rollout of two sequences (real, non-zero states)."""
    meta = metadata_from_proto(p32)
    frames = sequences(2, 5)
    s = make_session(p32)
    names = [o.name for o in s.get_outputs()]
    state = {"state_in." + st["name"]: np.zeros([2] + st["shape"][1:], np.float32) for st in meta["state"]}
    feeds = []
    for t in range(steps):
        feed = {"frame": frames[:, t], **state}
        feeds.append(feed)
        out = dict(zip(names, s.run(None, feed)))
        state = {k: out["state_out." + k[len("state_in."):]] for k in state}
    return feeds


def test_same_compute_type_for_every_node(both):
    """Node by node, both passes compute in the same type: the islands in FP32, everything else in FP16."""
    name, p32, ours, theirs, block = both
    t_ours, t_theirs = _value_types(ours), _value_types(theirs)
    by_name_ours = {n.name: n for n in ours.graph.node}
    by_name_theirs = {n.name: n for n in theirs.graph.node}
    differ = []
    kinds = {FLOAT: 0, FLOAT16: 0}
    for n in p32.graph.node:
        a = [t_ours.get(o) for o in by_name_ours[n.name].output]
        b = [t_theirs.get(o) for o in by_name_theirs[n.name].output]
        if a != b:
            differ.append((n.name, n.op_type, a, b))
        for t in a:
            if t in kinds:
                kinds[t] += 1
    assert differ == []
    assert kinds[FLOAT16] > 5 * kinds[FLOAT] > 0  # mostly FP16, with real FP32 islands
    for g in (ours, theirs):  # graph I/O stays FP32 in both
        assert {v.type.tensor_type.elem_type for v in list(g.graph.input) + list(g.graph.output)} == {FLOAT}


@pytest.mark.parametrize("emulated", [False, True], ids=["ort", "ort-emulated-fp16"])
def test_outputs_agree_within_fp16_rounding(both, emulated):
    """Plain ORT CPU and the emulation (FP16 storage after every op, as gmg-compare scores FP16)."""
    name, p32, ours, theirs, _ = both
    if emulated:
        ours, theirs = emulate_fp16(ours), emulate_fp16(theirs)
    s32, so, st = make_session(p32), make_session(ours), make_session(theirs)
    names = [o.name for o in s32.get_outputs()]
    worst = 0.0
    for feed in _feeds(p32)[1:]:
        ref = dict(zip(names, s32.run(names, feed)))
        a = dict(zip(names, so.run(names, feed)))
        b = dict(zip(names, st.run(names, feed)))
        for k in names:
            scale = float(np.abs(ref[k]).max())
            tol = 2 * U16 * scale
            diff = float(np.abs(a[k] - b[k]).max())
            assert diff <= tol, (k, diff, tol)
            # both are FP16 conversions of the same graph: each is within a few roundings of FP32
            assert float(np.abs(a[k] - ref[k]).max()) <= 8 * U16 * scale, k
            assert float(np.abs(b[k] - ref[k]).max()) <= 8 * U16 * scale, k
            worst = max(worst, diff / tol)
    assert worst < 1.0


def _rounded_island_inputs(model: onnx.ModelProto, original: set[str], block: set[str]) -> set[tuple[str, int]]:
    """(island node, input index) whose input comes from another island node through an added FP16 Cast."""
    producer = {o: n for n in model.graph.node for o in n.output}
    out = set()
    for n in model.graph.node:
        if n.name not in block:
            continue
        for k, i in enumerate(n.input):
            src, casts = i, []
            while src in producer and producer[src].op_type == "Cast" and producer[src].name not in original:
                casts.append(helper.get_attribute_value(producer[src].attribute[0]))
                src = producer[src].input[0]
            if FLOAT16 in casts and src in producer and producer[src].name in block:
                out.add((n.name, k))
    return out


def test_where_the_two_passes_differ(both):
    """Where the graphs differ: FP16 round trips between two FP32 island nodes.

    Ours never rounds a tensor passed from one island node to another, and island outputs that are graph
    outputs leave in FP32. onnxconverter-common casts every output of a blocked node to FP16 and every FP16
    input of a blocked node back to FP32, then removes the Cast pairs - but (1.16) only where the FP16 cast
    has a single reader: an island tensor with several readers (a graph output counts as one) keeps an FP16
    round trip for each island reader. In our graphs that hits the warp's sampling offsets
    (``state_out.offset.*``, read by the two ``Slice`` nodes of the grid), which the warp island exists to
    keep in FP32, and the motion mean; and those two state outputs leave theirs rounded to FP16 (through
    the ``Identity`` of :func:`_reroute_read_outputs`, which is an FP16 node there).
    """
    name, p32, ours, theirs, block = both
    blocked, original = set(block), {n.name for n in p32.graph.node}
    producer = {o: n for n in p32.graph.node for o in n.output}
    readers: dict[str, int] = {o.name: 1 for o in p32.graph.output}
    for n in p32.graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    fan_out = {(n.name, k) for n in p32.graph.node if n.name in blocked for k, i in enumerate(n.input)
               if i in producer and producer[i].name in blocked and readers[i] >= 2}
    assert _rounded_island_inputs(ours, original, blocked) == set()
    assert _rounded_island_inputs(theirs, original, blocked) == fan_out
    assert {("/motion_list.0/warp/Slice", 0), ("/motion_list.0/warp/Slice_1", 0)} <= fan_out
    island_outputs = {o.name for o in p32.graph.output if producer[o.name].name in blocked}
    assert island_outputs == {"state_out.offset.0", "state_out.mean.0"}
    assert {o for o in island_outputs if _through_fp16(ours, o)} == set()
    assert {o for o in island_outputs if _through_fp16(theirs, o)} == island_outputs


def _through_fp16(model: onnx.ModelProto, output: str) -> bool:
    """Whether the graph output ``output`` is computed from an FP16 tensor (walking back over Cast/Identity)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    types = _value_types(model)
    t = output
    while t in producer and producer[t].op_type in ("Cast", "Identity"):
        t = producer[t].input[0]
        if types.get(t) == FLOAT16:
            return True
    return False


def test_ort_cpu_runs_fp16_chains_in_fp32():
    """How ORT CPU runs FP16 (the claim in precision.fp16.emulate_fp16 and evaluate.accuracy), measured.

    ``x -> Cast(fp16) -> Mul(a) -> Mul(a) -> Cast(fp32)`` with ``a = 1 + 2**-10`` (FP16): ORT has no FP16
    ``Mul`` kernel on CPU, wraps each in casts to FP32 and removes the back-to-back cast pairs - the graph's
    own casts included - so the result equals FP32 arithmetic on the unrounded ``x`` (only the FP16 constant
    keeps its rounding). ``emulate_fp16`` restores FP16 storage after every op: it equals true FP16 math.
    """
    a = np.float16(1 + 2 ** -10)
    nodes = [helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
             helper.make_node("Mul", ["xh", "a"], ["y1"]), helper.make_node("Mul", ["y1", "a"], ["y2"]),
             helper.make_node("Cast", ["y2"], ["y"], to=TensorProto.FLOAT)]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [256])],
                          [numpy_helper.from_array(np.array(a), "a")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).uniform(0.5, 1.0, 256).astype(np.float32)
    fp32_math = x * np.float32(a) * np.float32(a)
    true_fp16 = (x.astype(np.float16) * a * a).astype(np.float32)  # NumPy rounds after each op
    assert not np.array_equal(fp32_math, true_fp16)
    plain = make_session(m).run(None, {"x": x})[0]
    np.testing.assert_array_equal(plain, fp32_math)
    emulated = make_session(emulate_fp16(m)).run(None, {"x": x})[0]
    np.testing.assert_array_equal(emulated, true_fp16)
