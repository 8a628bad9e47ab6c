"""The embedded demo: a small GMG trained on synthetic moving digits, shipped inside the package.

``demo_checkpoint_path()`` is an OpenSTL Lightning checkpoint (float16 tensors; ``load_checkpoint`` casts
them into the float32 model) for ``in_shape=(20, 1, 32, 32)``, 10 observed -> 10 predicted frames.
``demo_info()`` is its record (config, data set, training run, measured quality). ``demo_dataset()``
regenerates held-out sequences of the data it was trained on, no download needed::

    from gmg_deploy import load_checkpoint
    from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset
    model = load_checkpoint(demo_checkpoint_path())
    frames = demo_dataset("test", n=4)            # (4, 20, 1, 32, 32) float32 in [0, 1]
    forecast = model.predict(torch.from_numpy(frames[:, :10]))
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gmg_deploy.data.moving_shapes import SPLIT_SEEDS, MovingDigitsSpec, moving_digits
from gmg_deploy.errors import CheckpointError, InputError

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEMO_CHECKPOINT = "demo_gmg.ckpt"
DEMO_INFO = "demo_gmg.json"
#: The data the demo model was trained and evaluated on.
DEMO_SPEC = MovingDigitsSpec()


def demo_checkpoint_path() -> Path:
    """Path of the shipped demo checkpoint (raises :class:`CheckpointError` if the install lacks it)."""
    p = ASSETS_DIR / DEMO_CHECKPOINT
    if not p.is_file():
        raise CheckpointError(
            f"demo checkpoint {p} is missing; reinstall gmg-deploy (package data 'assets/*' must be included)"
        )
    return p


def demo_info_path() -> Path:
    return ASSETS_DIR / DEMO_INFO


def demo_info() -> dict[str, Any]:
    """The demo model's record: ``config``, ``dataset``, ``training``, ``quality``."""
    p = demo_info_path()
    if not p.is_file():
        raise CheckpointError(f"demo record {p} is missing; reinstall gmg-deploy")
    return json.loads(p.read_text(encoding="utf-8"))


def demo_dataset(split: str = "test", n: int = 8, seed: int | None = None) -> np.ndarray:
    """``n`` moving-digit sequences ``(n, 20, 1, 32, 32)`` float32 in ``[0, 1]``.

    ``split="test"`` (default) is held out from training (its own seed); ``seed`` overrides the split's seed.
    """
    if seed is None:
        if split not in SPLIT_SEEDS:
            raise InputError(f"split {split!r} is unknown; use one of {sorted(SPLIT_SEEDS)} or pass seed=")
        seed = SPLIT_SEEDS[split]
    if n < 1:
        raise InputError(f"n={n} sequences: need at least 1")
    return moving_digits(n, seed, DEMO_SPEC)
