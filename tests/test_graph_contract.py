"""The graph-contract floor: GraphMetadata (typed, checked once, parsed once), the one ONNX loader and its error."""
from __future__ import annotations

import json
import pickle

import onnx
import pytest

from conftest import fixture_hparams
from gmg_deploy.errors import (BuildError, CalibrationError, GraphFileError, MetadataError, PrecisionError,
                               TensorRTCompatError)
from gmg_deploy.graph import GraphMetadata, GraphSignature, StepSignature, as_metadata, load_graph, load_onnx
from gmg_deploy.graph.metadata import (METADATA_KEY, attach_metadata, build_metadata, metadata_from_proto,
                                       read_metadata)
from gmg_deploy.model.config import ModelConfig


@pytest.fixture(scope="module")
def config() -> ModelConfig:
    return ModelConfig.from_hparams(fixture_hparams("gmg_tiny"))


def _proto_with(meta) -> onnx.ModelProto:
    g = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["frame"], ["next_frame"])], "g",
                               [onnx.helper.make_tensor_value_info("frame", onnx.TensorProto.FLOAT, None)],
                               [onnx.helper.make_tensor_value_info("next_frame", onnx.TensorProto.FLOAT, None)])
    m = onnx.helper.make_model(g)
    attach_metadata(m, meta)
    return m


def test_typed_attributes_agree_with_the_json(config):
    meta = GraphMetadata.build(config, graph="forecast", warp="gather", batch_mode="reference", batch=2,
                               horizon=3, opset=17)
    assert (meta.graph, meta.warp, meta.batch_mode, meta.batch, meta.horizon, meta.opset) == (
        "forecast", "gather", "reference", 2, 3, 17)
    assert meta.precision == "fp32" and meta.io_dtype == meta.state_dtype == "float32"
    assert meta.config == config and meta.warp_gate == config.warp_gate
    assert meta.pre == config.pre_seq_length and meta.aft == config.aft_seq_length
    assert isinstance(meta.signature, GraphSignature) and meta.signature.horizon == 3
    assert meta.signature.output_names == meta["outputs"] and meta["outputs"][0] == "forecast"
    # the dict API is the same contract
    assert meta == build_metadata(config, graph="forecast", warp="gather", batch_mode="reference", batch=2,
                                  horizon=3, opset=17) | {"toolkit_version": meta.toolkit_version}
    assert StepSignature is GraphSignature


def test_read_only_and_copies(config):
    meta = GraphMetadata.build(config, graph="step", warp="gridsample", batch_mode="invariant", batch=None)
    with pytest.raises(AttributeError, match="read-only"):
        meta.precision = "int8"  # type: ignore[misc]
    cfg = meta["config"]
    cfg["arch"] = "changed"
    assert meta["config"]["arch"] == "gmg" and meta.config_dict["arch"] == "gmg"
    fp16 = meta.replace(precision="fp16", io_dtype="float16")
    assert (meta.precision, fp16.precision, fp16.io_dtype, fp16.signature.io_dtype) == (
        "fp32", "fp16", "float16", "float16")
    assert pickle.loads(pickle.dumps(fp16)) == fp16
    assert as_metadata(fp16) is fp16 and as_metadata(fp16.to_dict()) == fp16
    fc = meta.for_forecast(4)
    assert fc.graph == "forecast" and fc.horizon == 4 and fc["outputs"][0] == "forecast"


def test_parsed_once_per_graph(config):
    m = _proto_with(build_metadata(config, graph="step", warp="gridsample", batch_mode="invariant", batch=None))
    a = GraphMetadata.from_proto(m, "a.onnx")
    assert GraphMetadata.from_proto(m, "a.onnx") is a  # the same JSON text is not parsed again
    assert metadata_from_proto(m, "a.onnx") == a and metadata_from_proto(m) is not metadata_from_proto(m)


@pytest.mark.parametrize("change, message", [
    ({"schema": 99}, "metadata schema 99 is not 1"),
    ({"graph": "video"}, "metadata graph 'video' is not one of step, sequence, forecast"),
    ({"precision": "int4"}, "metadata precision 'int4' is not one of fp32, fp16, int8"),
    ({"warp": "bilinear"}, "metadata warp 'bilinear' is not one of gridsample, gather"),
    ({"batch_mode": "fast"}, "metadata batch_mode 'fast' is not one of invariant, reference"),
    ({"io_dtype": "int8"}, "metadata io_dtype 'int8' is not one of float32, float16"),
    ({"batch": 0}, "metadata batch 0 is not null or a positive integer"),
    ({"config": None}, "metadata has no model config"),
    ({"state": [{"name": "h.0"}]}, "metadata state/shape records are invalid"),
    ({"inputs": ["frame"]}, "the metadata's input/output names disagree with its state list"),
])
def test_bad_metadata_is_one_error_naming_the_graph(config, change, message):
    doc = build_metadata(config, graph="step", warp="gridsample", batch_mode="invariant", batch=None)
    with pytest.raises(MetadataError, match="^m.onnx: " + message.replace("(", r"\(").replace(")", r"\)")):
        GraphMetadata.from_proto(_proto_with({**doc, **change}), "m.onnx")


def test_bad_config_and_bad_json(config):
    doc = build_metadata(config, graph="step", warp="gridsample", batch_mode="invariant", batch=None)
    doc["config"]["patch_size"] = 5  # 16 is not divisible by 5
    with pytest.raises(MetadataError, match=r"^m.onnx: metadata config is invalid \("):
        GraphMetadata.from_proto(_proto_with(doc), "m.onnx")
    m = _proto_with({})
    m.metadata_props[0].value = "{not json"
    with pytest.raises(MetadataError, match="metadata 'gmg_deploy' is not valid JSON"):
        GraphMetadata.from_proto(m, "m.onnx")
    del m.metadata_props[:]
    with pytest.raises(MetadataError, match="m.onnx has no gmg-deploy metadata; export it with gmg-export"):
        GraphMetadata.from_proto(m, "m.onnx")
    assert METADATA_KEY == "gmg_deploy"


def test_graphs_from_before_warp_gate_was_recorded_computed_motionrnn(config):
    doc = build_metadata(config, graph="step", warp="gridsample", batch_mode="invariant", batch=None)
    del doc["warp_gate"]
    doc["config"].pop("warp_gate")
    assert GraphMetadata(doc).warp_gate == "motionrnn"


def test_the_one_onnx_loader_and_its_one_error(tmp_path, config):
    kinds = (MetadataError, PrecisionError, TensorRTCompatError, BuildError, CalibrationError)
    assert all(issubclass(GraphFileError, k) for k in kinds)  # every stage's own except clause catches it
    with pytest.raises(GraphFileError, match=r"ONNX model .*nope.onnx does not exist; export it with gmg-export"):
        load_onnx(tmp_path / "nope.onnx")
    with pytest.raises(GraphFileError, match="is not a file; give the .onnx file"):
        load_onnx(tmp_path)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(GraphFileError, match=r"junk.onnx is not a readable ONNX model$"):
        load_onnx(junk)
    m = _proto_with(build_metadata(config, graph="step", warp="gridsample", batch_mode="invariant", batch=None))
    m.graph.initializer.append(onnx.numpy_helper.from_array(__import__("numpy").ones(300000, "float32"), "w"))
    path = tmp_path / "ext.onnx"
    onnx.save(m, str(path), save_as_external_data=True, location="ext.data", size_threshold=0)
    proto, meta = load_graph(path)
    assert meta.where == str(path) and len(proto.graph.initializer[0].raw_data) == 1200000
    assert read_metadata(path) == meta
    (tmp_path / "ext.data").write_bytes(b"")
    with pytest.raises(GraphFileError, match=r"ext.onnx: its external weights cannot be read"):
        load_onnx(path)
    assert load_onnx(path, weights=False).graph.initializer[0].external_data  # metadata only: no weights read
    assert json.loads(proto.metadata_props[0].value)["graph"] == "step"
