"""Stage: engine (build) - strongly typed TensorRT engines from exported ONNX graphs (``gmg-build``).

Everything but the TensorRT calls (:mod:`gmg_deploy.engine.trt_engine`; the one ``import tensorrt`` is
:mod:`gmg_deploy.engine.trt_import`) is plain Python and tested on CPU: optimization-profile shapes
(:mod:`.profile`, from the graph's :class:`GraphSignature`), an engine's I/O as data (:mod:`.engine_io`),
the ``.plan.json`` sidecar's writer and reader (:mod:`.sidecar`), the known TensorRT pitfalls as data
(:mod:`.pitfalls`) and the environment report of ``gmg-doctor`` (:mod:`.environment`).
"""
