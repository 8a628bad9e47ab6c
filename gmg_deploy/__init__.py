"""gmg-deploy: GMG / MotionRNN video-prediction models from an OpenSTL checkpoint to fast, verified inference."""
from __future__ import annotations

__version__ = "0.1.0"

from typing import Any

from gmg_deploy.errors import CheckpointError, ConfigError, GMGError, InputError

#: Imported on first use, so that ``import gmg_deploy`` (and every gmg-* command's start) does not load torch.
_LAZY = {"ModelConfig": "gmg_deploy.model.config", "load_checkpoint": "gmg_deploy.model.checkpoint"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gmg_deploy' has no attribute {name!r}")

__all__ = [
    "__version__",
    "ModelConfig",
    "load_checkpoint",
    "GMGError",
    "ConfigError",
    "CheckpointError",
    "InputError",
]
