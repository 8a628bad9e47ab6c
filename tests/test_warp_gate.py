"""Warp-gate layouts: the published GMG code's transposed gate (``*_pub9`` fixtures) and MotionRNN's (``*_tiny``)."""
from __future__ import annotations

import dataclasses
import collections
import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from conftest import fixture_golden, fixture_hparams, run_step_chain, write_lightning_ckpt
from gmg_deploy.errors import ConfigError, GMGError
from gmg_deploy.evaluate.ort_session import make_session
from gmg_deploy.export import build_proto, export_model, read_metadata
from gmg_deploy.model import ModelConfig, load_checkpoint

torch.set_num_threads(1)
TOL = 1e-5
PUB9 = ("gmg_pub9", "motionrnn_pub9")


@pytest.fixture(scope="module")
def pub_ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("pub9")
    return {n: write_lightning_ckpt(n, d / f"{n}.ckpt") for n in PUB9 + ("motionrnn_tiny",)}


@pytest.fixture(scope="module")
def pub_exports(tmp_path_factory, pub_ckpts):
    """``get(name, graph, warp, mode)`` -> (path, model), exported once per module."""
    d = tmp_path_factory.mktemp("pub9_onnx")
    cache: dict = {}

    def get(name, graph, warp="gridsample", mode="invariant"):
        key = (name, graph, warp, mode)
        if key not in cache:
            model = load_checkpoint(pub_ckpts[name], warp=warp)
            res = export_model(model, d / ("_".join(key) + ".onnx"), graph=graph, batch_mode=mode)
            cache[key] = (res.path, model)
        return cache[key]

    return get


def _err(a, b) -> float:
    assert a.shape == b.shape
    return float(np.abs(np.asarray(a, np.float64) - b).max())


# ---------------------------------------------------------------------------- the setting
def test_auto_resolves_by_motion_grid():
    base = dict(arch="motionrnn", pre_seq_length=3, aft_seq_length=3, num_hidden="32,32", filter_size=3,
                patch_size=2)
    nine = ModelConfig(in_shape=[6, 1, 36, 36], **base)
    assert nine.motion_grid == (9, 9) and nine.warp_gate == "published"
    assert ModelConfig(in_shape=[6, 1, 16, 16], **base).warp_gate == "motionrnn"
    assert ModelConfig(in_shape=[6, 1, 36, 40], **base).warp_gate == "motionrnn"  # 9x10: not 9x9
    assert ModelConfig(in_shape=[6, 1, 36, 36], warp_gate="motionrnn", **base).warp_gate == "motionrnn"
    assert ModelConfig(in_shape=[6, 1, 36, 36], warp_gate="Published", **base).warp_gate == "published"
    # the resolved value survives a round trip through to_dict (what the ONNX metadata stores)
    assert ModelConfig.from_dict(dataclasses.replace(nine, warp_gate="motionrnn").to_dict()).warp_gate == "motionrnn"
    assert nine.to_dict()["warp_gate"] == "published" and nine.to_hparams()["warp_gate"] == "published"


def test_published_on_another_grid_is_refused(tmp_path):
    hp = fixture_hparams("gmg_tiny")
    with pytest.raises(ConfigError, match=r"9x9 motion grid, but this model's motion grid is 4x4"):
        ModelConfig.from_hparams(hp, warp_gate="published")
    ckpt = write_lightning_ckpt("motionrnn_tiny", tmp_path / "m.ckpt")
    with pytest.raises(ConfigError, match="motion grid is 4x4"):
        load_checkpoint(ckpt, warp_gate="published")
    with pytest.raises(ConfigError, match="not a warp-gate layout; choose one of motionrnn, published, auto"):
        load_checkpoint(ckpt, warp_gate="transposed")


def test_old_fixtures_keep_the_motionrnn_layout(gmg_ckpt, motionrnn_ckpt):
    for ckpt, name in ((gmg_ckpt, "gmg_tiny"), (motionrnn_ckpt, "motionrnn_tiny")):
        model = load_checkpoint(ckpt)
        assert model.config.warp_gate == model.warp_gate == "motionrnn"
        g = fixture_golden(name)
        out = model.predict(torch.from_numpy(g["frames"]), all_steps=True).numpy()
        assert _err(out, g["all_steps_single"]) < TOL


def test_saved_checkpoint_keeps_its_layout(tmp_path, pub_ckpts):
    from gmg_deploy.model import save_lightning_checkpoint

    model = load_checkpoint(pub_ckpts["motionrnn_pub9"], warp_gate="motionrnn")
    save_lightning_checkpoint(model, tmp_path / "again.ckpt")
    assert load_checkpoint(tmp_path / "again.ckpt").warp_gate == "motionrnn"  # not re-guessed by auto
    assert load_checkpoint(tmp_path / "again.ckpt", warp_gate="auto").warp_gate == "published"


# ---------------------------------------------------------------------------- PyTorch parity
@pytest.mark.parametrize("mode", ["invariant", "reference"])
@pytest.mark.parametrize("warp", ["gridsample", "gather"])
@pytest.mark.parametrize("name", PUB9)
def test_pub9_pytorch_matches_golden(pub_ckpts, name, warp, mode):
    model = load_checkpoint(pub_ckpts[name], warp=warp)
    assert model.warp_gate == "published"
    g = fixture_golden(name)
    out = model.predict(torch.from_numpy(g["frames"]), all_steps=True, batch_invariant=mode == "invariant").numpy()
    want = g["all_steps_single"] if mode == "invariant" else g["all_steps"]
    assert _err(out, want) < TOL


@pytest.mark.parametrize("name", PUB9)
def test_wrong_layout_misses_pub9_golden(pub_ckpts, name):
    """The fixtures README: the motionrnn layout misses gmg_pub9 by 2.0e-4 and motionrnn_pub9 by 5.6e-5."""
    model = load_checkpoint(pub_ckpts[name], warp_gate="motionrnn")
    g = fixture_golden(name)
    out = model.predict(torch.from_numpy(g["frames"]), all_steps=True).numpy()
    assert _err(out, g["all_steps_single"]) > 3e-5


def test_motionrnn_pub9_shapes(pub_ckpts):
    model = load_checkpoint(pub_ckpts["motionrnn_pub9"])
    cfg = model.config
    assert (cfg.num_layers, cfg.channels, cfg.motion_grid) == (3, 2, (9, 9))
    assert len(model.motion_list) == 2 and all(m.warp.gate_layout == "published" for m in model.motion_list)


# ---------------------------------------------------------------------------- ONNX Runtime parity
@pytest.mark.parametrize("mode", ["invariant", "reference"])
@pytest.mark.parametrize("warp", ["gridsample", "gather"])
@pytest.mark.parametrize("name", PUB9)
def test_pub9_onnx_step_chain_matches_golden(pub_exports, name, warp, mode):
    path, model = pub_exports(name, "step", warp, mode)
    g = fixture_golden(name)
    got = run_step_chain(make_session(path), model, g["frames"])
    assert _err(got, g["all_steps_single"] if mode == "invariant" else g["all_steps"]) < TOL


@pytest.mark.parametrize("mode", ["invariant", "reference"])
@pytest.mark.parametrize("name", PUB9)
def test_pub9_onnx_sequence_matches_golden(pub_exports, name, mode):
    path, model = pub_exports(name, "sequence", "gridsample", mode)
    g = fixture_golden(name)
    got = make_session(path).run(["preds"], {"frames": g["frames"][:, :model.config.pre_seq_length]})[0]
    assert _err(got, g["preds_single"] if mode == "invariant" else g["preds"]) < TOL
    meta = read_metadata(path)
    assert meta["warp_gate"] == meta["config"]["warp_gate"] == "published"


@pytest.mark.parametrize("name", PUB9)
def test_gridsample_graph_has_one_gate_transpose_and_stays_clean(pub_exports, name):
    from gmg_deploy.export import check_tensorrt_compat
    from gmg_deploy.precision.fp16 import convert_to_fp16, find_islands

    path, model = pub_exports(name, "step")
    proto = onnx.load(str(path))
    assert check_tensorrt_compat(proto, raise_on_error=False) == []
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    plain = build_proto(load_checkpoint(write_lightning_ckpt(name, path.parent / f"{name}_m.ckpt"),
                                        warp_gate="motionrnn"))
    plain_ops = collections.Counter(n.op_type for n in plain.graph.node)
    layers = model.config.num_layers - 1
    # the published layout adds exactly one Transpose per warp, and nothing else
    assert ops - plain_ops == collections.Counter({"Transpose": layers}) and not plain_ops - ops
    producer = {o: n for n in proto.graph.node for o in n.output}
    gate_t = [n for n in proto.graph.node if n.op_type == "Transpose"
              and producer.get(n.input[0]) is not None and producer[n.input[0]].op_type == "Sigmoid"
              and "warp" in n.name]
    assert len(gate_t) == layers
    assert all(list(n.attribute[0].ints) == [0, 3, 1, 2] for n in gate_t)
    # FP16: the warp island (GridSample + coordinate arithmetic) is the same with the transposed gate,
    # and the converted graph is still TensorRT-lint clean
    isl, isl_plain = find_islands(proto)["warp"], find_islands(plain)["warp"]
    assert len(isl) == len(isl_plain) and sum(i.startswith("/motion_list") for i in isl) == len(isl)
    p16 = convert_to_fp16(proto)
    assert check_tensorrt_compat(p16, raise_on_error=False) == []


# ---------------------------------------------------------------------------- CLIs, fingerprints, compare
def test_export_cli_summary_and_json(tmp_path, pub_ckpts):
    from gmg_deploy.cli.export_cmd import main

    r = CliRunner().invoke(main, ["--ckpt", str(pub_ckpts["motionrnn_pub9"]), "-o", str(tmp_path / "a.onnx")])
    assert r.exit_code == 0, r.output
    assert "auto chose 'published'" in r.stdout and "--warp-gate motionrnn" in r.stdout
    assert read_metadata(tmp_path / "a.onnx")["warp_gate"] == "published"
    r = CliRunner().invoke(main, ["--ckpt", str(pub_ckpts["motionrnn_pub9"]), "-o", str(tmp_path / "b.onnx"),
                                  "--warp-gate", "motionrnn", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["warp_gate"] == "motionrnn" and doc["warp_gate_requested"] == "motionrnn"
    assert read_metadata(tmp_path / "b.onnx")["warp_gate"] == "motionrnn"
    r = CliRunner().invoke(main, ["--ckpt", str(pub_ckpts["motionrnn_pub9"]), "-o", str(tmp_path / "c.onnx"),
                                  "--warp-gate", "published"])
    assert r.exit_code == 0 and "auto chose" not in r.stdout  # asked for explicitly: no note
    r = CliRunner().invoke(main, ["--ckpt", str(pub_ckpts["motionrnn_tiny"]), "-o", str(tmp_path / "d.onnx"),
                                  "--warp-gate", "published"])
    assert r.exit_code == 2 and "error: warp_gate='published'" in r.output and "4x4" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "d.onnx").exists()


def test_layouts_are_two_models_for_ranges_and_compare(tmp_path, pub_ckpts):
    from gmg_deploy.precision.qdq import quantize_graph
    from gmg_deploy.precision.ranges import CalibrationError, collect_ranges, fingerprint
    from gmg_deploy.evaluate.accuracy import compare_graphs
    from gmg_deploy.errors import InputError

    frames = fixture_golden("motionrnn_pub9")["frames"]
    pub = build_proto(load_checkpoint(pub_ckpts["motionrnn_pub9"]))
    mot = build_proto(load_checkpoint(pub_ckpts["motionrnn_pub9"], warp_gate="motionrnn"))
    assert fingerprint(pub) != fingerprint(mot)
    doc = collect_ranges(pub, frames, method="minmax")
    with pytest.raises(CalibrationError, match="warp-gate layout 'published', this graph uses 'motionrnn': the layouts differ"):
        quantize_graph(mot, doc)
    with pytest.raises(InputError, match=r"warp-gate layouts differ \(reference published, candidate motionrnn\)"):
        compare_graphs(pub, mot, frames)


def test_fp16_and_int8_pub9_graphs_pass_compare_check(tmp_path, pub_ckpts):
    """Held-out data: the fixture's own sequences (pre 3 + aft 3 frames, truth included)."""
    from gmg_deploy.cli.calibrate_cmd import main as calibrate
    from gmg_deploy.cli.compare_cmd import main as compare
    from gmg_deploy.cli.export_cmd import main as export

    ckpt = str(pub_ckpts["motionrnn_pub9"])
    g = fixture_golden("motionrnn_pub9")
    calib, test = tmp_path / "calib.npy", tmp_path / "test.npy"
    rng = np.random.default_rng(0)
    np.save(calib, np.clip(g["frames"] + rng.normal(0, 0.05, g["frames"].shape), 0, 1).astype(np.float32))
    np.save(test, g["frames"])
    run = lambda cmd, args: CliRunner().invoke(cmd, [str(a) for a in args])  # noqa: E731
    r = run(calibrate, ["--ckpt", ckpt, "--data", calib, "-o", tmp_path / "r.json", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["warp_gate"] == "published"
    for prec, extra in (("fp32", []), ("fp16", []), ("int8", ["--calibration", tmp_path / "r.json"])):
        r = run(export, ["--ckpt", ckpt, "-o", tmp_path / f"{prec}.onnx", "--precision", prec, *extra])
        assert r.exit_code == 0, r.output
        assert read_metadata(tmp_path / f"{prec}.onnx")["warp_gate"] == "published"
    for prec in ("fp16", "int8"):
        r = run(compare, [tmp_path / "fp32.onnx", tmp_path / f"{prec}.onnx", "--data", test, "--check", "--json"])
        assert r.exit_code == 0, r.output
        res = json.loads(r.stdout)
        assert res["passed"] is True and res["precision"] == prec and res["extra"]["warp_gate"] == "published"
    r = run(calibrate, ["--onnx", tmp_path / "fp32.onnx", "--data", calib, "-o", tmp_path / "r2.json",
                        "--warp-gate", "motionrnn"])
    assert r.exit_code == 2 and "exported with warp-gate layout 'published'" in r.output
    # ranges of the published graph are refused for a motionrnn-layout export
    r = run(export, ["--ckpt", ckpt, "-o", tmp_path / "x.onnx", "--precision", "int8", "--warp-gate", "motionrnn",
                     "--calibration", tmp_path / "r.json"])
    assert r.exit_code == 2 and "the layouts differ" in r.output and not (tmp_path / "x.onnx").exists()
    # gmg-compare across layouts: one line, exit 2
    run(export, ["--ckpt", ckpt, "-o", tmp_path / "m.onnx", "--warp-gate", "motionrnn"])
    r = run(compare, [tmp_path / "fp32.onnx", tmp_path / "m.onnx", "--data", test])
    assert r.exit_code == 2 and "warp-gate layouts differ" in r.output


def test_infer_and_torch_backend_take_the_layout(tmp_path, pub_ckpts):
    from gmg_deploy.cli.infer_cmd import main as infer
    from gmg_deploy.runtime.torch_backend import TorchBackend

    ckpt = pub_ckpts["motionrnn_pub9"]
    assert TorchBackend.from_checkpoint(ckpt).config.warp_gate == "published"
    be = TorchBackend.from_checkpoint(ckpt, warp_gate="motionrnn")
    assert be.config.warp_gate == be.metadata["warp_gate"] == "motionrnn"
    g = fixture_golden("motionrnn_pub9")
    data = tmp_path / "x.npy"
    np.save(data, g["frames"])
    preds = {}
    for gate in ("auto", "motionrnn"):
        out = tmp_path / f"{gate}.npy"
        r = CliRunner().invoke(infer, ["--engine", str(ckpt), "--input", str(data), "--out", str(out),
                                       "--warp-gate", gate, "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["warp_gate"] == ("published" if gate == "auto" else "motionrnn")
        preds[gate] = np.load(out)
    assert _err(preds["auto"], g["preds_single"]) < TOL
    assert _err(preds["motionrnn"], g["preds_single"]) > 3e-5
    export_model(load_checkpoint(ckpt), tmp_path / "s.onnx")
    r = CliRunner().invoke(infer, ["--engine", str(tmp_path / "s.onnx"), "--input", str(data),
                                   "--out", str(tmp_path / "o.npy"), "--warp-gate", "motionrnn"])
    assert r.exit_code == 2 and "--warp-gate apply to checkpoints" in r.output
    with pytest.raises(GMGError):
        TorchBackend.from_checkpoint(pub_ckpts["motionrnn_tiny"], warp_gate="published")
