"""Moved to :mod:`gmg_deploy.cli.environment_report`; this name is kept for old imports (the same module object)."""
import sys

from gmg_deploy.cli import environment_report as _moved

sys.modules[__name__] = _moved
