"""An animated GIF of one sequence: rows input | ground truth | prediction, one GIF frame per time step.

GIF frame ``t`` (``pre + aft`` frames in all) shows three rows stacked top to bottom, each labelled on the
left (``input``, ``truth``, ``predicted``; ``t=`` the step): the observed frame ``t`` (held at the last
observed frame once ``t >= pre``), the ground truth, and the prediction (both blank while ``t < pre``).
Without ground truth the middle row is left out. C=3 frames are shown as RGB; for any other C>1 only
channel 0 is shown (the labels say ``ch 0 of C``). Values are clipped to [0,1] for display only; frames
smaller than 128 px are enlarged by an integer factor (nearest neighbour). Note: Pillow merges
consecutive identical GIF frames, so a sequence that does not change between steps yields fewer frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gmg_deploy.io import atomic_path

GAP = 2  # pixels between rows
LABEL_W = 64  # pixels of the label column on the left


def _to_rgb(frame: np.ndarray, scale: int) -> np.ndarray:
    """``(C,H,W)`` in [0,1] -> uint8 ``(H*s, W*s, 3)``; C=3 as RGB, else the first channel as grey."""
    f = np.clip(np.nan_to_num(frame, nan=0.0), 0.0, 1.0)
    img = f.transpose(1, 2, 0) if f.shape[0] == 3 else np.repeat(f[0][..., None], 3, axis=2)
    img = (img * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def gif_geometry(frame_shape: tuple[int, int, int], rows: int) -> tuple[int, int, int]:
    """-> ``(scale, width, height)`` of the GIF for frames ``(C,H,W)`` and ``rows`` rows."""
    _, H, W = frame_shape
    scale = max(1, 128 // max(H, W))
    return scale, LABEL_W + W * scale, rows * H * scale + (rows - 1) * GAP


def _labels(names: list[str], channels: int) -> list[str]:
    note = f"\nch 0 of {channels}" if channels not in (1, 3) else ""
    return [n + note for n in names]


def write_strip_gif(
    path: str | Path,
    inputs: np.ndarray,
    preds: np.ndarray,
    truth: np.ndarray | None = None,
    *,
    duration_ms: int = 200,
) -> tuple[int, tuple[int, int]]:
    """Write the GIF atomically; ``inputs`` ``(pre,C,H,W)``, ``preds``/``truth`` ``(aft,C,H,W)``.

    Returns ``(frame count, (width, height))``.
    """
    from PIL import Image

    pre, aft = inputs.shape[0], preds.shape[0]
    rows = 2 if truth is None else 3
    scale, width, height = gif_geometry(tuple(inputs.shape[1:]), rows)
    from PIL import ImageDraw

    blank = np.zeros_like(preds[0])
    names = _labels(["input", "truth", "predicted"] if truth is not None else ["input", "predicted"],
                    int(inputs.shape[1]))
    images = []
    for t in range(pre + aft):
        k = t - pre
        cells = [inputs[min(t, pre - 1)]]
        if truth is not None:
            cells.append(truth[k] if k >= 0 else blank)
        cells.append(preds[k] if k >= 0 else blank)
        canvas = np.full((height, width, 3), 255, dtype=np.uint8)
        y, tops = 0, []
        for cell in cells:
            img = _to_rgb(cell, scale)
            canvas[y : y + img.shape[0], LABEL_W:] = img
            tops.append(y)
            y += img.shape[0] + GAP
        image = Image.fromarray(canvas)
        draw = ImageDraw.Draw(image)
        for top, name in zip(tops, names):
            draw.multiline_text((3, top + 3), name, fill=(0, 0, 0))
        draw.text((3, height - 14), f"t={t + 1}", fill=(0, 0, 0))
        images.append(image)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return len(images), (width, height)
