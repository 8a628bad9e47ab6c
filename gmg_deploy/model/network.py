"""The recurrent predictor (GMG or MotionRNN) with an explicit-state step API.

Recurrent state, in this order (the order of ONNX ``state_in.*``/``state_out.*``):
``h.0..h.{L-1}``, ``c.0..c.{L-1}`` ``(B,N,h,w)``; ``mem`` ``(B,N,h,w)``;
``offset.0..offset.{L-2}``, ``mean.0..mean.{L-2}`` ``(B,18,h/2,w/2)``. Zeros are the initial state.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from gmg_deploy.errors import InputError
from gmg_deploy.model.cells import GSAMCell, MotionHighwayCell, MultiScaleConv
from gmg_deploy.model.config import BATCH_MODES, MOTION_CHANNELS, ModelConfig
from gmg_deploy.model.motion import MotionGRU
from gmg_deploy.model.patching import patch, unpatch
from gmg_deploy.model.warp import check_warp_form

#: The recurrent state: an ordered mapping name -> tensor (see the module docstring for the order).
State = "OrderedDict[str, torch.Tensor]"


def state_names(config: ModelConfig) -> list[str]:
    """State tensor names in their fixed order."""
    L = config.num_layers
    return (
        [f"h.{i}" for i in range(L)]
        + [f"c.{i}" for i in range(L)]
        + ["mem"]
        + [f"offset.{i}" for i in range(L - 1)]
        + [f"mean.{i}" for i in range(L - 1)]
    )


def state_shapes(config: ModelConfig, batch_size: int = 1) -> "OrderedDict[str, tuple[int, ...]]":
    """Name -> shape of every state tensor for ``batch_size``."""
    h, w = config.grid
    hm, wm = config.motion_grid
    out: OrderedDict[str, tuple[int, ...]] = OrderedDict()
    for name in state_names(config):
        if name.startswith(("offset.", "mean.")):
            out[name] = (batch_size, MOTION_CHANNELS, hm, wm)
        else:
            out[name] = (batch_size, config.hidden, h, w)
    return out


class RecurrentPredictor(nn.Module):
    """GMG / MotionRNN with OpenSTL parameter names; build with :func:`build_model` or ``load_checkpoint``."""

    def __init__(self, config: ModelConfig, warp: str = "gridsample") -> None:
        super().__init__()
        self.config = config
        check_warp_form(warp)
        L, N = config.num_layers, config.hidden
        P, hw, F = config.patch_channels, config.grid, config.filter_size
        gmg = config.arch == "gmg"
        cells = []
        for i in range(L):
            cin = P if i == 0 else N
            if gmg:
                cells.append(GSAMCell(cin, N, config.att_hidden, hw, F, config.layer_norm))
            else:
                cells.append(MotionHighwayCell(cin, N, hw, F, config.layer_norm))
        self.cell_list = nn.ModuleList(cells)
        self.enc_list = nn.ModuleList(nn.Conv2d(N, N // 4, F, stride=2, padding=F // 2) for _ in range(L - 1))
        self.motion_list = nn.ModuleList(MotionGRU(N // 4, growth=gmg, warp=warp, gate=config.warp_gate) for _ in range(L - 1))
        self.dec_list = nn.ModuleList(nn.ConvTranspose2d(N // 4, N, 4, stride=2, padding=1) for _ in range(L - 1))
        self.gate_list = nn.ModuleList(nn.Conv2d(2 * N, N, F, padding=F // 2) for _ in range(L - 1))
        self.conv_last = nn.Conv2d(N, P, 1, bias=False)
        self.conv_first_v = nn.Conv2d(P, N, 1, bias=False)
        #: Data normalisation from the checkpoint (``test_mean``/``test_std``), or None.
        self.test_mean: np.ndarray | None = None
        self.test_std: np.ndarray | None = None
        self.eval()

    # ------------------------------------------------------------------ configuration
    @property
    def warp_form(self) -> str:
        return self.motion_list[0].warp.form

    @property
    def warp_gate(self) -> str:
        """The resolved warp-gate layout (``motionrnn`` or ``published``), as in ``config.warp_gate``."""
        return self.config.warp_gate

    def fold_multiscale(self) -> "RecurrentPredictor":
        """Fold each cell's 1x1+3x3+5x5 ``conv_g`` into one 5x5 kernel (exact; used for export and speed)."""
        for m in self.modules():
            if isinstance(m, MultiScaleConv):
                m.fold()
        return self

    def state_names(self) -> list[str]:
        return state_names(self.config)

    def state_shapes(self, batch_size: int = 1) -> "OrderedDict[str, tuple[int, ...]]":
        return state_shapes(self.config, batch_size)

    def init_state(self, batch_size: int = 1, *, device: Any = None, dtype: torch.dtype | None = None) -> State:
        """Zeros for every state tensor, on the model's device unless ``device`` is given."""
        p = next(self.parameters())
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
        return OrderedDict(
            (n, torch.zeros(s, device=device, dtype=dtype)) for n, s in self.state_shapes(batch_size).items()
        )

    # ------------------------------------------------------------------ compute
    def step_tensors(self, frame: torch.Tensor, states: list[torch.Tensor], batch_mode: str | bool = "invariant"):
        """One step on a flat state list (the export signature): -> ``(next_frame, new_states)``.

        ``batch_mode``: one of :data:`BATCH_MODES` (a bool is the old ``batch_invariant`` flag)."""
        batch_invariant = _is_invariant(batch_mode)
        cfg = self.config
        L = cfg.num_layers
        h = list(states[:L])
        c = list(states[L : 2 * L])
        mem = states[2 * L]
        off = list(states[2 * L + 1 : 3 * L])
        mean = list(states[3 * L : 4 * L - 1])
        x = patch(frame, cfg.patch_size)
        highway = self.conv_first_v(x)
        inp = x
        for i in range(L):
            h[i], c[i], mem, highway = self.cell_list[i](inp, h[i], c[i], mem, highway)
            if i < L - 1:
                f = self.enc_list[i](h[i])
                f, off[i], mean[i] = self.motion_list[i](f, off[i], mean[i], batch_invariant)
                up = self.dec_list[i](f)
                o = torch.sigmoid(self.gate_list[i](torch.cat([up, h[i]], dim=1)))
                h[i] = o * up + (1 - o) * h[i]
            inp = h[i]
        nxt = unpatch(self.conv_last(h[L - 1]), cfg.patch_size)
        return nxt, h + c + [mem] + off + mean

    def step(self, frame: torch.Tensor, state: State, *, batch_mode: str = "invariant",
             batch_invariant: bool | None = None) -> tuple[torch.Tensor, State]:
        """One recurrent step: raw ``frame`` ``(B,C,H,W)`` -> ``(next_frame (B,C,H,W), new_state)``.

        ``batch_mode`` is one of :data:`BATCH_MODES`; ``batch_invariant`` is its old spelling (True/False)."""
        batch_mode = _batch_mode(batch_mode, batch_invariant)
        names = self.state_names()
        self._check_frame(frame, "frame", 4)
        missing = [n for n in names if n not in state]
        if missing:
            raise InputError(f"state lacks {missing[:4]}; build it with model.init_state(batch_size)")
        nxt, new = self.step_tensors(frame, [state[n] for n in names], batch_mode)
        return nxt, OrderedDict(zip(names, new))

    def forward(self, frame: torch.Tensor, *states: torch.Tensor):  # pragma: no cover - thin alias
        return self.step_tensors(frame, list(states))

    def predict(
        self,
        frames: torch.Tensor,
        aft_seq_length: int | None = None,
        *,
        batch_mode: str = "invariant",
        all_steps: bool = False,
        batch_invariant: bool | None = None,
    ) -> torch.Tensor:
        """OpenSTL test-time inference from zero state (``batch_mode``: one of :data:`BATCH_MODES`;
        ``batch_invariant`` is its old spelling).

        ``frames`` ``(B, T>=pre, C, H, W)``; the first ``pre`` are observed. Returns the ``aft`` forecast
        ``(B, aft, C, H, W)``, or with ``all_steps=True`` every step's output ``(B, pre+aft-1, C, H, W)``.
        """
        batch_mode = _batch_mode(batch_mode, batch_invariant)
        cfg = self.config
        pre = cfg.pre_seq_length
        aft = cfg.aft_seq_length if aft_seq_length is None else int(aft_seq_length)
        if aft < 1:
            raise InputError(f"aft_seq_length={aft} must be >= 1")
        self._check_frame(frames, "frames", 5)
        if frames.shape[1] < pre:
            raise InputError(f"frames has {frames.shape[1]} time steps; the model observes pre_seq_length={pre}")
        state = self.init_state(frames.shape[0], device=frames.device, dtype=frames.dtype)
        outs = []
        x_gen = None
        with torch.no_grad():
            for t in range(pre + aft - 1):
                inp = frames[:, t] if t < pre else x_gen
                x_gen, state = self.step(inp, state, batch_mode=batch_mode)
                outs.append(x_gen)
        seq = torch.stack(outs, dim=1)
        return seq if all_steps else seq[:, -aft:]

    def _check_frame(self, x: torch.Tensor, what: str, ndim: int) -> None:
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
        C, H, W = self.config.frame_shape
        if x.dim() != ndim or tuple(x.shape[-3:]) != (C, H, W):
            want = "(B, C, H, W)" if ndim == 4 else "(B, T, C, H, W)"
            raise InputError(
                f"{what} has shape {tuple(x.shape)}; expected {want} with (C,H,W)=({C},{H},{W}) for this model"
            )


def _batch_mode(batch_mode: str, batch_invariant: bool | None) -> str:
    """The batch mode asked for: ``batch_invariant`` (the old bool keyword) wins when given."""
    if batch_invariant is not None:
        return "invariant" if batch_invariant else "reference"
    _is_invariant(batch_mode)
    return batch_mode


def _is_invariant(batch_mode: str | bool) -> bool:
    if isinstance(batch_mode, bool):
        return batch_mode
    if batch_mode not in BATCH_MODES:
        raise InputError(f"batch_mode={batch_mode!r}; use one of {', '.join(BATCH_MODES)}")
    return batch_mode == "invariant"


def build_model(config: ModelConfig, warp: str = "gridsample") -> RecurrentPredictor:
    """A randomly initialised model for ``config`` (eval mode)."""
    return RecurrentPredictor(config, warp=warp)
