"""StepSignature: the one I/O contract, from a config and from metadata, against the exported graphs' real I/O."""
from __future__ import annotations

import copy
import dataclasses
import functools
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import FIXTURE_NAMES, fixture_hparams
from gmg_deploy.errors import InputError
from gmg_deploy.export import build_proto
from gmg_deploy.export.metadata import METADATA_KEY, MetadataError, build_metadata, metadata_from_proto
from gmg_deploy.export.signature import StepSignature, state_in, state_out
from gmg_deploy.model.config import ModelConfig
from gmg_deploy.model.network import state_names
from gmg_deploy.runtime import Forecaster
from gmg_deploy.runtime.backend import StepBackend

CASES = [(name, graph, batch) for name in FIXTURE_NAMES for graph in ("step", "sequence") for batch in (None, 2)]


@functools.lru_cache(maxsize=None)
def _model(name: str):
    import tempfile
    from pathlib import Path

    import torch

    from conftest import write_lightning_ckpt
    from gmg_deploy.model.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        return load_checkpoint(write_lightning_ckpt(name, Path(d) / f"{name}.ckpt"))


@functools.lru_cache(maxsize=None)
def _graph(name: str, graph: str, batch: int | None) -> onnx.ModelProto:
    return build_proto(_model(name), graph=graph, batch=batch)


def _declared(values) -> list[tuple[str, tuple, int]]:
    """(name, shape with None for a symbolic axis, elem_type) of graph inputs or outputs."""
    out = []
    for v in values:
        t = v.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        out.append((v.name, shape, t.elem_type))
    return out


@pytest.mark.parametrize("name,graph,batch", CASES)
def test_config_and_metadata_signatures_agree_with_the_graph(name, graph, batch):
    proto = _graph(name, graph, batch)
    model = _model(name)
    from_cfg = StepSignature.from_config(model.config, graph, batch=batch)
    from_meta = StepSignature.from_metadata(metadata_from_proto(proto))
    assert from_cfg == from_meta
    ins, outs = _declared(proto.graph.input), _declared(proto.graph.output)
    assert [n for n, _, _ in ins] == from_cfg.input_names
    assert [n for n, _, _ in outs] == from_cfg.output_names
    assert {n: s for n, s, _ in ins + outs} == from_cfg.shapes()
    assert {e for _, _, e in ins + outs} == {onnx.TensorProto.FLOAT}
    assert {t.dtype for t in from_cfg.tensors()} == {"float32"}
    C, H, W = model.config.frame_shape
    if graph == "step":
        assert from_cfg.input_names == ["frame"] + [state_in(n) for n in model.state_names()]
        assert from_cfg.output_names == ["next_frame"] + [state_out(n) for n in model.state_names()]
        assert from_cfg.shapes()["frame"] == (batch, C, H, W)
        assert from_cfg.state_shapes(3) == dict(model.state_shapes(3))
    else:
        assert from_cfg.input_names == ["frames"] and from_cfg.output_names == ["preds"]
        assert from_cfg.shapes() == {"frames": (batch, model.config.pre_seq_length, C, H, W),
                                     "preds": (batch, model.config.aft_seq_length, C, H, W)}


@pytest.mark.parametrize("name,graph", [(n, g) for n in FIXTURE_NAMES for g in ("step", "sequence")])
def test_signature_shapes_are_what_onnxruntime_returns(name, graph):
    """Feed zeros shaped by the signature for batch 3 to the dynamic-batch graph: outputs come back as it says."""
    proto = _graph(name, graph, None)
    sig = StepSignature.from_metadata(metadata_from_proto(proto))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {t.name: np.zeros(t.shape, np.float32) for t in sig.inputs(3)}
    got = sess.run(sig.output_names, feed)
    assert [tuple(a.shape) for a in got] == [t.shape for t in sig.outputs(3)]
    assert [i.name for i in sess.get_inputs()] == sig.input_names
    assert [o.name for o in sess.get_outputs()] == sig.output_names


def test_metadata_records_come_from_the_signature():
    cfg = ModelConfig.from_hparams(fixture_hparams("gmg_tiny"))
    meta = build_metadata(cfg, graph="step", warp="gridsample", batch_mode="invariant", batch=4,
                          io_dtype="float16", state_dtype="float16")
    sig = StepSignature.from_metadata(meta)
    assert [s["name"] for s in meta["state"]] == state_names(cfg) == sig.state_names
    assert meta["state"] == sig.state_records() and all(s["shape"][0] == 4 for s in meta["state"])
    assert meta["inputs"] == sig.input_names and meta["outputs"] == sig.output_names
    assert {t.dtype for t in sig.tensors()} == {"float16"}
    roles = {t.name: (t.role, t.state_name) for t in sig.tensors()}
    assert roles["frame"] == ("frame", None) and roles["next_frame"] == ("pred", None)
    assert roles["state_out.mem"] == ("state", "mem")
    assert sig.shapes()["frame"] == (4, 1, 16, 16) and sig.shapes(1)["frame"] == (1, 1, 16, 16)


def test_forecast_graph_kind():
    """Room for the forecast graph: frame + state_in.* -> forecast (B,K,C,H,W) + state_out.*."""
    cfg = ModelConfig.from_hparams(fixture_hparams("motionrnn_tiny"))
    sig = StepSignature.from_config(cfg, "forecast", horizon=5)
    step = StepSignature.from_config(cfg, "step")
    assert sig.input_names == step.input_names
    assert sig.output_names == ["forecast"] + step.output_names[1:]
    assert sig.shapes(2)["forecast"] == (2, 5, 1, 16, 16) and sig.outputs()[0].role == "forecast"
    meta = build_metadata(cfg, graph="forecast", warp="gridsample", batch_mode="invariant", batch=None, horizon=5)
    assert meta["horizon"] == 5 and StepSignature.from_metadata(meta) == sig
    assert meta["outputs"][0] == "forecast"
    with pytest.raises(ValueError, match="horizon"):
        StepSignature.from_config(cfg, "forecast")
    with pytest.raises(ValueError, match="graph='pyramid'"):
        StepSignature.from_config(cfg, "pyramid")
    with pytest.raises(ValueError, match="dtype 'int8'"):
        StepSignature.from_config(cfg, io_dtype="int8")


# ---------------------------------------------------------------------------------------- backends
def test_backends_share_the_template(tmp_path):
    path = tmp_path / "step.onnx"
    path.write_bytes(_graph("gmg_tiny", "step", None).SerializeToString())
    with Forecaster.open(path, batch_size=2) as ort_fc, Forecaster.from_model(copy.deepcopy(_model("gmg_tiny")), batch_size=2) as pt:
        for fc, name in ((ort_fc, "onnxruntime"), (pt, "torch")):
            assert isinstance(fc.backend, StepBackend) and fc.backend_name == name
            assert fc.signature == fc.backend.signature == StepSignature.from_config(fc.config, "step")
            assert list(fc.state) == fc.backend.signature.state_names
            assert tuple(fc.backend.frame_in.shape) == fc.backend.signature.inputs(2)[0].shape
            with pytest.raises(ValueError, match="two different sets"):
                fc.backend.run(1, 1, False)
        assert repr(ort_fc).startswith("Forecaster(backend=onnxruntime,")
    with pytest.raises(InputError, match="batch_size=0 must be >= 1"):
        Forecaster.open(path, batch_size=0)


def test_metadata_names_that_disagree_with_the_state_list_are_refused(tmp_path):
    proto = onnx.ModelProto()
    proto.CopyFrom(_graph("motionrnn_tiny", "step", None))
    meta = metadata_from_proto(proto)
    meta["inputs"] = [meta["inputs"][0]] + meta["inputs"][:0:-1]  # state inputs in reverse order
    prop = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    prop.value = json.dumps(meta)
    path = tmp_path / "bad.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(MetadataError, match="bad.onnx: the metadata's input/output names disagree with its state"):
        Forecaster.open(path)


def test_a_sequence_graph_is_refused_by_the_streaming_runtime(tmp_path):
    path = tmp_path / "seq.onnx"
    path.write_bytes(_graph("gmg_tiny", "sequence", None).SerializeToString())
    with pytest.raises(MetadataError, match="is a 'sequence' graph; the streaming runtime needs a step graph"):
        Forecaster.open(path)


def test_signature_is_frozen():
    cfg = ModelConfig.from_hparams(fixture_hparams("gmg_tiny"))
    sig = StepSignature.from_config(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sig.batch = 3


def test_state_name_is_the_inverse_of_state_in_and_state_out():
    cfg = ModelConfig.from_hparams(fixture_hparams("gmg_tiny"))
    sig = StepSignature.from_config(cfg)
    from gmg_deploy.export.signature import state_name

    for t in sig.tensors():
        assert state_name(t.name) == t.state_name  # None for frame / next_frame
    assert [state_name(state_in(n)) for n in sig.state_names] == sig.state_names
    assert state_name("state_out.offset.0") == "offset.0" and state_name("frames") is None


def test_modules_that_run_graphs_ask_the_signature():
    """Rollouts and the forecast builder take their names from the signature and say which graph kinds they
    run; the Triton config's names are the forecast signature's."""
    from gmg_deploy.evaluate.rollout import rollout
    from gmg_deploy.export.forecast_build import build_forecast
    from gmg_deploy.serve.triton_config import ServeOptions, config_text

    fc = build_proto(_model("gmg_tiny"), graph="forecast", horizon=2)
    meta = metadata_from_proto(fc)
    sig = StepSignature.from_metadata(meta)
    frames = np.zeros((1, 12, 1, 16, 16), np.float32)
    with pytest.raises(InputError, match="a forecast graph cannot be rolled out here"):
        rollout(ort.InferenceSession(fc.SerializeToString()), meta, frames)
    with pytest.raises(InputError, match="chained from a step graph, not a sequence graph"):
        build_forecast(_graph("gmg_tiny", "sequence", None), 2)
    text = config_text(meta, ServeOptions(), platform="onnxruntime_onnx", max_batch=4)
    assert f'input [ {{ name: "{sig.frame_input}" data_type: TYPE_FP32 dims: [ 1, 16, 16 ] }} ]' in text
    assert f'output [ {{ name: "{sig.frame_output}" data_type: TYPE_FP32 dims: [ 2, 1, 16, 16 ] }} ]' in text
    for n in sig.state_names:
        assert f'input_name: "{state_in(n)}" output_name: "{state_out(n)}"' in text
