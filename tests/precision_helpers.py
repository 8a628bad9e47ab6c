"""Shared, cached graphs for the precision tests: FP32 step exports of the fixtures and synthetic sequences."""
from __future__ import annotations

import functools

import numpy as np
import torch

from conftest import FIXTURES, fixture_state_dict, fixture_hparams  # noqa: F401


@functools.lru_cache(maxsize=None)
def fp32_step(name: str):
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint
    import tempfile
    from pathlib import Path

    from conftest import write_lightning_ckpt

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        model = load_checkpoint(write_lightning_ckpt(name, Path(d) / f"{name}.ckpt"))
    return build_proto(model, graph="step")


@functools.lru_cache(maxsize=None)
def sequences(n: int, seed: int) -> np.ndarray:
    """``(n, 8, 1, 16, 16)`` moving digits: the fixtures' frame size, pre 4 + aft 4."""
    from gmg_deploy.data.moving_shapes import MovingDigitsSpec, moving_digits

    return moving_digits(n, seed, MovingDigitsSpec(num_frames=8, height=16, width=16, glyph_scale=1))
