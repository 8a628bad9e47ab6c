"""Motion branch: MotionGRU (MotionRNN's offset GRU + warp; ``growth=True`` adds GMG's GlobalGrowthModule)."""
from __future__ import annotations

import torch
import torch.nn as nn

from gmg_deploy.model.config import MOTION_CHANNELS
from gmg_deploy.model.warp import Warp


class GlobalGrowthModule(nn.Module):
    """``mean*exp(-beta*t) + alpha*rate*mean`` with alpha, beta, rate from the pooled motion features.

    ``t`` is 0 for every sample (batch-invariant) or, as in the reference, the sample's batch index.
    """

    def __init__(self, features: int = 32) -> None:
        super().__init__()
        self.fc_global = nn.Linear(features, 1, bias=False)
        self.alpha_fc = nn.Linear(features, 1)
        self.beta_fc = nn.Linear(features, 1)
        self.alpha_default = nn.Parameter(torch.tensor(0.5))
        self.beta_default = nn.Parameter(torch.tensor(0.9))

    def forward(self, mean: torch.Tensor, f: torch.Tensor, batch_invariant: bool = True) -> torch.Tensor:
        g = f.mean(dim=(2, 3))
        alpha = (0.5 * self.alpha_default + 0.5 * torch.sigmoid(self.alpha_fc(g)))[:, :, None, None]
        beta = (0.5 * self.beta_default + 0.5 * torch.sigmoid(self.beta_fc(g)))[:, :, None, None]
        rate = torch.sigmoid(self.fc_global(g))[:, :, None, None]
        if batch_invariant:
            decayed = mean  # exp(-beta * 0)
        else:
            # batch index as float without integer arithmetic: cumsum of ones - 1 = 0, 1, ..., B-1
            t = torch.cumsum(torch.ones_like(beta), dim=0) - 1
            decayed = mean * torch.exp(-beta * t)
        return decayed + alpha * rate * mean


class MotionGRU(nn.Module):
    """Offset GRU + neighbourhood warp; ``growth=True`` adds GMG's Global Growth Module."""

    def __init__(self, features: int, growth: bool, warp: str = "gridsample", gate: str = "motionrnn") -> None:
        super().__init__()
        cin = features + MOTION_CHANNELS
        self.update = nn.Conv2d(cin, MOTION_CHANNELS, 3, padding=1)
        self.reset = nn.Conv2d(cin, MOTION_CHANNELS, 3, padding=1)
        self.output = nn.Conv2d(cin, MOTION_CHANNELS, 3, padding=1)
        self.warp = Warp(features, warp, gate)
        if growth:
            self.global_growth_module = GlobalGrowthModule(features)
        self.growth = growth

    def forward(self, f, off_prev, mean_prev, batch_invariant: bool = True):
        s = torch.cat([f, off_prev], dim=1)
        u = torch.sigmoid(self.update(s))
        r = torch.sigmoid(self.reset(s))
        off = off_prev * (1 - u) + torch.tanh(self.output(torch.cat([f, off_prev * r], dim=1))) * u
        mean = self.global_growth_module(mean_prev, f, batch_invariant) if self.growth else mean_prev
        mean = mean + 0.5 * (off_prev - mean)
        off = off + mean
        return self.warp(f, off), off, mean
