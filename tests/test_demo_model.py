"""The embedded demo model: ships with the package, loads safely, beats copy-last on held-out data."""
import json

import numpy as np
import pytest
import torch

from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset, demo_info, demo_info_path
from gmg_deploy.evaluate.metrics import copy_last_baseline, mse_per_step, ssim_per_step
from gmg_deploy.errors import InputError
from gmg_deploy.model import load_checkpoint


@pytest.fixture(scope="module")
def demo_model():
    torch.set_num_threads(1)
    return load_checkpoint(demo_checkpoint_path())


def test_checkpoint_is_small_weights_only_float16():
    p = demo_checkpoint_path()
    assert p.stat().st_size <= 15 * 1024 * 1024
    obj = torch.load(p, map_location="cpu", weights_only=True)  # plain dicts / tensors / numbers / strings
    dtypes = {v.dtype for v in obj["state_dict"].values()}
    assert dtypes == {torch.float16}
    assert obj["hyper_parameters"]["method"] == "gmg"


def test_loads_as_float32_gmg(demo_model):
    cfg = demo_model.config
    assert (cfg.arch, cfg.in_shape, cfg.pre_seq_length, cfg.aft_seq_length) == ("gmg", (20, 1, 32, 32), 10, 10)
    assert cfg.num_hidden == (128, 128)
    assert {p.dtype for p in demo_model.parameters()} == {torch.float32}
    info = demo_info()
    assert info["config"] == cfg.to_dict()
    assert info["quality"]["model"]["mse"] < info["quality"]["copy_last"]["mse"]
    assert len(info["quality"]["model"]["ssim_per_step"]) == 10


def test_beats_copy_last_on_held_out(demo_model):
    frames = demo_dataset("test", n=8)
    with torch.no_grad():
        pred = demo_model.predict(torch.from_numpy(frames[:, :10])).numpy()
    true = frames[:, 10:]
    base = copy_last_baseline(frames[:, :10], 10)
    mse_m, mse_b = mse_per_step(pred, true).mean(), mse_per_step(base, true).mean()
    ssim_m, ssim_b = ssim_per_step(pred, true).mean(), ssim_per_step(base, true).mean()
    assert mse_m < 0.6 * mse_b, (mse_m, mse_b)
    assert ssim_m > ssim_b, (ssim_m, ssim_b)
    # on sparse frames an all-black forecast already beats copy-last; the model must beat it too
    blank = np.zeros_like(true)
    assert mse_m < 0.7 * mse_per_step(blank, true).mean()
    assert ssim_m > ssim_per_step(blank, true).mean()


def test_demo_dataset_splits():
    a = demo_dataset("test", n=3)
    assert a.shape == (3, 20, 1, 32, 32) and a.dtype == np.float32
    assert np.array_equal(a, demo_dataset("test", n=3))
    assert not np.array_equal(a, demo_dataset("train", n=3))
    assert not np.array_equal(a, demo_dataset(n=3, seed=1))
    with pytest.raises(InputError, match="split"):
        demo_dataset("nope")
    assert json.loads(demo_info_path().read_text())["dataset"]["test_seed"] == 98765
