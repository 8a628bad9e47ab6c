"""The old name of :mod:`gmg_deploy.trt` (TensorRT builds), kept so old imports work: each module here is an alias.

``gmg_deploy.engine.X`` is the very module ``gmg_deploy.trt.X`` (``openvino_import`` now lives in
:mod:`gmg_deploy.runtime`, ``environment`` in :mod:`gmg_deploy.cli.environment_report`). Nothing in the
package imports these names.
"""
