"""Moved to :mod:`gmg_deploy.runtime.openvino_import`; this name is kept for old imports (the same module object)."""
import sys

from gmg_deploy.runtime import openvino_import as _moved

sys.modules[__name__] = _moved
