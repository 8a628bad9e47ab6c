"""Deterministic synthetic "moving digits" sequences (no download, NumPy only).

Each sequence shows ``num_objects`` glyphs (the digits 0-9 from a hand-drawn 5x7 font, scaled up) moving in
straight lines with integer velocities and bouncing off the frame borders. Frames are float32 in ``[0, 1]``,
shape ``(N, T, 1, H, W)``; overlapping glyphs combine with ``max``. Everything is drawn from a
``numpy.random.Generator`` seeded by ``seed``, so the same arguments always give the same array.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gmg_deploy.errors import InputError

#: 5 wide x 7 tall bitmaps of the digits 0-9 ('#' = ink).
_FONT_5x7 = {
    0: [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."],
    1: ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
    2: [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
    3: ["#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."],
    4: ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
    5: ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],
    6: ["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."],
    7: ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
    8: [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."],
    9: [".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."],
}

#: Seeds of the named splits. Training batch ``i`` of ``scripts/train_demo.py`` is drawn with seed
#: ``SPLIT_SEEDS["train"] + i``; "val" selects the best checkpoint; "test" is held out for the quality table.
SPLIT_SEEDS = {"train": 1_000_000, "val": 555, "test": 98765}


def digit_glyphs(scale: int = 2) -> np.ndarray:
    """The ten digit glyphs ``(10, 7*scale, 5*scale)`` float32 in ``[0, 1]`` (pixel-doubled bitmaps)."""
    if scale < 1:
        raise InputError(f"glyph scale={scale} must be >= 1")
    out = []
    for d in range(10):
        bm = np.array([[ch == "#" for ch in row] for row in _FONT_5x7[d]], dtype=np.float32)
        out.append(np.kron(bm, np.ones((scale, scale), dtype=np.float32)))
    return np.stack(out)


@dataclass(frozen=True)
class MovingDigitsSpec:
    """Parameters of a moving-digits data set (all that is needed to regenerate it)."""

    num_frames: int = 20
    height: int = 32
    width: int = 32
    num_objects: int = 1
    glyph_scale: int = 2
    min_speed: int = 1
    max_speed: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {"generator": "gmg_deploy.data.moving_shapes.moving_digits", **asdict(self)}


def _check(spec: MovingDigitsSpec, n: int) -> None:
    gh, gw = 7 * spec.glyph_scale, 5 * spec.glyph_scale
    if n < 0:
        raise InputError(f"number of sequences n={n} must be >= 0")
    if spec.num_frames < 1 or spec.num_objects < 1:
        raise InputError(f"num_frames={spec.num_frames} and num_objects={spec.num_objects} must be >= 1")
    if spec.height <= gh or spec.width <= gw:
        raise InputError(
            f"frame {spec.height}x{spec.width} is too small for {gh}x{gw} glyphs; use a larger frame or glyph_scale=1"
        )
    if not 0 <= spec.min_speed <= spec.max_speed or spec.max_speed < 1:
        raise InputError(f"speeds min={spec.min_speed}, max={spec.max_speed}: need 0 <= min <= max and max >= 1")


def _bounce(start: np.ndarray, vel: np.ndarray, steps: int, limit: int) -> np.ndarray:
    """Positions ``(..., steps)`` of points moving at ``vel`` reflected into ``[0, limit]`` (closed form)."""
    t = np.arange(steps)
    raw = start[..., None] + vel[..., None] * t  # unbounded straight-line positions
    if limit == 0:
        return np.zeros_like(raw)
    period = 2 * limit
    r = np.mod(raw, period)
    return np.where(r <= limit, r, period - r)


def moving_digits(n: int, seed: int, spec: MovingDigitsSpec | None = None) -> np.ndarray:
    """``n`` sequences ``(n, T, 1, H, W)`` float32 in ``[0, 1]``, fully determined by ``seed`` and ``spec``.

    Every object gets a random digit, a random start position inside the frame and a random integer velocity
    per axis with ``min_speed <= |v| <= max_speed`` (random sign); it bounces off the borders.
    """
    spec = spec or MovingDigitsSpec()
    _check(spec, n)
    rng = np.random.default_rng(seed)
    glyphs = digit_glyphs(spec.glyph_scale)
    gh, gw = glyphs.shape[1:]
    T, H, W, K = spec.num_frames, spec.height, spec.width, spec.num_objects
    ymax, xmax = H - gh, W - gw
    digits = rng.integers(0, 10, size=(n, K))
    y0 = rng.integers(0, ymax + 1, size=(n, K))
    x0 = rng.integers(0, xmax + 1, size=(n, K))
    speeds = rng.integers(spec.min_speed, spec.max_speed + 1, size=(n, K, 2))
    signs = rng.choice(np.array([-1, 1]), size=(n, K, 2))
    vel = speeds * signs
    ys = _bounce(y0, vel[..., 0], T, ymax)  # (n, K, T)
    xs = _bounce(x0, vel[..., 1], T, xmax)
    out = np.zeros((n, T, 1, H, W), dtype=np.float32)
    for i in range(n):
        for k in range(K):
            g = glyphs[digits[i, k]]
            for t in range(T):
                y, x = ys[i, k, t], xs[i, k, t]
                win = out[i, t, 0, y : y + gh, x : x + gw]
                np.maximum(win, g, out=win)
    return out
