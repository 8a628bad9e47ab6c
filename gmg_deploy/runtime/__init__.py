"""Floor 8, the streaming runtime (imports floors 0-7): :class:`Forecaster` observes frames and forecasts any horizon, the recurrent state kept
where the model runs (on the device, or in the server), over TensorRT, ONNX Runtime, OpenVINO, PyTorch or Triton
(one :class:`gmg_deploy.runtime.backend.StepBackend` each)."""
from gmg_deploy.errors import InputError
from gmg_deploy.runtime.forecaster import BACKENDS, Forecaster, StreamState, pick_backend

__all__ = ["Forecaster", "StreamState", "InputError", "BACKENDS", "pick_backend"]
