"""The one place PyAV is imported: a clear one-line error naming the ``[video]`` extra when it is missing."""
from __future__ import annotations

from types import ModuleType

from gmg_deploy.errors import InputError

EXTRA_HINT = "pip install gmg-deploy[video]"


def require_av() -> ModuleType:
    """``import av`` or raise :class:`InputError` saying how to install it."""
    try:
        import av
    except ImportError:
        raise InputError(f"video input/output needs PyAV, which is not installed; run: {EXTRA_HINT}") from None
    return av
