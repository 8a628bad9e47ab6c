"""Moved to :mod:`gmg_deploy.trt.profile`; this name is kept for old imports (the same module object)."""
import sys

from gmg_deploy.trt import profile as _moved

sys.modules[__name__] = _moved
