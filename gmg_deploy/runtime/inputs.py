"""Reading frame sequences for inference: ``.npy``/``.npz`` arrays or a folder of PNG frames.

Arrays are ``(N, T, C, H, W)``, or ``(N, T, H, W)`` for one channel. Float arrays are used as they are;
``uint8`` arrays (and 8-bit PNGs) are scaled by 1/255, 16-bit PNGs by 1/65535. A ``.npz`` must hold one
array or one named ``frames``. A folder holds one sequence of ``*.png`` frames, sorted by file name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gmg_deploy.checks import check_finite_frames, check_not_8bit_floats, check_numpy_file
from gmg_deploy.errors import InputError


def _as_float(a: np.ndarray, where: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{where} has dtype {a.dtype}; give float frames (or uint8 scaled to [0,255])")
    return a.astype(np.float32, copy=False)


def _read_array(p: Path) -> np.ndarray:
    check_numpy_file(p, "input")
    try:
        if p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if "frames" in z.files:
                    return z["frames"]
                if len(z.files) == 1:
                    return z[z.files[0]]
                raise InputError(f"{p} holds arrays {z.files[:5]}; keep one, or name the frames 'frames'")
        return np.load(p, allow_pickle=False)
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{p} cannot be read as a NumPy array ({str(e).splitlines()[0][:80]})") from None


def _read_png_folder(p: Path, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted(f for f in p.iterdir() if f.suffix.lower() == ".png")
    if not files:
        raise InputError(f"folder {p} holds no .png frames")
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise InputError(f"PNG input needs a 1- or 3-channel model, this one has C={channels}; use a .npy file")
    frames = []
    for f in files:
        try:
            with Image.open(f) as im:
                if im.mode in ("I;16", "I;16B", "I") and channels == 1:
                    a = np.asarray(im, dtype=np.uint16)
                else:
                    a = np.asarray(im.convert(mode))
        except (OSError, UnidentifiedImageError):
            raise InputError(f"{f} is not a readable PNG image") from None
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        if frames and a.shape != frames[0].shape:
            raise InputError(f"{f.name} is {a.shape[2]}x{a.shape[1]}, earlier frames are "
                             f"{frames[0].shape[2]}x{frames[0].shape[1]}; all frames must have one size")
        frames.append(a)
    return np.stack(frames)[None]  # (1, T, C, H, W)


def count_sequences(path: str | Path) -> int | None:
    """How many sequences ``path`` holds, read from the array header only; None when unknown."""
    p = Path(path)
    try:
        if p.is_dir():
            return 1
        if p.suffix.lower() == ".npy":
            a = np.load(p, mmap_mode="r", allow_pickle=False)
            return int(a.shape[0]) if a.ndim in (4, 5) else None
        if p.suffix.lower() == ".npz":
            import zipfile

            with zipfile.ZipFile(p) as z:
                names = [n for n in z.namelist() if n.endswith(".npy")]
                name = "frames.npy" if "frames.npy" in names else (names[0] if len(names) == 1 else None)
                if name is None:
                    return None
                with z.open(name) as fh:
                    fmt = np.lib.format
                    version = fmt.read_magic(fh)
                    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                    shape = read(fh)[0]
            return int(shape[0]) if len(shape) in (4, 5) else None
    except Exception:  # any unreadable file: load_frames reports it properly later
        return None
    return None


def load_frames(path: str | Path, frame_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """-> float32 ``(N, T, C, H, W)``; checks ``(C,H,W)`` against ``frame_shape`` and that values are finite."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"input {p} does not exist")
    if p.is_dir():
        arr = _read_png_folder(p, frame_shape[0] if frame_shape else 1)
    elif p.suffix.lower() in (".npy", ".npz"):
        arr = _read_array(p)
    else:
        raise InputError(f"input {p.name}: give a .npy/.npz array (N,T,C,H,W) or a folder of PNG frames")
    if arr.ndim == 4 and (frame_shape is None or frame_shape[0] == 1):
        arr = arr[:, :, None]
    if arr.ndim == 4 and frame_shape is not None:
        raise InputError(f"input {p.name} has shape {tuple(arr.shape)}, one channel per frame (N,T,H,W), but the "
                         f"model takes C={frame_shape[0]} channels; give (N,T,{frame_shape[0]},H,W) frames")
    if arr.ndim != 5:
        raise InputError(f"input {p.name} has shape {tuple(arr.shape)}; expected (N,T,C,H,W) or (N,T,H,W)")
    check_not_8bit_floats(arr, f"input {p.name}")
    arr = _as_float(arr, f"input {p.name}")
    if frame_shape is not None and tuple(arr.shape[2:]) != tuple(frame_shape):
        raise InputError(
            f"input {p.name} has frames (C,H,W)={tuple(arr.shape[2:])}; the model takes {tuple(frame_shape)}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"input {p.name} holds no frames (shape {tuple(arr.shape)})")
    check_finite_frames(arr, f"input {p.name}")
    return arr
