"""Floor 1: the PyTorch model (config with BATCH_MODES/WARP_GATES, layers, checkpoint loading).

Imports the utilities (errors, io, checks) only."""
from gmg_deploy.model.config import ModelConfig
from gmg_deploy.model.network import RecurrentPredictor, build_model, state_names, state_shapes
from gmg_deploy.model.checkpoint import load_checkpoint, save_lightning_checkpoint

__all__ = ["ModelConfig", "RecurrentPredictor", "build_model", "state_names", "state_shapes",
           "load_checkpoint", "save_lightning_checkpoint"]
