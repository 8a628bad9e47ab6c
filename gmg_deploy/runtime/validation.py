"""Checks on the runtime's slot arguments (frames: :func:`gmg_deploy.checks.check_frames`): one :class:`InputError`."""
from __future__ import annotations

from typing import Any

import numpy as np

from gmg_deploy.errors import InputError


def check_slots(slots: Any, batch_size: int) -> list[int]:
    """``None`` -> every slot; else a list of distinct slot indices in ``[0, batch_size)``."""
    if slots is None:
        return list(range(batch_size))
    if isinstance(slots, (int, np.integer)):
        slots = [slots]
    try:
        out = [int(s) for s in slots]
    except (TypeError, ValueError):
        raise InputError(f"slots={slots!r} must be a slot index or a list of them") from None
    bad = [s for s in out if not 0 <= s < batch_size]
    if bad:
        raise InputError(f"slot(s) {bad} out of range; this runtime has slots 0..{batch_size - 1}")
    return sorted(set(out))
