"""One way to name things across the CLIs: the MODEL argument (with --model and the old spellings as aliases)
and the same checkpoint options wherever a checkpoint is accepted."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from conftest import fixture_state_dict
from precision_helpers import sequences
from test_checkpoint import GMG_CONFIG_FILE

from gmg_deploy.cli import calibrate_cmd, export_cmd
from gmg_deploy.cli.model_options import CHECKPOINT_OPTIONS


def _run(cmd, *args):
    return CliRunner().invoke(cmd.main, [str(a) for a in args])


def _one_error(r) -> str:
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


def _meta(path):
    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["gmg_deploy"])


def test_export_model_positional_option_and_alias_are_one(tmp_path, gmg_ckpt):
    """`gmg-export MODEL`, `--model MODEL` and the old `--ckpt MODEL` export the same graph."""
    outs = []
    for k, how in enumerate(([str(gmg_ckpt)], ["--model", gmg_ckpt], ["--ckpt", gmg_ckpt])):
        out = tmp_path / f"m{k}.onnx"
        r = _run(export_cmd, *how, "-o", out)
        assert r.exit_code == 0, r.output
        outs.append(_meta(out)["config"])
    assert outs[0] == outs[1] == outs[2]
    msg = _one_error(_run(export_cmd, gmg_ckpt, "--ckpt", tmp_path / "other.ckpt", "-o", tmp_path / "x.onnx"))
    assert "given 2 times" in msg and "give it once" in msg
    assert not (tmp_path / "x.onnx").exists()


def test_calibrate_takes_the_model_positionally_by_suffix(tmp_path, gmg_ckpt):
    """`gmg-calibrate STEP.onnx` (a graph, by suffix) and `gmg-calibrate CKPT` (a checkpoint) write ranges."""
    step = tmp_path / "step.onnx"
    assert _run(export_cmd, gmg_ckpt, "-o", step).exit_code == 0
    data = tmp_path / "d.npy"
    np.save(data, sequences(2, 1).astype(np.float32))
    docs = []
    for model in (step, gmg_ckpt):
        out = tmp_path / f"r_{model.suffix[1:]}.json"
        r = _run(calibrate_cmd, model, "--data", data, "-o", out, "--json")
        assert r.exit_code == 0, r.output
        docs.append(json.loads(out.read_text()))
    assert docs[0]["fingerprint"] == docs[1]["fingerprint"]
    msg = _one_error(_run(calibrate_cmd, step, "--pre", 3, "--data", data, "-o", tmp_path / "x.json"))
    assert "--pre/--aft" in msg and "is a graph" in msg


def test_bare_state_dict_options_are_the_same_in_export_and_calibrate(tmp_path):
    """A bare .pth needs --config-file --in-shape --pre --aft: both commands take them (calibrate lacked --pre/--aft)."""
    torch.save(fixture_state_dict("gmg_tiny"), tmp_path / "w.pth")
    cfg = tmp_path / "GMG.py"
    cfg.write_text(GMG_CONFIG_FILE)
    shape = ["--config-file", cfg, "--in-shape", "4,1,16,16", "--pre", 4, "--aft", 4]
    r = _run(export_cmd, tmp_path / "w.pth", *shape, "-o", tmp_path / "w.onnx")
    assert r.exit_code == 0, r.output
    data = tmp_path / "d.npy"
    np.save(data, sequences(2, 1).astype(np.float32))
    r = _run(calibrate_cmd, tmp_path / "w.pth", *shape, "--data", data, "-o", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "r.json").read_text())["steps_per_sequence"] == 7


def _cmd(name):
    import importlib

    return importlib.import_module(f"gmg_deploy.cli.{name}_cmd")


@pytest.mark.parametrize("name", ["export", "calibrate", "infer", "compare", "build"])
def test_checkpoint_options_are_identical(name):
    cmd = _cmd(name)
    """Every command that accepts a checkpoint has the whole set of checkpoint options, with the same help."""
    from gmg_deploy.cli.export_cmd import main as reference

    def opts(command):
        return {p.name: (tuple(p.opts), p.help) for p in command.params if p.name in CHECKPOINT_OPTIONS}

    assert set(opts(cmd.main)) == set(CHECKPOINT_OPTIONS)
    assert opts(cmd.main) == opts(reference)


@pytest.mark.parametrize("name", ["export", "calibrate", "infer", "build", "triton"])
def test_every_model_command_takes_model_positionally_or_as_model(name):
    """One spelling: MODEL (positional) or --model; the old spellings stay as aliases."""
    import click

    cmd = _cmd(name).main
    names = {o for p in cmd.params for o in getattr(p, "opts", [])}
    assert "--model" in names
    assert any(isinstance(p, click.Argument) and p.name == "model__arg" for p in cmd.params)


def test_threads_default_is_the_runtimes_everywhere():
    """--threads: one convention - unset/0 means ONNX Runtime's default (one per core) in every command."""
    from gmg_deploy.cli import compare_cmd, infer_cmd, triton_cmd

    for cmd in (infer_cmd, compare_cmd, calibrate_cmd):
        (p,) = [p for p in cmd.main.params if p.name == "threads"]
        assert p.default is None, cmd.__name__
        assert any(q.name == "no_spin" for q in cmd.main.params), cmd.__name__
    (p,) = [p for p in triton_cmd.main.params if p.name == "intra_op_threads"]
    assert p.default == 0


def test_threads_above_four_per_cpu_are_refused_in_calibrate(tmp_path, gmg_ckpt):
    from gmg_deploy.checks import cpu_count

    data = tmp_path / "d.npy"
    np.save(data, sequences(2, 1).astype(np.float32))
    msg = _one_error(_run(calibrate_cmd, gmg_ckpt, "--data", data, "-o", tmp_path / "r.json",
                          "--threads", 4 * cpu_count() + 1))
    assert "--threads" in msg and "4x" in msg
    assert not (tmp_path / "r.json").exists()
