"""Moved to :mod:`gmg_deploy.graph.metadata` (the graph-contract floor); this name is kept for old imports."""
import sys

from gmg_deploy.graph import metadata as _moved

sys.modules[__name__] = _moved
