"""Moved to :mod:`gmg_deploy.trt.sidecar`; this name is kept for old imports (the same module object)."""
import sys

from gmg_deploy.trt import sidecar as _moved

sys.modules[__name__] = _moved
