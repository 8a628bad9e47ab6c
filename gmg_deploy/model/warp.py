"""The MotionGRU neighbourhood warp (a modulated deformable 3x3 convolution), in two exact forms.

``gridsample``: one bilinear ``grid_sample`` (zeros padding, ``align_corners=False``) over a grid laid out
in 3x3 blocks - what the ONNX export uses (``GridSample``). ``gather``: the reference's index arithmetic
(zero ring, clamp, floor, four gathers). Both agree with the golden fixture to float32 rounding.

Gate layout (``gate``): ``motionrnn`` - gate channel k multiplies tap k; ``published`` - the published GMG
code's unpermuted broadcast, which at its only runnable motion grid (9x9) multiplies tap k at ``(i, j)`` by
gate channel i at ``(j, k)``: one ``permute(0, 3, 1, 2)`` (ONNX ``Transpose``) of the gate, in both forms.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gmg_deploy.errors import ConfigError

WARP_FORMS = ("gridsample", "gather")
K = 9  # taps of the 3x3 neighbourhood


class Warp(nn.Module):
    """``warp(f, off)``: ``f`` ``(B,c,hm,wm)``, ``off`` ``(B,18,hm,wm)`` (9 row then 9 column offsets)."""

    def __init__(self, channels: int, form: str = "gridsample", gate: str = "motionrnn") -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=3, bias=False)
        self.warp_gate = nn.Conv2d(channels, K, kernel_size=3, padding=1)
        self.form = check_warp_form(form)
        if gate not in ("motionrnn", "published"):
            raise ConfigError(f"gate={gate!r} is not a resolved warp-gate layout; use 'motionrnn' or 'published'")
        self.gate_layout = gate

    def forward(self, f: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.warp_gate(f))
        if self.gate_layout == "published":
            gate = gate.permute(0, 3, 1, 2)  # gate_used[k, i, j] = m[i, j, k]; needs hm = wm = 9 (ModelConfig checks)
        if self.form == "gridsample":
            big = sample_gridsample(f, off) * F.pixel_shuffle(gate, 3)
        else:
            big = sample_gather(f, off, gate)
        return self.conv(big)


def check_warp_form(form: str) -> str:
    if form not in WARP_FORMS:
        raise ConfigError(f"warp={form!r} is not a warp form; choose one of {', '.join(WARP_FORMS)}")
    return form


def _grid_affine(hm: int, wm: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and bias turning ``cat[col_off, row_off]`` into normalised grid coordinates.

    Tap ``k = 3a+b`` at ``(i, j)`` samples column ``x = j + b - 1 + off[9+k]`` and row ``y = i + a - 1 + off[k]``;
    ``align_corners=False`` normalises ``x_n = (2x + 1)/wm - 1``. Returns ``scale (1,18,1,1)`` and
    ``bias (1,18,hm,wm)`` (float64 for exactness, cast to ``dtype``).
    """
    a = torch.arange(3, dtype=torch.float64, device=device).repeat_interleave(3)  # row tap offset + 1, k = 3a+b
    b = torch.arange(3, dtype=torch.float64, device=device).repeat(3)
    i = torch.arange(hm, dtype=torch.float64, device=device).view(1, hm, 1)
    j = torch.arange(wm, dtype=torch.float64, device=device).view(1, 1, wm)
    x = (j + b.view(K, 1, 1) - 1).expand(K, hm, wm)
    y = (i + a.view(K, 1, 1) - 1).expand(K, hm, wm)
    bias = torch.cat([(2 * x + 1) / wm - 1, (2 * y + 1) / hm - 1]).unsqueeze(0)
    f64 = dict(dtype=torch.float64, device=device)
    scale = torch.cat([torch.full((K,), 2.0 / wm, **f64), torch.full((K,), 2.0 / hm, **f64)])
    # built on ``device``: no host->device copy per step (and capturable in a CUDA graph)
    return scale.view(1, 2 * K, 1, 1).to(dtype=dtype), bias.to(dtype=dtype)


def sample_gridsample(f: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
    """The 9 bilinear taps of every position, laid out in 3x3 blocks: ``(B, c, 3hm, 3wm)``."""
    hm, wm = f.shape[-2:]
    scale, bias = _grid_affine(hm, wm, torch.float32, off.device)
    off32 = off.float()
    coords = torch.cat([off32[:, K:], off32[:, :K]], dim=1) * scale + bias  # (B, 18, hm, wm): x taps, y taps
    grid = F.pixel_shuffle(coords, 3).permute(0, 2, 3, 1)  # (B, 3hm, 3wm, 2) as (x, y)
    return F.grid_sample(f, grid.to(f.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def sample_gather(f: torch.Tensor, off: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """The reference's form: pad one zero ring, clamp, gather the four neighbours, gate, lay out in blocks."""
    B, c, hm, wm = f.shape
    xp = F.pad(f, (1, 1, 1, 1))
    Hp, Wp = hm + 2, wm + 2
    dev, dt = off.device, off.dtype
    a = torch.arange(3, device=dev).repeat_interleave(3).to(dt).view(1, K, 1, 1)
    b = torch.arange(3, device=dev).repeat(3).to(dt).view(1, K, 1, 1)
    rows = torch.arange(1, hm + 1, device=dev).to(dt).view(1, 1, hm, 1)
    cols = torch.arange(1, wm + 1, device=dev).to(dt).view(1, 1, 1, wm)
    # Sampling positions in the padded frame: (B, K, hm, wm) each.
    py = rows + (a - 1) + off[:, :K]
    px = cols + (b - 1) + off[:, K:]
    y0 = py.detach().floor()
    x0 = px.detach().floor()
    y1, x1 = y0 + 1, x0 + 1
    y0c, y1c = y0.clamp(0, Hp - 1), y1.clamp(0, Hp - 1)
    x0c, x1c = x0.clamp(0, Wp - 1), x1.clamp(0, Wp - 1)
    pyc, pxc = py.clamp(0, Hp - 1), px.clamp(0, Wp - 1)
    w_tl = (1 + (y0c - pyc)) * (1 + (x0c - pxc))
    w_br = (1 - (y1c - pyc)) * (1 - (x1c - pxc))
    w_tr = (1 + (y0c - pyc)) * (1 - (x1c - pxc))
    w_bl = (1 - (y1c - pyc)) * (1 + (x0c - pxc))
    flat = xp.reshape(B, c, Hp * Wp)

    def take(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        idx = (yy.long() * Wp + xx.long()).reshape(B, 1, K * hm * wm).expand(B, c, K * hm * wm)
        return flat.gather(2, idx).reshape(B, c, K, hm, wm)

    taps = (
        w_tl.unsqueeze(1) * take(y0c, x0c)
        + w_br.unsqueeze(1) * take(y1c, x1c)
        + w_tr.unsqueeze(1) * take(y0c, x1c)
        + w_bl.unsqueeze(1) * take(y1c, x0c)
    )
    taps = taps * gate.unsqueeze(1)  # gate channel k multiplies tap k
    # (B, c, 3a+b, i, j) -> big[:, :, 3i+a, 3j+b]
    big = taps.reshape(B, c, 3, 3, hm, wm).permute(0, 1, 4, 2, 5, 3)
    return big.reshape(B, c, 3 * hm, 3 * wm)
