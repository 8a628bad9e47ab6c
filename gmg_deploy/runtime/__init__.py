"""Stage 5: streaming runtime (state kept on the device) over TensorRT, ONNX Runtime or PyTorch."""
from gmg_deploy.errors import InputError
from gmg_deploy.runtime.forecaster import BACKENDS, Forecaster, StreamState, pick_backend

__all__ = ["Forecaster", "StreamState", "InputError", "BACKENDS", "pick_backend"]
