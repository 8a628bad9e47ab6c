"""Moved to :mod:`gmg_deploy.graph.index` (the graph-contract floor); this name is kept for old imports."""
import sys

from gmg_deploy.graph import index as _moved

sys.modules[__name__] = _moved
