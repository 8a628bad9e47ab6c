"""Stage: cli."""
from __future__ import annotations

import os
import sys


def _running_a_command() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return os.path.basename(sys.argv[0] if sys.argv else "").startswith("gmg-") or (
        spec is not None and str(spec.name).startswith("gmg_deploy.cli."))


def _interrupt_hook(kind, value, tb):  # type: ignore[no-untyped-def]
    """Ctrl-C while a gmg-* command still imports its modules (before its own handler): one line, exit 130."""
    if issubclass(kind, KeyboardInterrupt) and _running_a_command():
        sys.stderr.write("error: interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    _previous_hook(kind, value, tb)


_previous_hook = sys.excepthook
sys.excepthook = _interrupt_hook
