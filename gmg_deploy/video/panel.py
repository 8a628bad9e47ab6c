"""The output panel: labelled columns (observed | forecast t+1 | forecast t+K [| true t+K]), one row per stream.

Cells are the model-sized frames enlarged by an integer factor with nearest neighbour so that they are at
least ``MIN_CELL`` pixels high; a label bar (text drawn with Pillow) sits above each column. Width and height
are even (H.264 with 4:2:0 chroma needs that).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_CELL = 160
LABEL_H = 16
GAP = 4
BACKGROUND = 32  # grey of gaps and label bars
TEXT = (255, 255, 255)


@dataclass(frozen=True)
class PanelGeometry:
    scale: int
    cell: tuple[int, int]  # (width, height) of one enlarged frame
    columns: int
    rows: int
    size: tuple[int, int]  # (width, height) of the whole panel

    def cell_origin(self, row: int, col: int) -> tuple[int, int]:
        """``(x, y)`` of the top-left pixel of the frame in ``row``, ``col``."""
        cw, ch = self.cell
        return GAP + col * (cw + GAP), row * (LABEL_H + ch + GAP) + LABEL_H + GAP


def panel_geometry(frame_hw: tuple[int, int], columns: int, rows: int = 1) -> PanelGeometry:
    H, W = frame_hw
    scale = max(1, -(-MIN_CELL // H))
    cw, ch = W * scale, H * scale
    width = GAP + columns * (cw + GAP)
    height = rows * (LABEL_H + ch + GAP) + GAP
    return PanelGeometry(scale, (cw, ch), columns, rows, (width + width % 2, height + height % 2))


def column_labels(horizon: int, with_truth: bool) -> list[str]:
    labels = ["observed t", "forecast t+1", f"forecast t+{horizon}"]
    return labels + [f"true t+{horizon}"] if with_truth else labels


def render_panel(rows: list[list[np.ndarray | None]], labels: list[str]) -> np.ndarray:
    """``rows`` of RGB uint8 ``(H,W,3)`` cells (``None``: left dark) -> RGB uint8 panel ``(height, width, 3)``."""
    from PIL import Image, ImageDraw

    first = next(c for r in rows for c in r if c is not None)
    geo = panel_geometry(first.shape[:2], len(labels), len(rows))
    width, height = geo.size
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    s = geo.scale
    for r, cells in enumerate(rows):
        for c, cell in enumerate(cells):
            if cell is None:
                continue
            x, y = geo.cell_origin(r, c)
            big = np.repeat(np.repeat(cell, s, axis=0), s, axis=1)
            canvas[y : y + big.shape[0], x : x + big.shape[1]] = big
    im = Image.fromarray(canvas)
    draw = ImageDraw.Draw(im)
    for r in range(len(rows)):
        for c, text in enumerate(labels):
            x, y = geo.cell_origin(r, c)
            draw.text((x + 2, y - LABEL_H + 2), text, fill=TEXT)
    return np.asarray(im)
