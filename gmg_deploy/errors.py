"""User-facing error types: each carries one line saying what is wrong, where, and what to do."""
from __future__ import annotations


class GMGError(Exception):
    """Base class for errors caused by user input (bad files, bad options, bad shapes).

    CLIs print ``str(err)`` as one line and exit with code 2; they never show a traceback for these.
    """


class ConfigError(GMGError, ValueError):
    """A model configuration violates the architecture's constraints."""


class CheckpointError(GMGError, ValueError):
    """A checkpoint cannot be read, is refused as unsafe, or does not match the configuration."""


class InputError(GMGError, ValueError):
    """Input data (frames, state, options) has the wrong shape, dtype or values."""


class ServeError(GMGError, RuntimeError):
    """A model server cannot be found, started or reached, or it refused a request."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so every "keep what was processed" path runs; exit 143."""
