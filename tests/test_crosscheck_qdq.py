"""Cross-check of the TensorRT Q/DQ pass against ONNX Runtime's ``quantize_static`` on the same step graphs.

ORT is run as close to ours as it goes: ``QuantFormat.QDQ``, QInt8 activations and weights, symmetric
activations (``ActivationSymmetric``), per-channel weights, min/max calibration, with a data reader feeding
``frame`` + ``state_in.*`` at every step of FP32 rollouts of the same 12 sequences our ranges come from.
``same_ops`` also gets our op set (``op_types_to_quantize = QUANT_OPS``) and our keep-float list
(``nodes_to_exclude``); ``default`` is what a plain ORT user gets.

Where both put Q/DQ, they agree exactly: same activation scales (amax/127, zero point 0), same per-channel
weight scales and int8 weights. Where they differ (asserted below), and why ours is kept for TensorRT:

* ORT also quantizes the **outputs** of Conv/ConvTranspose/MatMul/Gemm (so its CPU kernels can run int8 in
  and out).
  TensorRT's explicit quantization wants Q/DQ on the inputs of weighted layers; here every such output goes
  straight into float gate arithmetic (Split, Sigmoid, Tanh, Mul, Add), so an output Q/DQ only adds a
  rounding of every gate pre-activation.
* ORT's DequantizeLinear replaces the tensor for **all** its readers; ours feeds the dequantized tensor only
  to the Conv/MatMul it quantizes and keeps the float tensor for everything else. With ORT's placement the
  warp's GridSample (no INT8 in TensorRT; FP32 island), the gates and the state update read int8-rounded
  values, and a recurrent state output (``state_out.h.0``, also read by layer 1) leaves the graph from a
  DequantizeLinear: the state carried to the next step is rounded to int8 every step.
* ORT quantizes the attention-probability operand of the second MatMul (a Softmax output: values in
  [0, 1], mostly below one int8 step); ours keeps it float (``skip_softmax_operands``).
* ORT quantizes **biases** to int32 (scale = activation scale x weight scale, for its integer kernels);
  ours keeps biases float: only activations and weights of weighted layers get Q/DQ in our layout.
* ``default`` ORT also quantizes the inputs of elementwise ops, Sigmoid/Tanh, Softmax, Concat/Reshape/...
  and our keep-float nodes (motion-GRU convs reading the offset state, output head): 264 quantized
  activations vs our 36 (gmg_tiny), 146 vs 13 (motionrnn_tiny).

Accuracy vs FP32 (8 held-out sequences, 4 forecast steps, ORT CPU), measured max / mean |err|:
gmg_tiny: ours 1.1e-3 / 1.9e-4, ORT same_ops 4.4e-3 / 7.3e-4, ORT default 1.3e-2 / 1.1e-3;
motionrnn_tiny: ours 1.6e-3 / 3.0e-4, ORT same_ops 3.9e-3 / 7.5e-4, ORT default 6.0e-3 / 1.1e-3.
"""
from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from gmg_deploy.precision.qdq import quantize_graph
from gmg_deploy.precision.ranges import QUANT_OPS, collect_ranges
from gmg_deploy.export.metadata import metadata_from_proto
from gmg_deploy.evaluate.ort_session import make_session
from gmg_deploy.evaluate.rollout import rollout
from precision_helpers import fp32_step, sequences

quantization = pytest.importorskip("onnxruntime.quantization")

ORT_RENAMED = "_QuantizeLinear_Input"  # ORT's name for a quantized tensor that is also a graph output
LAYOUT = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten")  # data movement only


class _Feeds(quantization.CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def _ort_quantize(path, out, feeds, **kw) -> onnx.ModelProto:
    # quantize_static rewrites a ModelProto it is given (external data), so it gets a file
    logging.getLogger().setLevel(logging.ERROR)  # its "please run pre-processing" advice
    quantization.quantize_static(
        str(path), str(out), _Feeds(feeds), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
        activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
        calibrate_method=quantization.CalibrationMethod.MinMax, extra_options={"ActivationSymmetric": True}, **kw)
    return onnx.load(str(out))


@pytest.fixture(scope="module", params=["gmg_tiny", "motionrnn_tiny"])
def quantized(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("qdq_" + request.param)
    p = fp32_step(request.param)
    data = sequences(12, 1)
    ranges = collect_ranges(p, data, method="minmax")
    feeds: list[dict[str, np.ndarray]] = []
    rollout(make_session(p), metadata_from_proto(p), data, on_step=lambda t, f: feeds.append(dict(f)))
    assert len(feeds) == 7 and set(feeds[0]) == set(metadata_from_proto(p)["inputs"])
    onnx.save(p, d / "fp32.onnx")
    same = _ort_quantize(d / "fp32.onnx", d / "same.onnx", feeds, op_types_to_quantize=list(QUANT_OPS),
                         nodes_to_exclude=ranges["keep_float"])
    default = _ort_quantize(d / "fp32.onnx", d / "default.onnx", feeds)
    return {"name": request.param, "fp32": p, "ranges": ranges, "ours": quantize_graph(p, ranges),
            "same_ops": same, "default": default}


def _placement(m: onnx.ModelProto) -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, onnx.NodeProto]]:
    """(activation tensor -> names of the nodes reading its DQ, weight -> readers of its DQ, Q node by tensor)."""
    inits = {t.name for t in m.graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in m.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    acts, weights, q_of = {}, {}, {}
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            t = n.input[0].removesuffix(ORT_RENAMED)
            dqs = [r for r in readers.get(n.output[0], []) if r.op_type == "DequantizeLinear"]
            acts[t] = {r.name for dq in dqs for r in readers.get(dq.output[0], [])}
            q_of[t] = n
        elif n.op_type == "DequantizeLinear" and n.input[0] in inits:
            w = n.input[0].removesuffix("_quantized").removesuffix("__int8")
            weights[w] = {r.name for r in readers.get(n.output[0], [])}
    return acts, weights, q_of


def _consumers(m: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in m.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def test_scales_and_int8_weights_agree_where_both_quantize(quantized):
    ours, theirs = quantized["ours"], quantized["same_ops"]
    vo = {t.name: numpy_helper.to_array(t) for t in ours.graph.initializer}
    vt = {t.name: numpy_helper.to_array(t) for t in theirs.graph.initializer}
    ao, wo, qo = _placement(ours)
    at, wt, qt = _placement(theirs)
    shared = set(ao) & set(at)
    assert len(shared) == len(ao)
    for t in shared:
        s_o, s_t = float(vo[qo[t].input[1]]), float(vt[qt[t].input[1]])
        assert s_t == pytest.approx(s_o, rel=1e-6), t
        assert s_o == pytest.approx(quantized["ranges"]["tensors"][t]["amax"] / 127, rel=1e-6)
        assert vt[qt[t].input[2]].dtype == np.int8 and not vt[qt[t].input[2]].any()
    dq_o = {n.input[0]: n for n in ours.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in vo}
    dq_t = {n.input[0]: n for n in theirs.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in vt}
    assert set(wo) <= set(wt)
    for w in wo:
        a, b = dq_o[w + "__int8"], dq_t[w + "_quantized"]
        assert [x.i for x in a.attribute if x.name == "axis"] == [x.i for x in b.attribute if x.name == "axis"], w
        np.testing.assert_allclose(vt[b.input[1]], vo[a.input[1]], rtol=1e-6, err_msg=w)
        np.testing.assert_array_equal(vt[b.input[0]], vo[a.input[0]], err_msg=w)


def test_placement_differences_with_the_same_op_set(quantized):
    """Same op types and keep-float nodes for both: the differences are the placement rules (module doc)."""
    p, ours, theirs = quantized["fp32"], quantized["ours"], quantized["same_ops"]
    keep = set(quantized["ranges"]["keep_float"])
    ao, wo, _ = _placement(ours)
    at, wt, _ = _placement(theirs)
    producer = {o: n for n in p.graph.node for o in n.output}
    consumers = _consumers(p)
    quantized_nodes = [n for n in p.graph.node if n.op_type in QUANT_OPS and n.name not in keep]

    # 1. activations: ORT adds the quantized nodes' outputs and the Softmax operands we skip
    def from_softmax(t: str) -> bool:
        n = producer.get(t)
        while n is not None and n.op_type in LAYOUT:
            n = producer.get(n.input[0])
        return n is not None and n.op_type == "Softmax"

    outputs = {n.output[0] for n in quantized_nodes}
    softmax_operands = {i for n in quantized_nodes if n.op_type == "MatMul" for i in n.input if from_softmax(i)}
    assert set(ao) <= set(at)
    assert set(at) - set(ao) == (outputs | softmax_operands) - set(ao)
    assert bool(softmax_operands) == (quantized["name"] == "gmg_tiny") and not softmax_operands & set(ao)

    # 2. readers: ours dequantizes for the quantized nodes only, ORT for every reader of the tensor
    quantized_names = {n.name for n in quantized_nodes}
    for t, names in ao.items():
        assert names <= quantized_names, t
    for t, names in at.items():
        assert names == {c.name for c in consumers.get(t, [])}, t
    float_readers = Counter(c.op_type for t in at for c in consumers.get(t, []) if c.name not in quantized_names)
    assert {"GridSample", "Sigmoid", "Tanh", "Mul", "Split"} <= set(float_readers)

    # 3. state outputs: ORT emits state_out.h.0 from its DequantizeLinear (the carried state is int8-rounded)
    def output_producers(m):
        prod = {o: n for n in m.graph.node for o in n.output}
        return {o.name: prod[o.name].op_type for o in m.graph.output}

    assert "DequantizeLinear" not in output_producers(ours).values()
    assert output_producers(theirs)["state_out.h.0"] == "DequantizeLinear"
    assert {k for k, v in output_producers(theirs).items() if v == "DequantizeLinear"} == {"state_out.h.0"}

    # 4. weights: ORT adds the biases, as int32
    biases = {n.input[2] for n in quantized_nodes if len(n.input) > 2 and n.input[2]}
    assert set(wo) <= set(wt) and set(wt) - set(wo) == biases and biases
    int32 = {t.name.removesuffix("_quantized") for t in theirs.graph.initializer
             if t.data_type == onnx.TensorProto.INT32}
    assert biases <= int32


def test_default_ort_placement_covers_far_more(quantized):
    """ORT's defaults: Q/DQ in front of gates, elementwise ops, Softmax and our keep-float nodes too."""
    p, ours, theirs = quantized["fp32"], quantized["ours"], quantized["default"]
    keep = set(quantized["ranges"]["keep_float"])
    ao, wo, _ = _placement(ours)
    at, wt, _ = _placement(theirs)
    assert set(ao) <= set(at) and set(wo) <= set(wt)
    assert len(at) > 5 * len(ao)
    reader_ops = {c.op_type for t in at for c in _consumers(p).get(t, [])}
    assert {"Sigmoid", "Tanh", "Add", "Mul", "Concat", "GridSample"} <= reader_ops
    if quantized["name"] == "gmg_tiny":
        assert "Softmax" in reader_ops
    by_name = {n.name: n for n in p.graph.node}
    assert {by_name[k].input[1] for k in keep} <= set(wt)  # keep-float weights quantized as well
    assert not {by_name[k].input[1] for k in keep} & set(wo)


def test_both_quantized_graphs_are_sane_against_fp32(quantized):
    """Loose bound (both are usable INT8 graphs); ours is the closer of the two on these fixtures."""
    p = quantized["fp32"]
    meta = metadata_from_proto(p)
    data = sequences(8, 5)
    ref = rollout(make_session(p), meta, data)
    scale = float(np.abs(ref).max())
    err = {}
    for k in ("ours", "same_ops", "default"):
        out = rollout(make_session(quantized[k]), meta, data)
        assert out.shape == ref.shape and np.isfinite(out).all()
        e = np.abs(out - ref)
        err[k] = (float(e.max()), float(e.mean()))
        assert err[k][0] < 0.1 * scale and err[k][1] < 0.01 * scale, (k, err[k], scale)
    assert err["ours"][1] < err["same_ops"][1] and err["ours"][1] < err["default"][1], err
