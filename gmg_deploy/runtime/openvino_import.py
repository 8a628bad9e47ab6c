"""The only module that imports ``openvino``: one import with one clear error, its version and its devices."""
from __future__ import annotations

from typing import Any

from gmg_deploy.errors import InputError

INSTALL_HINT = 'pip install "gmg-deploy[openvino]"'


def import_openvino(purpose: str = "the OpenVINO backend") -> Any:
    """``import openvino``, else one :class:`InputError` naming what needs it and the extra that installs it."""
    try:
        import openvino as ov
    except ImportError:
        raise InputError(f"{purpose} needs the 'openvino' Python package, which is not installed: "
                         f"{INSTALL_HINT}") from None
    return ov


def openvino_version() -> str | None:
    """The installed OpenVINO version (``"2026.4.1"``), or None when it cannot be imported."""
    try:
        import openvino as ov
    except Exception:
        return None
    return str(getattr(ov, "__version__", "unknown")).split("-")[0]


def openvino_devices() -> list[dict[str, Any]]:
    """Each device OpenVINO sees: name, full name and OPTIMIZATION_CAPABILITIES (empty when not installed)."""
    try:
        import openvino as ov
    except Exception:
        return []
    core = ov.Core()
    out = []
    for dev in core.available_devices:
        info: dict[str, Any] = {"name": dev}
        for key, prop in (("full_name", "FULL_DEVICE_NAME"), ("capabilities", "OPTIMIZATION_CAPABILITIES")):
            try:
                val = core.get_property(dev, prop)
            except Exception:  # a plugin that cannot answer: report what it did answer
                val = None
            info[key] = list(val) if isinstance(val, (list, tuple)) else val
        out.append(info)
    return out
