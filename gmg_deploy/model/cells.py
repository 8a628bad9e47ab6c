"""Recurrent cells: GMG's GSAM spatio-temporal LSTM cell and MotionRNN's motion-highway ST-LSTM cell.

Parameter names match OpenSTL's modules so checkpoints load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv_block(cin: int, cout: int, k: int, hw: tuple[int, int], layer_norm: bool) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, k, 1, k // 2, bias=False)
    if layer_norm:
        return nn.Sequential(conv, nn.LayerNorm([cout, hw[0], hw[1]]))
    return nn.Sequential(conv)


class MultiScaleConv(nn.Module):
    """Sum of 1x1, 3x3 and 5x5 convolutions of one input (``conv_g.0.convs.{0,1,2}``).

    ``fold()`` replaces the three by one exactly equivalent 5x5 kernel (summed in float64, then cast).
    """

    def __init__(self, cin: int, cout: int, kernel_sizes: tuple[int, ...] = (1, 3, 5)) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, k, padding=k // 2) for k in kernel_sizes)
        self.folded: tuple[torch.Tensor, torch.Tensor] | None = None

    def folded_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One ``(cout, cin, K, K)`` kernel and bias equal to the sum of the branches."""
        kmax = max(c.kernel_size[0] for c in self.convs)
        w0 = self.convs[0].weight
        weight = torch.zeros(w0.shape[0], w0.shape[1], kmax, kmax, dtype=torch.float64, device=w0.device)
        bias = torch.zeros(w0.shape[0], dtype=torch.float64, device=w0.device)
        for c in self.convs:
            k = c.kernel_size[0]
            o = (kmax - k) // 2
            weight[:, :, o : o + k, o : o + k] += c.weight.detach().double()
            bias += c.bias.detach().double()
        return weight.to(w0.dtype), bias.to(w0.dtype)

    def fold(self) -> None:
        """Use the single folded kernel in ``forward`` (the parameters and state dict stay as they are)."""
        self.folded = self.folded_kernel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.folded is not None:
            w, b = self.folded
            return F.conv2d(x, w, b, padding=w.shape[-1] // 2)
        return sum(conv(x) for conv in self.convs)  # type: ignore[return-value]


class SelfAttentionMemory(nn.Module):
    """SAM: attention of the hidden state over itself and over the memory (no 1/sqrt(A) scaling)."""

    def __init__(self, dim: int, att: int) -> None:
        super().__init__()
        self.layer_q = nn.Conv2d(dim, att, 1)
        self.layer_k = nn.Conv2d(dim, att, 1)
        self.layer_k2 = nn.Conv2d(dim, att, 1)
        self.layer_v = nn.Conv2d(dim, dim, 1)
        self.layer_v2 = nn.Conv2d(dim, dim, 1)
        self.layer_z = nn.Conv2d(dim * 2, dim * 2, 1)
        self.layer_m = nn.Conv2d(dim * 3, dim * 3, 1)
        self.dim, self.att = dim, att

    def forward(self, h: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, N, H, W = h.shape
        q = self.layer_q(h).reshape(B, self.att, H * W).transpose(1, 2)  # (B, hw, A)
        k_h = self.layer_k(h).reshape(B, self.att, H * W)
        v_h = self.layer_v(h).reshape(B, N, H * W)
        k_m = self.layer_k2(m).reshape(B, self.att, H * W)
        v_m = self.layer_v2(m).reshape(B, N, H * W)
        # softmax(QK) @ V^T, kept as (B, N, hw) = V @ softmax(QK)^T
        z_h = torch.matmul(v_h, torch.softmax(torch.matmul(q, k_h), dim=-1).transpose(1, 2))
        z_m = torch.matmul(v_m, torch.softmax(torch.matmul(q, k_m), dim=-1).transpose(1, 2))
        z = self.layer_z(torch.cat([z_h, z_m], dim=1).reshape(B, 2 * N, H, W))
        mo, mg, mi = torch.split(self.layer_m(torch.cat([z, h], dim=1)), N, dim=1)
        mi = torch.sigmoid(mi)
        m_new = (1 - mi) * m + mi * torch.tanh(mg)
        return torch.sigmoid(mo) * m_new, m_new


class GlobalFeatureExtractor(nn.Module):
    """``relu(fc(avgpool(relu(conv(x)))))`` -> ``(B, N)``."""

    def __init__(self, cin: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, dim, kernel_size=3, padding=1)
        self.fc = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.relu(self.conv(x)).mean(dim=(2, 3))
        return F.relu(self.fc(g))


class STLSTMCore(nn.Module):
    """The spatio-temporal LSTM part shared by both cells (``conv_x/h/m/o``, ``conv_last``)."""

    forget_bias = 1.0

    def __init__(self, cin: int, dim: int, hw: tuple[int, int], filter_size: int, layer_norm: bool) -> None:
        super().__init__()
        self.num_hidden = dim
        self.conv_x = _conv_block(cin, dim * 7, filter_size, hw, layer_norm)
        self.conv_h = _conv_block(dim, dim * 4, filter_size, hw, layer_norm)
        self.conv_m = _conv_block(dim, dim * 3, filter_size, hw, layer_norm)
        self.conv_o = _conv_block(dim * 2, dim, filter_size, hw, layer_norm)
        self.conv_last = nn.Conv2d(dim * 2, dim, kernel_size=1, bias=False)

    def lstm(self, x, h, c, m):
        """-> ``h_new, c_new, m_new, o`` (``h_new = o * tanh(conv_last([c_new, m_new]))``)."""
        N = self.num_hidden
        ix, fx, gx, ix2, fx2, gx2, ox = torch.split(self.conv_x(x), N, dim=1)
        ih, fh, gh, oh = torch.split(self.conv_h(h), N, dim=1)
        im, fm, gm = torch.split(self.conv_m(m), N, dim=1)
        c_new = torch.sigmoid(fx + fh + self.forget_bias) * c + torch.sigmoid(ix + ih) * torch.tanh(gx + gh)
        m_new = torch.sigmoid(fx2 + fm + self.forget_bias) * m + torch.sigmoid(ix2 + im) * torch.tanh(gx2 + gm)
        mem = torch.cat([c_new, m_new], dim=1)
        o = torch.sigmoid(ox + oh + self.conv_o(mem))
        return o * torch.tanh(self.conv_last(mem)), c_new, m_new, o


class MotionHighwayCell(STLSTMCore):
    """MotionRNN's cell: ST-LSTM plus the motion highway."""

    def forward(self, x, h, c, m, highway):
        h_new, c_new, m_new, o = self.lstm(x, h, c, m)
        h_new = h_new + (1 - o) * highway
        return h_new, c_new, m_new, h_new


class GSAMCell(STLSTMCore):
    """GMG's cell: ST-LSTM, Global Focus Module (global features, gate, multi-scale conv), SAM, highway."""

    def __init__(self, cin, dim, att, hw, filter_size, layer_norm):
        super().__init__(cin, dim, hw, filter_size, layer_norm)
        self.attention_layer = SelfAttentionMemory(dim, att)
        self.global_feature_extractor = GlobalFeatureExtractor(cin, dim)
        self.gate = nn.Sequential(nn.Conv2d(dim * 2, dim, kernel_size=3, padding=1), nn.Sigmoid())
        msc = MultiScaleConv(cin, dim)
        self.conv_g = nn.Sequential(msc, nn.LayerNorm([dim, hw[0], hw[1]])) if layer_norm else nn.Sequential(msc)

    def forward(self, x, h, c, m, highway):
        h_new, c_new, m_new, o = self.lstm(x, h, c, m)
        gf = self.global_feature_extractor(x)[:, :, None, None].expand_as(h_new)
        g = self.gate(torch.cat([h_new, gf], dim=1))
        h_new = (h_new * g + gf * (1 - g)) * self.conv_g(x)
        h_new, m_new = self.attention_layer(h_new, m_new)
        h_new = h_new + (1 - o) * highway
        return h_new, c_new, m_new, h_new
