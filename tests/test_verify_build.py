"""gmg-build --verify: the verification (run here with real ONNX candidates through the function the .plan path
uses), the sidecar's ``verification`` record, the runtime's one-line note, and the pitfall gate."""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from conftest import fixture_golden, write_lightning_ckpt
from gmg_deploy.cli import build_cmd
from gmg_deploy.trt.profile import BatchRange, BuildError
from gmg_deploy.trt.sidecar import (build_sidecar, read_sidecar, record_verification, sidecar_path,
                                       verification_note, write_sidecar)
from gmg_deploy.errors import InputError
from gmg_deploy.export.metadata import read_metadata
from gmg_deploy.runtime.verify import Side, default_reference, verify_engine

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """fp32/fp16/int8 step graphs of gmg_tiny, a perturbed (bad) fp32 graph, its checkpoint and golden data."""
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint
    from gmg_deploy.precision import apply_precision
    from gmg_deploy.precision.ranges import collect_ranges

    d = tmp_path_factory.mktemp("verify_build")
    ck = write_lightning_ckpt("gmg_tiny", d / "g.ckpt")
    p = build_proto(load_checkpoint(ck), graph="step")
    onnx.save(p, d / "fp32.onnx")
    onnx.save(apply_precision(p, "fp16"), d / "fp16.onnx")
    frames = fixture_golden("gmg_tiny")["frames"]
    onnx.save(apply_precision(p, "int8", collect_ranges(p, frames)), d / "int8.onnx")
    bad = onnx.ModelProto()
    bad.CopyFrom(p)
    for t in bad.graph.initializer:  # every weight 10% off: a wrong engine
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32 and a.size > 16:
            t.CopyFrom(numpy_helper.from_array((a * 1.1).astype(np.float32), t.name))
    onnx.save(bad, d / "bad.onnx")
    np.save(d / "data.npy", frames)
    np.save(d / "short.npy", frames[:, :5])
    return d


def fake_sidecar(where: Path, source: Path, **kw) -> Path:
    """The sidecar gmg-build writes for an engine built from ``source`` (TensorRT facts made up)."""
    plan = where / "engine.plan"
    write_sidecar(plan, build_sidecar(read_metadata(source), onnx_path=str(source), trt_version="10.9.0",
                                      gpu_name="test GPU", compute_capability=(9, 0), batch=BatchRange(1, 1, 8),
                                      io=[], workspace_mib=None, **kw))
    return sidecar_path(plan)


def test_a_new_sidecar_says_unverified_and_the_note_says_how_to_verify(ws, tmp_path):
    side = fake_sidecar(tmp_path, ws / "fp32.onnx")
    assert json.loads(side.read_text())["verification"] == {"status": "unverified"}
    note = verification_note(tmp_path / "engine.plan")
    assert "engine.plan is unverified" in note and "--verify HELD_OUT.npy" in note and "\n" not in note
    side = fake_sidecar(tmp_path, ws / "fp32.onnx", unverified_reason="--no-verify")
    assert "unverified (--no-verify)" in verification_note(tmp_path / "engine.plan")
    doc = json.loads(side.read_text())
    del doc["verification"]  # a sidecar from before verification existed says nothing: unverified
    side.write_text(json.dumps(doc))
    assert "is unverified" in verification_note(tmp_path / "engine.plan")
    assert verification_note(tmp_path / "none.plan") is None  # no sidecar: the metadata reader reports that


def test_forecaster_prints_one_warning_line_for_an_unverified_engine(ws, tmp_path, capsys):
    from gmg_deploy.runtime.forecaster import _note_verification

    fake_sidecar(tmp_path, ws / "fp32.onnx")
    _note_verification(tmp_path / "engine.plan", None)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: engine ") and "unverified" in err


def test_verification_passes_and_is_recorded(ws, tmp_path):
    """An FP16 candidate (emulated FP16 storage, as TensorRT computes it) against the default reference."""
    side = fake_sidecar(tmp_path, ws / "fp32.onnx")
    frames = np.load(ws / "data.npy")
    status = build_cmd.verify_and_report(Side(str(ws / "fp16.onnx")), str(ws / "data.npy"), frames, sidecar=side)
    assert status == 0
    doc = json.loads(side.read_text())
    v = doc["verification"]
    assert v["status"] == "passed" and v["passed"] is True and v["precision"] == "fp16" and v["limit"] == 0.002
    assert v["reference"] == str(ws / "fp32.onnx") and v["reference_backend"] == "onnxruntime"
    assert v["data"]["shape"] == list(frames.shape) and len(v["data"]["sha256"]) == 64
    assert v["data"]["path"] == str(ws / "data.npy") and v["worst_drop"] <= 0.002 and v["first_failing_step"] is None
    assert doc["tensorrt_version"] == "10.9.0" and read_sidecar(side)[0]["precision"] == "fp32"  # rest kept
    assert verification_note(tmp_path / "engine.plan") is None


def test_a_bad_candidate_fails_exit_1_and_the_sidecar_says_failed(ws, tmp_path, capsys):
    side = fake_sidecar(tmp_path, ws / "fp32.onnx")
    frames = np.load(ws / "data.npy")
    status = build_cmd.verify_and_report(Side(str(ws / "bad.onnx")), str(ws / "data.npy"), frames, sidecar=side,
                                         reference=Side(str(ws / "g.ckpt")))
    assert status == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "verification failed" in out
    v = json.loads(side.read_text())["verification"]
    assert v["status"] == "failed" and v["passed"] is False and v["first_failing_step"] == 1
    assert v["reference_backend"] == "torch" and v["worst_max_abs"] > v["max_abs_limit"] == 1e-4
    note = verification_note(tmp_path / "engine.plan")
    assert "FAILED verification on" in note and "data.npy" in note and "first at step 1" in note


def test_default_reference_is_the_source_graph(ws, tmp_path, monkeypatch):
    side = fake_sidecar(tmp_path, ws / "fp32.onnx")
    ref = default_reference(side)
    assert ref == Side(str(ws / "fp32.onnx"), "onnxruntime", emulate=False)
    monkeypatch.chdir(ws)  # a relative source path resolves from the working directory, then the sidecar's folder
    engines = tmp_path / "engines"
    engines.mkdir()
    rel = fake_sidecar(engines, Path("fp16.onnx"))
    assert default_reference(rel).path == "fp16.onnx"
    monkeypatch.chdir(tmp_path)
    (engines / "fp16.onnx").write_bytes((ws / "fp16.onnx").read_bytes())
    assert Path(default_reference(rel).path) == engines / "fp16.onnx"
    (engines / "fp16.onnx").unlink()
    with pytest.raises(InputError, match=r"source graph fp16\.onnx \(named in engine\.plan\.json\) not found"):
        default_reference(rel)
    with pytest.raises(InputError, match="built from an INT8 graph"):
        default_reference(fake_sidecar(tmp_path, ws / "int8.onnx"))
    with pytest.raises(InputError, match=r"sidecar .*none\.plan\.json not found"):
        default_reference(tmp_path / "none.plan.json")


def test_verification_needs_the_true_future(ws, tmp_path):
    side = fake_sidecar(tmp_path, ws / "fp32.onnx")
    before = side.read_text()
    with pytest.raises(InputError, match="verification needs the true future"):
        verify_engine(Side(str(ws / "fp32.onnx")), ws / "short.npy", np.load(ws / "short.npy"), sidecar=side)
    assert side.read_text() == before


def test_record_verification_refuses_a_broken_sidecar(tmp_path):
    from gmg_deploy.export.metadata import MetadataError

    (tmp_path / "x.json").write_text("[1]")
    with pytest.raises(MetadataError, match="holds no JSON object"):
        record_verification(tmp_path / "x.json", {"status": "passed"})
    with pytest.raises(MetadataError, match="does not exist"):
        record_verification(tmp_path / "none.json", {"status": "passed"})


# ------------------------------------------------------------------------------------------- gmg-build's own checks
def _build(args: list) -> tuple[int, str]:
    r = CliRunner().invoke(build_cmd.main, [str(a) for a in args])
    assert "Traceback" not in r.output, r.output
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr
    return r.exit_code, errors[0]


@pytest.mark.parametrize("extra, message", [
    (["--verify", "{ws}/data.npy", "--no-verify"], "--verify and --no-verify contradict each other"),
    (["--reference", "{ws}/g.ckpt"], "--reference/--verify-sequences apply with --verify DATA.npy only"),
    (["--verify", "{ws}/short.npy"], "holds 5 frames per sequence; verification needs the true future too: 4 \\+ 4"),
    (["--verify", "{ws}/none.npy"], "none.npy does not exist"),
    (["--verify", "{ws}/data.npy", "--reference", "{ws}/none.ckpt"], "--reference .*none.ckpt not found"),
    (["--trust-checkpoint"], "--trust-checkpoint describe a checkpoint --reference; not without --verify"),
    (["--verify", "{ws}/data.npy", "--reference", "{ws}/fp32.onnx", "--warp-gate", "published"],
     "--warp-gate describe a checkpoint --reference; not --reference .*fp32.onnx"),
])
def test_build_verify_mistakes_are_refused_before_tensorrt(ws, tmp_path, extra, message):
    import re

    args = [ws / "fp32.onnx", "-o", tmp_path / "m.plan"] + [str(a).replace("{ws}", str(ws)) for a in extra]
    code, line = _build(args)
    assert code == 2 and re.search(message, line), line
    assert not (tmp_path / "m.plan").exists() and not (tmp_path / "m.plan.json").exists()


def test_build_verify_of_an_int8_graph_needs_a_reference(ws, tmp_path):
    code, line = _build([ws / "int8.onnx", "-o", tmp_path / "m.plan", "--verify", ws / "data.npy"])
    assert code == 2 and "is an INT8 graph, no FP32 reference for --verify; pass --reference" in line


@pytest.mark.skipif(HAVE_TRT, reason="checks the message on a machine without TensorRT")
def test_build_with_valid_verify_options_reaches_the_tensorrt_check(ws, tmp_path):
    code, line = _build([ws / "fp32.onnx", "-o", tmp_path / "m.plan", "--verify", ws / "data.npy",
                         "--verify-sequences", "1"])
    assert code == 2 and "[trt]" in line
    code, line = _build([ws / "fp32.onnx", "-o", tmp_path / "m.plan", "--verify", ws / "data.npy",
                         "--reference", ws / "g.ckpt", "--trust-checkpoint"])
    assert code == 2 and "[trt]" in line


@dataclass(frozen=True)
class StandInPitfall:
    """The fields of ``gmg_deploy.trt.pitfalls.Pitfall`` the gate reads (that module is another helper's)."""

    id: str
    requires_verify: bool
    advice: str = "export with --warp gather"
    versions: str = "10.x"
    pattern: str = "GridSample"
    source: str = "test"


def test_pitfall_gate():
    warn = StandInPitfall("TRT-A", True)
    note = StandInPitfall("TRT-B", False)
    build_cmd.pitfall_gate([note], verify=False, no_verify=False)
    build_cmd.pitfall_gate([warn], verify=True, no_verify=False)
    build_cmd.pitfall_gate([warn], verify=False, no_verify=True)
    with pytest.raises(BuildError) as e:
        build_cmd.pitfall_gate([note, warn, StandInPitfall("TRT-C", True)], verify=False, no_verify=False)
    msg = str(e.value)
    assert msg.startswith("known TensorRT pitfall TRT-A concerns this build (and 1 more: TRT-C)")
    assert "export with --warp gather" in msg and "--verify HELD_OUT.npy" in msg and "--no-verify" in msg


def test_known_pitfalls_reads_the_table_when_present(ws):
    from gmg_deploy.trt.pitfalls import pitfalls_for

    meta = read_metadata(ws / "fp32.onnx")
    for version in ("10.9.0", "10.14.1.48", "11.1"):
        assert build_cmd.known_pitfalls(version, meta) == list(pitfalls_for(version, meta))


def test_recorded_batch_of_an_engine(ws, tmp_path):
    from gmg_deploy.trt.sidecar import recorded_batch

    fake_sidecar(tmp_path, ws / "fp32.onnx")
    assert recorded_batch(tmp_path / "engine.plan") == (1, 8)
    assert recorded_batch(tmp_path / "none.plan") is None
