"""Old name of :mod:`gmg_deploy.cli.forecaster_options` (``EngineOptions`` is ``ForecasterOptions``)."""
import sys

from gmg_deploy.cli import forecaster_options as _moved

sys.modules[__name__] = _moved
