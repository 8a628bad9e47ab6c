"""Stage: engine (build) - strongly typed TensorRT engines from exported ONNX graphs (``gmg-build``).

Everything but the TensorRT calls (:mod:`gmg_deploy.engine.trt_engine`) is plain Python and tested on CPU:
optimization-profile shapes (:mod:`.profile`), the ``.plan.json`` sidecar (:mod:`.sidecar`) and the
environment report of ``gmg-doctor`` (:mod:`.environment`).
"""
