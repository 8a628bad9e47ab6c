"""Floor 7, stage trt (TensorRT build) - strongly typed TensorRT engines from exported graphs (``gmg-build``).

Imports floors 0-6. Its old name ``gmg_deploy.engine`` is kept as aliases.

Everything but the TensorRT calls (:mod:`gmg_deploy.trt.trt_engine`; the one ``import tensorrt`` is
:mod:`gmg_deploy.trt.trt_import`) is plain Python and tested on CPU: optimization-profile shapes
(:mod:`.profile`, from the graph's :class:`GraphSignature`), an engine's I/O as data (:mod:`.engine_io`),
the ``.plan.json`` sidecar's writer and reader (:mod:`.sidecar`) and the known TensorRT pitfalls as data
(:mod:`.pitfalls`). ``gmg-doctor``'s machine report is :mod:`gmg_deploy.cli.environment_report`.
"""
