"""Atomic file writing: write to a temporary file beside the target, then rename over it."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from gmg_deploy.errors import GMGError, OutputError


def check_output_path(path: str | Path, *, force: bool = False) -> Path:
    """Validate an output path before long work starts: folder exists and is writable, no clobbering."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.exists() and p.is_dir():
        raise OutputError(f"output {p} is a directory; give a file name")
    if p.exists() and not force:
        raise OutputError(f"output {p} already exists; pass --force to overwrite it")
    if not parent.exists():
        raise OutputError(f"output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable")
    return p


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (links and ``..`` resolved; an absent path is only itself)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


def check_not_input(out: str | Path | None, inputs: Mapping[str, Any], flag: str = "output") -> None:
    """Refuse an output ``out`` that is one of the ``inputs`` (``{option: path}``, ``None`` paths skipped).

    Writing the result over a file the command reads would destroy it (``--force`` does not change that).
    A path inside an input folder (a folder of PNG frames) counts as the input too.
    """
    if out is None:
        return
    for what, inp in inputs.items():
        if inp is None or str(inp).startswith(("rtsp://", "rtsps://", "http://", "https://", "triton://")):
            continue
        if same_file(out, inp) or (os.path.isdir(inp) and same_file(os.path.dirname(os.path.abspath(out)), inp)):
            raise OutputError(f"{flag} {out} is the input {what} {inp}; write the output to another file")


def umask_mode(kind: str = "file") -> int:
    """The mode a plain ``open``/``mkdir`` would give: 0666 (file) or 0777 (dir) minus the process umask."""
    return (0o777 if kind == "dir" else 0o666) & ~_umask()


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``, else delete it.

    The file gets the mode a plain write would (0666 minus the umask), not ``mkstemp``'s 0600. An
    ``OSError`` while writing (disk full, file too large, I/O error) becomes one :class:`OutputError`.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OutputError(f"cannot write {p}: {e.strerror or e}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, umask_mode("file"))
        os.replace(tmp_path, p)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(e, OSError) and not isinstance(e, GMGError):
            full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, None)
            what = e.strerror or (f"only part of it was written ({e})" if e.errno is None else str(e))
            hint = "; free some space or write elsewhere" if full else ""
            raise OutputError(f"cannot write {p}: {what}{hint}") from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` only if it succeeds."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_save_npy(path: str | Path, array: Any) -> None:
    """``np.save`` to ``path`` atomically (a failure leaves no file and the previous one intact)."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def atomic_save_npz(path: str | Path, arrays: Mapping[str, Any]) -> None:
    """``np.savez`` of the named ``arrays`` to ``path`` atomically."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
