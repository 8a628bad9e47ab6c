"""``gmg-compare A.onnx B.onnx --data seqs.npy``: per-forecast-step accuracy of graph B against graph A.

Both graphs (exports of one model, e.g. FP32 and FP16/INT8) forecast the same sequences in ONNX Runtime CPU.
Prints per step MSE, max |error| and SSIM of B vs A, and - when ``--data`` holds the true future frames
(T >= pre+aft) - each graph's SSIM against the truth and the SSIM drop, checked against the limit for B's
precision (FP16 0.002, INT8 0.01). FP16 graphs are evaluated through an FP32 graph that rounds every FP16
tensor (ORT CPU would otherwise skip the rounding between ops); ``--no-emulate`` runs the FP16 graph as is.
Exit status 1 when ``--check`` is given and a limit is exceeded.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import click

from gmg_deploy.cli.ort_options import ort_options
from gmg_deploy.cli.common import OneLineCommand, load_graph, load_sequences, one_line_errors


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("reference", type=click.Path(dir_okay=False))
@click.argument("candidate", type=click.Path(dir_okay=False))
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="Sequences (N,T,C,H,W) .npy/.npz.")
@click.option("--max-sequences", type=int, default=None, help="Use at most N sequences.")
@click.option("--batch-size", type=int, default=8, show_default=True,
              help="Sequences per ONNX Runtime call (more: faster, more memory).")
@click.option("--no-emulate", is_flag=True, help="Run an FP16 graph in ORT as is (ORT CPU upcasts; understates error).")
@click.option("--check", is_flag=True, help="Exit 1 if the SSIM drop exceeds the precision's limit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@ort_options(default_threads=1)
@one_line_errors
def main(**options: Any) -> None:
    """Compare graph CANDIDATE against graph REFERENCE per forecast step."""
    _run(CompareOptions(**options))


@dataclass(frozen=True)
class CompareOptions:
    """What ``gmg-compare`` was asked to do (its click arguments and options)."""

    reference: str
    candidate: str
    data: str
    max_sequences: int | None
    batch_size: int
    no_emulate: bool
    check: bool
    as_json: bool
    threads: int | None
    no_spin: bool


def _run(opts: CompareOptions) -> None:
    from gmg_deploy.evaluate.accuracy import compare_graphs
    from gmg_deploy.checks import check_threads
    from gmg_deploy.precision.fp16 import emulate_fp16

    check_threads(opts.threads, "--threads")
    frames = load_sequences(opts.data, opts.max_sequences, opts.batch_size)
    protos = []
    for p in (opts.reference, opts.candidate):
        proto, meta = load_graph(p)
        if meta.get("precision") == "fp16" and not opts.no_emulate:
            proto = emulate_fp16(proto)
        protos.append(proto)
    cmp = compare_graphs(protos[0], protos[1], frames, batch_size=opts.batch_size,
                         names=(opts.reference, opts.candidate), threads=opts.threads, spin=not opts.no_spin)
    cmp.extra["fp16_evaluation"] = "as-is" if opts.no_emulate else "emulated (FP16 storage between ops)"
    click.echo(cmp.to_json() if opts.as_json else cmp.table())
    if opts.check and cmp.passed is False:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
