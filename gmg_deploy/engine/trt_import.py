"""Moved to :mod:`gmg_deploy.trt.trt_import`; this name is kept for old imports (the same module object)."""
import sys

from gmg_deploy.trt import trt_import as _moved

sys.modules[__name__] = _moved
