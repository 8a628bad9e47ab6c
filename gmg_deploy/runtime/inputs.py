"""Reading frame sequences for inference: ``.npy``/``.npz`` arrays or a folder of PNG frames.

Arrays are ``(N, T, C, H, W)``, or ``(N, T, H, W)`` for one channel. Float arrays are used as they are;
``uint8`` arrays (and 8-bit PNGs) are scaled by 1/255, 16-bit PNGs by 1/65535. A ``.npz`` must hold one
array or one named ``frames``. A folder holds one sequence of ``*.png`` frames, sorted by file name.
"""
from __future__ import annotations

import errno
from pathlib import Path

import numpy as np

from gmg_deploy.checks import check_finite_frames, check_not_8bit_floats, check_numpy_file, row_chunks
from gmg_deploy.errors import InputError


def _as_float(a: np.ndarray, where: str) -> np.ndarray:
    """float32 frames; a float32 array (memory-mapped or not) is returned as it is, others are converted
    in place of a second temporary (within the memory budget)."""
    if a.dtype == np.float32:
        return a
    if a.dtype not in (np.uint8, np.uint16) and not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{where} has dtype {a.dtype}; give float frames (or uint8 scaled to [0,255])")
    _check_fits(a.size * 4, where, "as float32 frames")
    out = np.empty(a.shape, np.float32)
    scale = {np.dtype(np.uint8): 1 / 255.0, np.dtype(np.uint16): 1 / 65535.0}.get(a.dtype)
    for s, part in row_chunks(a):
        out[s : s + part.shape[0]] = part
        if scale is not None:
            out[s : s + part.shape[0]] *= np.float32(scale)
    return out


def _check_fits(nbytes: int, where: str, what: str) -> None:
    """Refuse to allocate ``nbytes`` over the memory budget (``$GMG_MEMORY_BUDGET_MB``, else a quarter of
    the available memory)."""
    import torch

    from gmg_deploy.runtime.buffers import BUDGET_ENV, memory_budget

    budget = memory_budget(torch.device("cpu"))
    if nbytes > budget:
        raise InputError(f"{where} needs {nbytes / 2**20:.0f} MiB {what}, over the memory budget of "
                         f"{budget / 2**20:.0f} MiB (${BUDGET_ENV} or a quarter of the available memory); give "
                         "fewer sequences, or float32 frames (read from the file without a copy)")


def _no_memory(p: Path) -> InputError:
    size = p.stat().st_size if p.exists() else 0
    return InputError(f"{p} ({size / 2**20:.0f} MiB) does not fit in this process's memory; give fewer sequences "
                      "or raise the memory limit (ulimit -v)")


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
        # memory-mapped: the command streams the sequences, pages are read as they are used
        return np.load(p, allow_pickle=False, mmap_mode="r")
    except InputError:
        raise
    except MemoryError:
        raise _no_memory(p) from None
    except OSError as e:
        if e.errno == errno.ENOMEM:
            raise _no_memory(p) from None
        raise InputError(f"{p} cannot be read as a NumPy array ({str(e).splitlines()[0][:80]})") from None
    except (ValueError, EOFError) as e:
        raise InputError(f"{p} cannot be read as a NumPy array ({str(e).splitlines()[0][:80]})") from None


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


def _check_png_sizes(files: list[Path], channels: int, hw: tuple[int, int] | None) -> None:
    """Every frame's header size: the model's ``(H, W)`` when known, one size, and within the memory budget."""
    import torch

    from gmg_deploy.runtime.buffers import BUDGET_ENV, memory_budget

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
    budget = memory_budget(torch.device("cpu"))
    if need > budget:
        raise InputError(f"{len(files)} PNG frames of {first[0]}x{first[1]} need {need / 2**20:.0f} MiB once "
                         f"decoded, over the memory budget of {budget / 2**20:.0f} MiB (${BUDGET_ENV} or a quarter "
                         "of the available memory); give fewer or smaller frames")


def _read_png_folder(p: Path, channels: int, hw: tuple[int, int] | None = None) -> np.ndarray:
    import warnings

    from PIL import Image, UnidentifiedImageError

    files = sorted(f for f in p.iterdir() if f.suffix.lower() == ".png")
    if not files:
        raise InputError(f"folder {p} holds no .png frames")
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise InputError(f"PNG input needs a 1- or 3-channel model, this one has C={channels}; use a .npy file")
    _check_png_sizes(files, channels, hw)  # from the headers, before anything is decoded
    frames = []
    for f in files:
        try:
            with warnings.catch_warnings():  # sizes are checked above: no DecompressionBombWarning on stderr
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
    """-> float32 ``(N, T, C, H, W)``; checks ``(C,H,W)`` against ``frame_shape`` and that values are finite.

    A float32 ``.npy`` comes back memory-mapped read-only (nothing is copied); take copies of the slices used.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input {p} does not exist")
    if p.is_dir():
        arr = _read_png_folder(p, frame_shape[0] if frame_shape else 1,
                               tuple(frame_shape[1:]) if frame_shape else None)
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
    if frame_shape is not None and tuple(arr.shape[2:]) != tuple(frame_shape):
        raise InputError(
            f"input {p.name} has frames (C,H,W)={tuple(arr.shape[2:])}; the model takes {tuple(frame_shape)}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"input {p.name} holds no frames (shape {tuple(arr.shape)})")
    try:  # every check reads the (memory-mapped) array in bounded chunks
        check_not_8bit_floats(arr, f"input {p.name}")
        arr = _as_float(arr, f"input {p.name}")
        check_finite_frames(arr, f"input {p.name}")
    except MemoryError:
        raise _no_memory(p) from None
    return arr
