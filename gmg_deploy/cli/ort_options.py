"""``--threads`` / ``--no-spin``: ONNX Runtime CPU session options shared by gmg-infer and gmg-compare."""
from __future__ import annotations

from typing import Any, Callable

import click


def ort_options(default_threads: int | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--threads N`` (intra-op threads; 0: ORT's default of one per core) and ``--no-spin``."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option("--no-spin", "no_spin", is_flag=True,
                          help="ONNX Runtime: idle intra-op threads sleep instead of busy-waiting (helps on a "
                               "shared/loaded host; see README 'INT8 on CPUs').")(fn)
        return click.option("--threads", type=click.IntRange(min=0), default=default_threads,
                            show_default="ONNX Runtime's default" if default_threads is None else True,
                            help="ONNX Runtime intra-op threads (0: one per core); gmg-infer --backend openvino: OpenVINO's "
                                 "INFERENCE_NUM_THREADS.")(fn)

    return deco
