"""TensorRT backend: everything that does not need TensorRT (sidecar, I/O checks, binding plan, errors)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import fixture_hparams
from gmg_deploy.trt.profile import BatchRange
from gmg_deploy.trt.engine_io import EngineIO, TensorSpec, normalise_dtype
from gmg_deploy.trt.sidecar import build_sidecar, read_sidecar, sidecar_path, write_sidecar
from gmg_deploy.errors import InputError
from gmg_deploy.export.metadata import MetadataError, build_metadata
from gmg_deploy.model.config import ModelConfig
from gmg_deploy.runtime import Forecaster
from gmg_deploy.runtime.binding_plan import check_sidecar_matches, make_binding_plan


@pytest.fixture(scope="module")
def meta():
    cfg = ModelConfig.from_hparams(fixture_hparams("gmg_tiny"))
    return build_metadata(cfg, graph="step", warp="gridsample", batch_mode="invariant", batch=None)


def _engine_io(meta, batch=-1, lo=1, hi=8, dtype="float32") -> EngineIO:
    """What a dynamic-batch engine built from ``meta`` reports (shapes with -1 for the batch)."""
    C, H, W = meta["config"]["in_shape"][1:]
    shapes = {"frame": (batch, C, H, W), "next_frame": (batch, C, H, W)}
    for s in meta["state"]:
        shapes["state_in." + s["name"]] = shapes["state_out." + s["name"]] = (batch, *s["shape"][1:])
    specs = [TensorSpec(n, n in meta["inputs"], shapes[n], dtype) for n in meta["inputs"] + meta["outputs"]]
    profiles = {s.name: ((lo, *s.shape[1:]), (lo, *s.shape[1:]), (hi, *s.shape[1:])) for s in specs if s.is_input}
    return EngineIO(tuple(specs), profiles if batch == -1 else {})


def test_binding_plan_maps_every_tensor(meta):
    plan = make_binding_plan(_engine_io(meta), meta, 3)
    assert plan.batch_size == 3
    shapes = plan.input_shapes
    assert len(meta["state"]) == 7  # L=2: h.0, h.1, c.0, c.1, mem, offset.0, mean.0
    assert len(shapes) == 1 + 7 and len(plan.bindings) == 2 * (1 + 7)
    assert shapes["frame"] == (3, 1, 16, 16)
    assert shapes["state_in.h.0"] == (3, 128, 8, 8)
    assert shapes["state_in.offset.0"] == (3, 18, 4, 4)
    roles = {b.name: (b.role, b.state_name, b.is_input) for b in plan.bindings}
    assert roles["frame"] == ("frame", None, True)
    assert roles["next_frame"] == ("pred", None, False)
    assert roles["state_in.mem"] == ("state", "mem", True)
    assert roles["state_out.mean.0"] == ("state", "mean.0", False)


def test_binding_plan_errors(meta):
    with pytest.raises(MetadataError, match=r"batch_size=9 is outside the engine's profile range 1..8 \(frame\)"):
        make_binding_plan(_engine_io(meta), meta, 9, "m.plan")
    with pytest.raises(MetadataError, match="m.plan has a fixed batch of 4 .*; use --batch-size 4"):
        make_binding_plan(_engine_io(meta, batch=4), meta, 2, "m.plan")
    io = _engine_io(meta)
    renamed = EngineIO(tuple(dataclasses.replace(t, name="x") if t.name == "state_in.mem" else t for t in io.tensors))
    with pytest.raises(MetadataError, match=r"missing \['state_in.mem'\], unexpected \['x'\]"):
        make_binding_plan(renamed, meta, 1, "m.plan")
    with pytest.raises(MetadataError, match="frame is float16 in the engine but float32 in the metadata"):
        make_binding_plan(_engine_io(meta, dtype="float16"), meta, 1, "m.plan")
    wrong = EngineIO(tuple(dataclasses.replace(t, shape=(-1, 64, 8, 8)) if t.name == "state_in.h.0" else t
                           for t in io.tensors), io.profiles)
    with pytest.raises(MetadataError, match=r"state_in.h.0 has engine shape \[-1, 64, 8, 8\], metadata shape "
                                            r"\[-1, 128, 8, 8\]"):
        make_binding_plan(wrong, meta, 1, "m.plan")
    flipped = EngineIO(tuple(dataclasses.replace(t, is_input=False) if t.name == "frame" else t for t in io.tensors))
    with pytest.raises(MetadataError, match="frame is an engine output, the metadata says input"):
        make_binding_plan(flipped, meta, 1, "m.plan")
    seq = dict(meta, graph="sequence")
    with pytest.raises(MetadataError, match="built from a 'sequence' graph; the runtime needs a step graph"):
        make_binding_plan(io, seq, 1, "m.plan")


def test_fixed_batch_metadata_and_fp16_io(meta):
    fixed = build_metadata(ModelConfig.from_dict(meta["config"]), graph="step", warp="gridsample",
                           batch_mode="invariant", batch=2, io_dtype="float16", state_dtype="float16")
    plan = make_binding_plan(_engine_io(fixed, batch=2, dtype="float16"), fixed, 2)
    assert {b.dtype for b in plan.bindings} == {"float16"}
    assert plan.input_shapes["frame"] == (2, 1, 16, 16)


def test_sidecar_written_by_the_build_stage_is_read(tmp_path, meta):
    plan_path = tmp_path / "model.plan"
    assert sidecar_path(plan_path).name == "model.plan.json"
    io = [{"name": t.name, "mode": "input" if t.is_input else "output", "shape": list(t.shape),
           "dtype": "FLOAT"} for t in _engine_io(meta).tensors]
    content = build_sidecar(meta, onnx_path="model.onnx", trt_version="10.9.0", gpu_name="x",
                            compute_capability=(9, 0), batch=BatchRange(1, 4, 8), io=io, workspace_mib=None)
    write_sidecar(plan_path, content)
    got_meta, recorded = read_sidecar(sidecar_path(plan_path))
    assert got_meta == json.loads(json.dumps(meta))
    assert recorded.inputs == meta["inputs"] and recorded.outputs == meta["outputs"]
    assert recorded.spec("frame").dtype == "float32" and recorded.spec("frame").shape == (-1, 1, 16, 16)
    check_sidecar_matches(_engine_io(meta), recorded, "model.plan")
    other = _engine_io(meta, dtype="float16")
    with pytest.raises(MetadataError, match="differs from its .json sidecar"):
        check_sidecar_matches(other, recorded, "model.plan")


def test_sidecar_errors(tmp_path):
    with pytest.raises(MetadataError, match="sidecar .*nope.plan.json does not exist; rebuild with gmg-build"):
        read_sidecar(tmp_path / "nope.plan.json")
    bad = tmp_path / "bad.plan.json"
    bad.write_text("{not json")
    with pytest.raises(MetadataError, match="is not valid JSON"):
        read_sidecar(bad)
    bad.write_text(json.dumps({"io": []}))
    with pytest.raises(MetadataError, match="has no gmg-deploy metadata"):
        read_sidecar(bad)
    bad.write_text(json.dumps({"metadata": {"schema": 99}}))
    with pytest.raises(MetadataError, match="metadata schema 99 is not 1"):
        read_sidecar(bad)
    good = {"metadata": build_metadata(ModelConfig.from_hparams(fixture_hparams("gmg_tiny")), graph="step",
                                       warp="gridsample", batch_mode="invariant", batch=None)}
    bad.write_text(json.dumps({"onnx_metadata": good["metadata"]}))  # a key no gmg-build writes
    with pytest.raises(MetadataError, match="has no gmg-deploy metadata"):
        read_sidecar(bad)
    bad.write_text(json.dumps(dict(good, schema=2)))
    with pytest.raises(MetadataError, match="has schema 2, this version reads 1"):
        read_sidecar(bad)
    bad.write_text(json.dumps(dict(good, io=[{"name": "frame", "shape": [-1, 1, 16, 16], "dtype": "FLOAT"}])))
    with pytest.raises(MetadataError, match="an I/O record lacks name/mode/shape/dtype"):
        read_sidecar(bad)


def test_dtype_names():
    assert normalise_dtype("FLOAT") == "float32"
    assert normalise_dtype("DataType.HALF") == "float16"
    assert normalise_dtype("float16") == "float16"


def test_opening_an_engine_without_tensorrt_or_cuda(tmp_path, meta):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not really an engine")
    with pytest.raises(MetadataError, match="model.plan.json does not exist"):
        Forecaster.open(plan, device="cuda")
    write_sidecar(plan, {"metadata": meta, "io": []})
    with pytest.raises(InputError, match="runs on CUDA only, not device 'cpu'; use --device cuda"):
        Forecaster.open(plan, device="cpu")
    with pytest.raises(InputError, match=r"the TensorRT backend needs the 'tensorrt' Python package, which is not "
                                         r"installed: pip install \"gmg-deploy\[trt\]\".*--backend onnxruntime"):
        Forecaster.open(plan, device="cuda")
