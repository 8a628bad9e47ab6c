"""``.npy``/``.npz`` frame arrays: read (a ``.npy`` memory-mapped), dtype rules, float32 within the memory budget."""
from __future__ import annotations

import errno
from pathlib import Path

import numpy as np

from gmg_deploy.checks import check_numpy_file, row_chunks
from gmg_deploy.errors import InputError
from gmg_deploy.frames.budget import check_fits

#: Integer dtypes read as pixels, and the scale that brings them to [0, 1].
PIXEL_SCALES = {np.dtype(np.uint8): 1 / 255.0, np.dtype(np.uint16): 1 / 65535.0}


def no_memory(p: Path) -> InputError:
    size = p.stat().st_size if p.exists() else 0
    return InputError(f"{p} ({size / 2**20:.0f} MiB) does not fit in this process's memory; give fewer sequences "
                      "or raise the memory limit (ulimit -v)")


def read_array(p: Path, what: str) -> np.ndarray:
    """The array of a ``.npy`` (memory-mapped read-only: pages are read as they are used) or of a ``.npz``
    (its one array, or the one named ``frames``)."""
    check_numpy_file(p, what)
    try:
        if p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if "frames" in z.files:
                    return z["frames"]
                if len(z.files) == 1:
                    return z[z.files[0]]
                raise InputError(f"{p} holds arrays {z.files[:5]}; keep one, or name the frames 'frames'")
        return np.load(p, allow_pickle=False, mmap_mode="r")
    except InputError:
        raise
    except MemoryError:
        raise no_memory(p) from None
    except OSError as e:
        if e.errno == errno.ENOMEM:
            raise no_memory(p) from None
        raise InputError(f"{p} cannot be read as a NumPy array ({str(e).splitlines()[0][:80]})") from None
    except (ValueError, EOFError) as e:
        raise InputError(f"{p} cannot be read as a NumPy array ({str(e).splitlines()[0][:80]})") from None


def check_dtype(a: np.ndarray, where: str) -> None:
    """Float frames, or uint8/uint16 pixels; any other dtype (int32, bool, ...) is refused."""
    if a.dtype not in PIXEL_SCALES and not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{where} has dtype {a.dtype}; give float frames (or uint8 scaled to [0,255], "
                         "uint16 to [0,65535])")


def as_float32(a: np.ndarray, where: str) -> np.ndarray:
    """float32 frames: a float32 array (memory-mapped or not) is returned as it is; other floats are converted,
    uint8 scaled by 1/255 and uint16 by 1/65535, chunk by chunk into one new array (within the memory budget)."""
    if a.dtype == np.float32:
        return a
    check_dtype(a, where)
    check_fits(a.size * 4, where, "as float32 frames")
    out = np.empty(a.shape, np.float32)
    scale = PIXEL_SCALES.get(a.dtype)
    for s, part in row_chunks(a):
        out[s : s + part.shape[0]] = part
        if scale is not None:
            out[s : s + part.shape[0]] *= np.float32(scale)
    return out


def header_shape(p: Path) -> tuple[int, ...] | None:
    """The shape of a ``.npy``/``.npz`` frame array, read from its header only; ``None`` when unreadable."""
    try:
        if p.suffix.lower() == ".npy":
            return tuple(np.load(p, mmap_mode="r", allow_pickle=False).shape)
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
                return tuple(read(fh)[0])
    except Exception:  # any unreadable file: the reader reports it properly later
        return None
