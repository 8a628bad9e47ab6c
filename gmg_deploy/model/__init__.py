"""Stage 1: the PyTorch model (config, layers, checkpoint loading)."""
from gmg_deploy.model.config import ModelConfig
from gmg_deploy.model.network import RecurrentPredictor, build_model, state_names, state_shapes
from gmg_deploy.model.checkpoint import load_checkpoint, save_lightning_checkpoint

__all__ = ["ModelConfig", "RecurrentPredictor", "build_model", "state_names", "state_shapes",
           "load_checkpoint", "save_lightning_checkpoint"]
