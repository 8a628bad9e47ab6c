"""How a gmg-* command reacts to SIGINT (Ctrl-C) and SIGTERM: the one signal contract of every command.

The contract:

* **Before the command's own code runs** (Python is still importing torch, ONNX Runtime, ...), a signal is
  *deferred*: it is recorded, never raised inside a native extension (a ``KeyboardInterrupt`` raised while a
  pybind11 extension runs Python code aborts the process with SIGABRT), and the command stops as soon as it
  starts: ``error: interrupted`` exit 130, or ``error: terminated`` exit 143.
* **While the command works**, SIGINT raises ``KeyboardInterrupt`` and SIGTERM raises
  :class:`gmg_deploy.errors.Terminated` (a ``KeyboardInterrupt``) in the main thread, so every ``finally``
  and every "keep what was processed" path runs for both. :func:`deferred` protects a native call the same
  way the start-up is protected.
* **Once the command's work is done** (its outputs are complete), both signals are ignored: the process
  exits 0 with complete outputs. A signal that lands between publishing an output and the command's return
  still finds a complete file and ends with 130/143; a process is never killed by the signal itself (-2/-15).

These handlers are installed only in a process that *is* a gmg-* command (console script or
``python -m gmg_deploy.cli.X``), never when the CLI functions run inside another program (tests, notebooks).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType
from typing import Iterator

from gmg_deploy.errors import Terminated

#: Exit status per signal: 128 + the signal number, as shells report it.
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: The one line printed per signal.
MESSAGE = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}

_state = {"mode": "off", "depth": 0, "pending": None}


def running_a_command() -> bool:
    """True in a process started as a gmg-* command (not in a test runner or a user's program)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and str(spec.name).startswith("gmg_deploy.cli."):
        return True
    argv = list(getattr(sys, "orig_argv", []))  # `python -m gmg_deploy.cli.X` before runpy sets __main__
    if "-m" in argv[:-1] and argv[argv.index("-m") + 1].startswith("gmg_deploy.cli."):
        return True
    return os.path.basename(sys.argv[0] if sys.argv else "").startswith("gmg-")


def exception_for(signum: int) -> KeyboardInterrupt:
    """The exception a signal raises in the main thread: ``KeyboardInterrupt`` or :class:`Terminated`."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def status_of(exc: BaseException) -> int:
    """Exit status for an interrupt exception: 143 for :class:`Terminated`, else 130."""
    return EXIT_STATUS[signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT]


def message_of(exc: BaseException) -> str:
    """The one-line message (after ``error:``) for an interrupt exception."""
    return MESSAGE[signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT]


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state["mode"] == "done":
        return
    if _state["mode"] == "deferred" or _state["depth"] > 0:
        if _state["pending"] is None:
            _state["pending"] = signum
        return
    raise exception_for(signum)


def _install(mode: str) -> None:
    _state["mode"] = mode
    for sig in EXIT_STATUS:
        signal.signal(sig, _handler)


def defer_at_import() -> None:
    """Called when ``gmg_deploy.cli`` is imported: defer signals while a command's modules load."""
    if running_a_command():
        _install("deferred")


def start_command() -> None:
    """The command's own code starts: signals raise from now on; one that came during start-up raises now."""
    if not running_a_command():
        return
    _install("raising")
    _raise_pending()


def finish_command() -> None:
    """The command's work is done (outputs complete): ignore SIGINT/SIGTERM until the process exits."""
    if not running_a_command():
        return
    _state["mode"] = "done"
    for sig in EXIT_STATUS:
        signal.signal(sig, signal.SIG_IGN)


def _raise_pending() -> None:
    signum, _state["pending"] = _state["pending"], None
    if signum is not None:
        raise exception_for(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the block runs (a native call that must not see an exception); raise after."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
    if _state["depth"] == 0 and _state["mode"] == "raising":
        _raise_pending()
