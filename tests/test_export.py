"""ONNX export: step and sequence graphs vs the PyTorch model and the golden fixtures (ONNX Runtime CPU)."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from conftest import FIXTURE_NAMES, fixture_golden, run_step_chain, write_lightning_ckpt
from gmg_deploy.errors import GMGError
from gmg_deploy.evaluate.ort_session import make_session
from gmg_deploy.export import export_model, read_metadata
from gmg_deploy.model import load_checkpoint

torch.set_num_threads(1)
TOL = 1e-5


@pytest.fixture(scope="session")
def exports(tmp_path_factory, ckpt_dir):
    """``get(name, graph, warp, mode)`` -> (ExportResult, model); each file exported once per session."""
    d = tmp_path_factory.mktemp("onnx")
    cache: dict = {}

    def get(name: str, graph: str, warp: str = "gridsample", mode: str = "invariant"):
        key = (name, graph, warp, mode)
        if key not in cache:
            model = load_checkpoint(ckpt_dir / f"{name}.ckpt", warp=warp)
            res = export_model(model, d / ("_".join(key) + ".onnx"), graph=graph, batch_mode=mode)
            cache[key] = (res, model)
        return cache[key]

    return get


def _frames(name: str, batch: int) -> torch.Tensor:
    fr = torch.from_numpy(fixture_golden(name)["frames"])
    return fr[[0, 1, 0][:batch]] if batch == 3 else fr[:batch]


def _check(a: np.ndarray, b: np.ndarray, what: str) -> None:
    err = float(np.abs(a - b).max())
    assert a.shape == b.shape, what
    assert err < TOL, f"{what}: max abs diff {err}"


@pytest.mark.parametrize("mode", ["invariant", "reference"])
@pytest.mark.parametrize("warp", ["gridsample", "gather"])
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_step_graph_chained_matches_pytorch(exports, name, warp, mode):
    res, model = exports(name, "step", warp, mode)
    sess = make_session(res.path)
    for batch in (1, 3):  # one dynamic-batch file
        frames = _frames(name, batch)
        want = model.predict(frames, batch_invariant=mode == "invariant", all_steps=True).numpy()
        got = run_step_chain(sess, model, frames.numpy())
        _check(got, want, f"step {name} {warp} {mode} B={batch}")
    if mode == "reference":
        g = fixture_golden(name)
        _check(run_step_chain(sess, model, g["frames"]), g["all_steps"], f"step golden {name} {warp}")
    else:
        g = fixture_golden(name)
        _check(run_step_chain(sess, model, g["frames"]), g["all_steps_single"], f"step golden-single {name} {warp}")


@pytest.mark.parametrize("mode", ["invariant", "reference"])
@pytest.mark.parametrize("warp", ["gridsample", "gather"])
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_sequence_graph_matches_pytorch(exports, name, warp, mode):
    res, model = exports(name, "sequence", warp, mode)
    sess = make_session(res.path)
    pre = model.config.pre_seq_length
    for batch in (1, 3):
        frames = _frames(name, batch)
        want = model.predict(frames, batch_invariant=mode == "invariant").numpy()
        got = sess.run(["preds"], {"frames": frames[:, :pre].numpy()})[0]
        _check(got, want, f"sequence {name} {warp} {mode} B={batch}")
    g = fixture_golden(name)
    got = sess.run(["preds"], {"frames": g["frames"][:, :pre]})[0]
    _check(got, g["preds"] if mode == "reference" else g["preds_single"], f"sequence golden {name} {warp} {mode}")


def test_reference_mode_batch3_differs_from_batch1(exports):
    """The growth decay uses the batch index: sample 2 of a batch of 3 is not what it gets alone."""
    res, model = exports("gmg_tiny", "sequence", "gridsample", "reference")
    sess = make_session(res.path)
    pre = model.config.pre_seq_length
    frames = _frames("gmg_tiny", 3)[:, :pre].numpy()
    batched = sess.run(["preds"], {"frames": frames})[0]
    alone = sess.run(["preds"], {"frames": frames[2:3]})[0]
    assert np.abs(batched[2] - alone[0]).max() > 1e-6
    assert np.abs(batched[0] - alone[0]).max() < TOL  # index 0 decays by exp(0)


@pytest.mark.parametrize("graph", ["step", "sequence"])
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_metadata_round_trip(exports, name, graph):
    res, model = exports(name, graph)
    meta = read_metadata(res.path)
    assert meta["graph"] == graph
    assert meta["config"] == model.config.to_dict()
    assert meta["warp"] == "gridsample" and meta["batch_mode"] == "invariant" and meta["batch"] is None
    assert [s["name"] for s in meta["state"]] == model.state_names()
    assert [s["shape"] for s in meta["state"]] == [[None, *s[1:]] for s in model.state_shapes(1).values()]
    proto = onnx.load(str(res.path), load_external_data=False)
    assert [i.name for i in proto.graph.input] == meta["inputs"]
    assert [o.name for o in proto.graph.output] == meta["outputs"]
    if graph == "step":
        assert meta["inputs"] == ["frame"] + ["state_in." + n for n in model.state_names()]
    else:
        assert meta["inputs"] == ["frames"] and meta["outputs"] == ["preds"]
    assert meta["test_mean"] is None and meta["toolkit_version"]


def test_metadata_carries_test_mean_std(tmp_path):
    ckpt = write_lightning_ckpt("motionrnn_tiny", tmp_path / "m.ckpt",
                                hparams_update={"test_mean": np.array([0.25]), "test_std": np.array([[0.5]])})
    model = load_checkpoint(ckpt)
    export_model(model, tmp_path / "m.onnx")
    meta = read_metadata(tmp_path / "m.onnx")
    assert meta["test_mean"] == [0.25] and meta["test_std"] == [[0.5]]


def _int64_nodes(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    return [n for n in proto.graph.node if any(types.get(o) == onnx.TensorProto.INT64 for o in n.output)]


@pytest.mark.parametrize("graph", ["step", "sequence"])
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_graph_hygiene(exports, name, graph):
    res, model = exports(name, graph)
    proto = onnx.load(str(res.path))
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    assert not {"Loop", "If", "Scan", "Constant"} & set(ops)
    assert ops["GridSample"] == (model.config.num_layers - 1) * (1 if graph == "step" else model.config.total_steps)
    for v in list(proto.graph.input) + list(proto.graph.output):
        dims = v.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch"
        assert all(d.dim_value > 0 for d in dims[1:]), v.name
    # gridsample form: no int64 arithmetic; the only int64 values are the sequence's zero-state shape
    int64 = _int64_nodes(proto)
    if graph == "step":
        assert int64 == []
    else:
        assert {n.op_type for n in int64} <= {"Shape", "Slice", "Concat"}
        assert len(int64) == 1 + 1 + 2  # Shape, Slice, one Concat per distinct state shape
    # every float initializer is float32, and the three conv_g kernels are folded into one
    assert all(t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64) for t in proto.graph.initializer)
    if graph == "step":
        n_conv = sum(isinstance(m, nn.Conv2d) for m in model.modules())
        folded = 2 * model.config.num_layers if model.config.arch == "gmg" else 0
        assert ops["Conv"] == n_conv - folded
    # one copy of the weights shared by all steps
    step_res, _ = exports(name, "step")
    if graph == "sequence":
        assert res.file_size < 1.1 * step_res.file_size


def test_export_does_not_touch_callers_model(tmp_path, gmg_ckpt):
    model = load_checkpoint(gmg_ckpt, warp="gather")
    export_model(model, tmp_path / "s.onnx")
    assert model.warp_form == "gather"
    assert all(m.folded is None for m in model.modules() if hasattr(m, "folded"))


def test_fixed_batch_export(tmp_path, motionrnn_ckpt):
    model = load_checkpoint(motionrnn_ckpt)
    res = export_model(model, tmp_path / "b2.onnx", graph="sequence", batch=2)
    proto = onnx.load(str(res.path))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    assert read_metadata(res.path)["batch"] == 2
    g = fixture_golden("motionrnn_tiny")
    pre = model.config.pre_seq_length
    got = make_session(res.path).run(["preds"], {"frames": g["frames"][:, :pre]})[0]
    _check(got, g["preds_single"], "sequence motionrnn fixed batch 2")


def test_export_result_fields(exports):
    res, _ = exports("motionrnn_tiny", "step")
    assert res.path.is_file() and res.file_size == res.path.stat().st_size
    assert res.node_count == sum(res.op_types.values()) > 50
    assert res.seconds > 0 and res.graph == "step"
    assert res.to_dict()["op_types"]["GridSample"] == 1


@pytest.mark.parametrize("kwargs, msg", [
    (dict(opset=15), "opset 15 is not supported for the gridsample warp"),
    (dict(batch_mode="other"), "batch_mode='other'"),
    (dict(graph="loop"), "graph='loop'"),
    (dict(batch=0), "batch=0"),
])
def test_bad_export_options_leave_no_file(tmp_path, motionrnn_ckpt, kwargs, msg):
    model = load_checkpoint(motionrnn_ckpt)
    out = tmp_path / "x.onnx"
    with pytest.raises(GMGError, match=msg.replace("(", r"\(")):
        export_model(model, out, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path, motionrnn_ckpt):
    model = load_checkpoint(motionrnn_ckpt)
    out = tmp_path / "x.onnx"
    out.write_bytes(b"old")
    with pytest.raises(GMGError, match="already exists; pass --force"):
        export_model(model, out)
    assert out.read_bytes() == b"old"
    export_model(model, out, force=True)
    assert read_metadata(out)["graph"] == "step"

