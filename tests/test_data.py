"""The synthetic moving-digits generator: shape, range, determinism, bouncing, splits."""

import numpy as np
import pytest

from gmg_deploy.data.demo import demo_dataset
from gmg_deploy.data.moving_shapes import MovingDigitsSpec, digit_glyphs, moving_digits
from gmg_deploy.errors import InputError


def test_shape_dtype_range():
    x = moving_digits(5, seed=0)
    assert x.shape == (5, 20, 1, 32, 32)
    assert x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0


def test_every_frame_shows_the_whole_digit():
    # a glyph never leaves the frame, so each frame holds exactly the glyph's ink (one object)
    glyphs = digit_glyphs(2)
    ink = glyphs.reshape(10, -1).sum(1)
    x = moving_digits(50, seed=3)
    per_frame = x.reshape(50, 20, -1).sum(-1)
    assert np.all([np.isin(per_frame[i], ink).all() and len(set(per_frame[i])) == 1 for i in range(50)])


def test_motion_bounces_and_speed_is_bounded():
    spec = MovingDigitsSpec(num_frames=60, min_speed=1, max_speed=3)
    x = moving_digits(20, seed=7, spec=spec)[:, :, 0]
    cols = x.any(axis=2)  # (N, T, W): columns holding ink
    left = cols.argmax(axis=-1)
    step = np.diff(left, axis=1)
    assert np.abs(step).max() <= 3  # |v| <= 3 (reflection shortens a step, never lengthens it)
    assert (np.sign(step[:, 1:]) != np.sign(step[:, :-1])).any()  # direction changes: bounces happen
    assert x[:, :, :, 0].any() or x[:, :, :, -1].any()  # glyphs touch the border


def test_deterministic_and_seeds_differ():
    a = moving_digits(8, seed=11)
    b = moving_digits(8, seed=11)
    c = moving_digits(8, seed=12)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(demo_dataset("train", 8), demo_dataset("test", 8))


def test_multiple_objects_and_bad_args():
    x = moving_digits(3, seed=2, spec=MovingDigitsSpec(num_objects=2))
    assert x.shape == (3, 20, 1, 32, 32) and x.max() == 1.0
    with pytest.raises(InputError, match="too small"):
        moving_digits(1, seed=0, spec=MovingDigitsSpec(height=10, width=10))
    with pytest.raises(InputError, match="split"):
        demo_dataset("bogus", 2)
