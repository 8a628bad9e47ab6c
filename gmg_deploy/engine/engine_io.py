"""Moved to :mod:`gmg_deploy.trt.engine_io`; this name is kept for old imports (the same module object)."""
import sys

from gmg_deploy.trt import engine_io as _moved

sys.modules[__name__] = _moved
