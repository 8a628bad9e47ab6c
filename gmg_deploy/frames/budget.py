"""The memory budget for frames and buffers: ``$GMG_MEMORY_BUDGET_MB``, else a quarter of the available memory.

One definition for every stage (the runtime's stream buffers re-export it from here); torch is imported only
to ask a CUDA device how much memory it has free.
"""
from __future__ import annotations

import os
from typing import Any

from gmg_deploy.errors import InputError

#: Environment variable overriding the memory budget (MiB).
BUDGET_ENV = "GMG_MEMORY_BUDGET_MB"


def memory_budget(device: Any = None) -> int:
    """Bytes the streaming buffers (or the frames read) may take: ``$GMG_MEMORY_BUDGET_MB``, else a quarter of
    the memory now available on ``device`` (``None``/CPU: the host's; the engine's own working memory grows
    with the batch as well)."""
    env = os.environ.get(BUDGET_ENV)
    if env:
        try:
            return int(float(env) * 2**20)
        except ValueError:
            raise InputError(f"{BUDGET_ENV}={env!r} is not a number of MiB") from None
    if getattr(device, "type", device) == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return free // 4
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 4
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def over_budget(nbytes: int) -> str | None:
    """``None`` when ``nbytes`` fit the host memory budget, else the budget's description for an error line."""
    budget = memory_budget()
    if nbytes <= budget:
        return None
    return f"the memory budget of {budget / 2**20:.0f} MiB (${BUDGET_ENV} or a quarter of the available memory)"


def check_fits(nbytes: int, where: str, what: str,
               fix: str = "give fewer sequences, or float32 frames (read from the file without a copy)") -> None:
    """Refuse to allocate ``nbytes`` of ``what`` for ``where`` over the host memory budget (one line)."""
    over = over_budget(nbytes)
    if over is not None:
        raise InputError(f"{where} needs {nbytes / 2**20:.0f} MiB {what}, over {over}; {fix}")
