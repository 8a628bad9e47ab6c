"""``--precision-hint`` / ``--cache-dir``: the OpenVINO backend's options (``--threads`` is shared with ORT)."""
from __future__ import annotations

from typing import Any, Callable

import click

#: ``--device`` values that only the OpenVINO backend takes (besides ``cpu``).
OV_ONLY_DEVICES = ("gpu", "npu", "auto")


def openvino_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--precision-hint f32|bf16|f16`` and ``--cache-dir DIR`` (both for ``--backend openvino``)."""
    fn = click.option("--cache-dir", "cache_dir", default=None, metavar="DIR",
                      help="OpenVINO: keep compiled models in DIR (its CACHE_DIR) so the next start does not "
                           "recompile [off].")(fn)
    return click.option("--precision-hint", "precision_hint", type=click.Choice(["f32", "bf16", "f16"]),
                        default=None, help="OpenVINO: inference precision of an FP32 graph (refused when the "
                                           "device's OPTIMIZATION_CAPABILITIES lack it) [f32].")(fn)
