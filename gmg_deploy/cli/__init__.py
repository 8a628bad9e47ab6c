"""Top floor: the gmg-* commands, on top of every floor (importing this installs the signal contract)."""
from __future__ import annotations

import os
import sys

from gmg_deploy.cli.signals import defer_at_import, running_a_command


def _interrupt_hook(kind, value, tb):  # type: ignore[no-untyped-def]
    """Ctrl-C/SIGTERM before a gmg-* command's own handler: one line, exit 130/143, no traceback."""
    if issubclass(kind, KeyboardInterrupt) and running_a_command():
        from gmg_deploy.cli.signals import message_of, status_of

        sys.stderr.write(f"error: {message_of(value)}\n")
        sys.stderr.flush()
        os._exit(status_of(value))
    _previous_hook(kind, value, tb)


_previous_hook = sys.excepthook
sys.excepthook = _interrupt_hook
defer_at_import()
