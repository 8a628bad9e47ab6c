"""``--threads`` / ``--no-spin``: the CPU runtime options shared by gmg-infer, gmg-compare and gmg-calibrate."""
from __future__ import annotations

from typing import Any, Callable

import click


def ort_options(default_threads: int | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``--threads N`` (intra-op threads; 0 or unset: the runtime's default, one per core) and ``--no-spin``.

    One convention for every command that runs ONNX Runtime (gmg-infer, gmg-compare, gmg-calibrate; gmg-triton's
    python flavour likewise): unset means the runtime's own default, as trtexec and ONNX Runtime have it.
    """

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option("--no-spin", "no_spin", is_flag=True,
                          help="ONNX Runtime: idle intra-op threads sleep instead of busy-waiting (helps on a "
                               "shared/loaded host; see README 'INT8 on CPUs').")(fn)
        return click.option("--threads", type=click.IntRange(min=0), default=default_threads,
                            show_default="ONNX Runtime's default" if default_threads is None else True,
                            help="ONNX Runtime intra-op threads (0: one per core); gmg-infer --backend openvino: OpenVINO's "
                                 "INFERENCE_NUM_THREADS.")(fn)

    return deco
