"""gmg-deploy: GMG / MotionRNN video-prediction models from an OpenSTL checkpoint to fast, verified inference."""
from __future__ import annotations

__version__ = "0.1.0"

from gmg_deploy.errors import CheckpointError, ConfigError, GMGError, InputError
from gmg_deploy.model.config import ModelConfig
from gmg_deploy.model.checkpoint import load_checkpoint

__all__ = [
    "__version__",
    "ModelConfig",
    "load_checkpoint",
    "GMGError",
    "ConfigError",
    "CheckpointError",
    "InputError",
]
