"""A folder of PNG frames (one sequence, sorted by file name): sizes checked from the headers, then decoded."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gmg_deploy.errors import InputError
from gmg_deploy.frames.budget import over_budget

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(f: Path) -> tuple[int, int]:
    """``(width, height)`` from a PNG's IHDR header (the first 24 bytes; nothing is decoded)."""
    try:
        with open(f, "rb") as fh:
            head = fh.read(24)
    except OSError as e:
        raise InputError(f"{f} cannot be read ({e.strerror or e})") from None
    if len(head) < 24 or not head.startswith(_PNG_MAGIC) or head[12:16] != b"IHDR":
        raise InputError(f"{f} is not a readable PNG image")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def png_files(p: Path) -> list[Path]:
    """The ``*.png`` frames of folder ``p``, sorted by name; refuses a folder without any."""
    files = sorted(f for f in p.iterdir() if f.suffix.lower() == ".png")
    if not files:
        raise InputError(f"folder {p} holds no .png frames")
    return files


def check_png_sizes(files: list[Path], channels: int, hw: tuple[int, int] | None) -> None:
    """Every frame's header size: the model's ``(H, W)`` when known, one size, and within the memory budget."""
    first: tuple[int, int] | None = None
    for f in files:
        w, h = png_size(f)
        if hw is not None and (h, w) != tuple(hw):
            raise InputError(f"{f.name} is {w}x{h}; the model takes {hw[1]}x{hw[0]} frames - resize the PNGs")
        if first is not None and (w, h) != first:
            raise InputError(f"{f.name} is {w}x{h}, earlier frames are {first[0]}x{first[1]}; all frames must have "
                             "one size")
        first = (w, h)
    assert first is not None
    need = len(files) * first[0] * first[1] * channels * 4 * 2  # decoded frames + their float32 copy
    over = over_budget(need)
    if over is not None:
        raise InputError(f"{len(files)} PNG frames of {first[0]}x{first[1]} need {need / 2**20:.0f} MiB once "
                         f"decoded, over {over}; give fewer or smaller frames")


def _decode(f: Path, mode: str, channels: int) -> np.ndarray:
    """One PNG -> ``(C, h, w)`` uint8 (uint16 for a 16-bit grey PNG and a one-channel model)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # sizes are checked first: no DecompressionBombWarning on stderr
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(f)
        with im:
            if im.mode in ("I;16", "I;16B", "I") and channels == 1:
                a = np.asarray(im, dtype=np.uint16)
            else:
                a = np.asarray(im.convert(mode))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        raise InputError(f"{f} is not a readable PNG image") from None
    except Image.DecompressionBombError:
        raise InputError(f"{f} is too large to decode safely; give frames of the model's size") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def read_png_folder(p: Path, channels: int, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Folder ``p`` -> ``(1, T, C, H, W)`` uint8/uint16 pixels: grey (``L``) for one channel, RGB for three."""
    files = png_files(p)
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise InputError(f"PNG input needs a 1- or 3-channel model, this one has C={channels}; use a .npy file")
    check_png_sizes(files, channels, hw)  # from the headers, before anything is decoded
    frames: list[np.ndarray] = []
    for f in files:
        a = _decode(f, mode, channels)
        if frames and a.shape != frames[0].shape:
            raise InputError(f"{f.name} is {a.shape[2]}x{a.shape[1]}, earlier frames are "
                             f"{frames[0].shape[2]}x{frames[0].shape[1]}; all frames must have one size")
        frames.append(a)
    return np.stack(frames)[None]
