"""Checkpoint loading: Lightning .ckpt, bare state dicts, config files, NumPy hyper-parameters, errors."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from conftest import fixture_golden, fixture_hparams, fixture_state_dict, write_lightning_ckpt
from gmg_deploy import CheckpointError, ConfigError, load_checkpoint
from gmg_deploy.model import build_model, save_lightning_checkpoint

TOL = 1e-5

GMG_CONFIG_FILE = """\
method = 'GMG'
# reverse scheduled sampling
reverse_scheduled_sampling = 0
scheduled_sampling = 1
sampling_changing_rate = 0.00002
# model
num_hidden = '128,128'
att_hidden = 8
filter_size = 3
stride = 1
patch_size = 2
layer_norm = 0
lr = 0.0003
batch_size = 16
sched = 'onecycle'
import os  # ignored: the file is parsed, never executed
side_effect = os.system('echo should-not-run')
"""


def _golden_ok(model, name):
    g = fixture_golden(name)
    out = model.predict(torch.from_numpy(g["frames"]), all_steps=True).numpy()
    return np.abs(out - g["all_steps_single"]).max() < TOL


def test_lightning_ckpt_loads_with_config(gmg_ckpt):
    model = load_checkpoint(gmg_ckpt)
    cfg = model.config
    assert cfg.arch == "gmg" and cfg.in_shape == (4, 1, 16, 16)
    assert cfg.num_hidden == (128, 128) and cfg.att_hidden == 8 and cfg.patch_size == 2
    assert not model.training
    assert model.test_mean is None and model.test_std is None


@pytest.mark.parametrize("method", ["GMG", "Gmg", "gmg"])
def test_method_in_any_case(tmp_path, method):
    p = write_lightning_ckpt("gmg_tiny", tmp_path / "m.ckpt", hparams_update={"method": method})
    assert load_checkpoint(p).config.arch == "gmg"


def test_numpy_hyper_parameters_are_kept(tmp_path):
    mean = np.array([0.25], dtype=np.float32)
    std = np.array([[0.5]], dtype=np.float64)
    p = write_lightning_ckpt(
        "motionrnn_tiny", tmp_path / "np.ckpt",
        hparams_update={"test_mean": mean, "test_std": std, "lr": np.float64(3e-4), "epoch": np.int64(600)},
    )
    model = load_checkpoint(p)
    np.testing.assert_array_equal(model.test_mean, mean)
    np.testing.assert_array_equal(model.test_std, std)
    assert _golden_ok(model, "motionrnn_tiny")


@pytest.mark.parametrize("prefix", ["", "module."])
def test_bare_state_dict_with_config_file(tmp_path, prefix):
    sd = {prefix + k: v for k, v in fixture_state_dict("gmg_tiny").items()}
    torch.save(sd, tmp_path / "w.pth")
    cfg_file = tmp_path / "GMG.py"
    cfg_file.write_text(GMG_CONFIG_FILE)
    model = load_checkpoint(tmp_path / "w.pth", config_file=cfg_file, in_shape=(4, 1, 16, 16),
                            pre_seq_length=4, aft_seq_length=4)
    assert model.config.arch == "gmg" and model.config.att_hidden == 8
    assert _golden_ok(model, "gmg_tiny")


def test_module_prefix_inside_lightning_ckpt(tmp_path):
    p = write_lightning_ckpt("motionrnn_tiny", tmp_path / "ddp.ckpt", prefix="model.module.")
    assert _golden_ok(load_checkpoint(p), "motionrnn_tiny")


def test_bare_state_dict_without_config_is_refused(tmp_path):
    torch.save(fixture_state_dict("gmg_tiny"), tmp_path / "w.pth")
    with pytest.raises(ConfigError, match="bare state dict.*config_file.*in_shape"):
        load_checkpoint(tmp_path / "w.pth")


def test_config_file_lacking_shape_names_the_arguments(tmp_path):
    torch.save(fixture_state_dict("gmg_tiny"), tmp_path / "w.pth")
    cfg_file = tmp_path / "GMG.py"
    cfg_file.write_text(GMG_CONFIG_FILE)
    with pytest.raises(ConfigError, match="in_shape, pre_seq_length, aft_seq_length"):
        load_checkpoint(tmp_path / "w.pth", config_file=cfg_file)


def test_explicit_arguments_override_hparams(tmp_path, gmg_ckpt):
    model = load_checkpoint(gmg_ckpt, in_shape=(10, 1, 16, 16), pre_seq_length=6, aft_seq_length=3)
    assert model.config.pre_seq_length == 6 and model.config.in_shape[0] == 10


def test_unsafe_pickle_refused_then_trusted(tmp_path):
    obj = {"state_dict": {"model." + k: v for k, v in fixture_state_dict("motionrnn_tiny").items()},
           "hyper_parameters": argparse.Namespace(**fixture_hparams("motionrnn_tiny"))}
    torch.save(obj, tmp_path / "ns.ckpt")
    with pytest.raises(CheckpointError, match=r"argparse\.Namespace.*trust_checkpoint=True"):
        load_checkpoint(tmp_path / "ns.ckpt")
    model = load_checkpoint(tmp_path / "ns.ckpt", trust_checkpoint=True)
    assert _golden_ok(model, "motionrnn_tiny")


def test_truncated_checkpoint(tmp_path, gmg_ckpt):
    data = gmg_ckpt.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="cannot be read: truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.ckpt")


@pytest.mark.parametrize("content", [b"hello, not a checkpoint\n", b"\x80\x04K\x01."])
def test_non_checkpoint_file(tmp_path, content):
    (tmp_path / "x.ckpt").write_bytes(content)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "x.ckpt")


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        load_checkpoint(tmp_path / "empty.ckpt")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_key_problems_listed_in_one_error(tmp_path):
    sd = fixture_state_dict("gmg_tiny")
    del sd["conv_last.weight"]
    sd["extra.weight"] = torch.zeros(1)
    sd["conv_first_v.weight"] = torch.zeros(128, 4, 3, 3)
    obj = {"state_dict": {"model." + k: v for k, v in sd.items()}, "hyper_parameters": fixture_hparams("gmg_tiny")}
    torch.save(obj, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(tmp_path / "bad.ckpt")
    msg = str(ei.value)
    assert "1 missing: conv_last.weight" in msg
    assert "1 unexpected: extra.weight" in msg
    assert "conv_first_v.weight (128, 4, 3, 3) != (128, 4, 1, 1)" in msg
    assert "\n" not in msg


def test_config_mismatch_lists_first_keys(tmp_path):
    # weights trained with filter 3 loaded as filter 5: many mis-shaped keys, only the first few listed
    p = write_lightning_ckpt("gmg_tiny", tmp_path / "f5.ckpt", hparams_update={"filter_size": 5})
    with pytest.raises(CheckpointError, match=r"filter_size=5\): \d+ mis-shaped: .*\(\+\d+ more\)"):
        load_checkpoint(p)


def test_arch_mismatch(tmp_path):
    p = write_lightning_ckpt("motionrnn_tiny", tmp_path / "m.ckpt",
                             hparams_update={"method": "gmg", "num_hidden": "128,128", "att_hidden": 8})
    with pytest.raises(CheckpointError, match="missing: .*attention_layer"):
        load_checkpoint(p)


def test_not_a_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(tmp_path / "list.pth")


def test_unsupported_method(tmp_path):
    p = write_lightning_ckpt("gmg_tiny", tmp_path / "x.ckpt", hparams_update={"method": "simvp"})
    with pytest.raises(ConfigError, match="'simvp' is not supported"):
        load_checkpoint(p)


def test_save_lightning_checkpoint_round_trip(tmp_path, gmg_ckpt):
    model = load_checkpoint(gmg_ckpt)
    out = tmp_path / "again.ckpt"
    save_lightning_checkpoint(model, out, lr=1e-3)
    again = load_checkpoint(out)
    assert again.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    assert not list(tmp_path.glob(".again.ckpt.*"))  # no temp file left behind


def test_random_model_checkpoint_round_trip(tmp_path):
    from gmg_deploy.model import ModelConfig

    cfg = ModelConfig(arch="motionrnn", in_shape=(6, 2, 8, 12), pre_seq_length=3, aft_seq_length=3,
                      num_hidden=(16, 16, 16), filter_size=5, patch_size=2, layer_norm=True)
    m = build_model(cfg)
    save_lightning_checkpoint(m, tmp_path / "r.ckpt")
    m2 = load_checkpoint(tmp_path / "r.ckpt")
    x = torch.rand(2, 6, 2, 8, 12)
    torch.testing.assert_close(m.predict(x), m2.predict(x), rtol=0, atol=0)
