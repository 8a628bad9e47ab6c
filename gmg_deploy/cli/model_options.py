"""The ``--warp-gate`` option shared by every command that loads a checkpoint, and its summary line."""
from __future__ import annotations

from typing import Any, Callable

import click

from gmg_deploy.model.config import WARP_GATES

WARP_GATE_HELP = ("Warp-gate layout: motionrnn (gate channel k gates tap k), published (the published GMG code's "
                  "transposed gate; 9x9 motion grid only) or auto (published exactly at a 9x9 motion grid).")


def warp_gate_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--warp-gate motionrnn|published|auto`` (default auto) as the ``warp_gate`` parameter."""
    return click.option("--warp-gate", "warp_gate", type=click.Choice(list(WARP_GATES)), default="auto",
                        show_default=True, help=WARP_GATE_HELP)(fn)


def auto_gate_note(requested: str, resolved: str) -> str | None:
    """One line saying that ``auto`` chose ``published`` and how to override it, else None."""
    if requested != "auto" or resolved != "published":
        return None
    return ("warp gate: auto chose 'published' (9x9 motion grid: the published GMG code's transposed gate); "
            "if the checkpoint was trained by code that permutes the gate (upstream MotionRNN), "
            "pass --warp-gate motionrnn")
