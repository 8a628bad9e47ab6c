"""OpenSTL patching: a frame ``(B, C, H, W)`` <-> patch channels ``(B, p*p*C, H/p, W/p)``.

Channel ``(pr*p + pc)*C + c`` holds pixel ``(hi*p + pr, wj*p + pc)`` of channel ``c``: ONNX
``SpaceToDepth(p)`` / ``DepthToSpace(p, DCR)`` (not torch's ``pixel_unshuffle``, which orders channels CRD).
"""
from __future__ import annotations

import torch


def patch(frame: torch.Tensor, p: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, p*p*C, H/p, W/p)``."""
    if p == 1:
        return frame
    b, c, H, W = frame.shape
    x = frame.reshape(b, c, H // p, p, W // p, p)
    x = x.permute(0, 3, 5, 1, 2, 4)  # b, pr, pc, c, h, w
    return x.reshape(b, p * p * c, H // p, W // p)


def unpatch(x: torch.Tensor, p: int) -> torch.Tensor:
    """``(B, p*p*C, h, w)`` -> ``(B, C, h*p, w*p)``; inverse of :func:`patch`."""
    if p == 1:
        return x
    b, pc_, h, w = x.shape
    c = pc_ // (p * p)
    y = x.reshape(b, p, p, c, h, w)
    y = y.permute(0, 3, 4, 1, 5, 2)  # b, c, h, pr, w, pc
    return y.reshape(b, c, h * p, w * p)
