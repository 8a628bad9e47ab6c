"""``gmg-build MODEL.onnx -o MODEL.plan``: a strongly typed TensorRT engine from an exported graph.

Precision is whatever the graph holds (``gmg-export --precision fp16|int8``); no builder precision flags.
One optimization profile spans ``--min-batch``..``--max-batch`` (default 1..8, opt = min) for a dynamic-batch
graph; a fixed-batch graph builds for its batch. Writes ``MODEL.plan.json`` beside the engine (TensorRT
version, GPU and compute capability, precision, I/O names/shapes/dtypes, the ONNX metadata).
Needs TensorRT 10.x/11.x and a CUDA GPU: ``pip install "gmg-deploy[trt]"``; without them it exits 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from gmg_deploy.cli.common import OneLineCommand, one_line_errors


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Engine file (.plan) to write.")
@click.option("--min-batch", type=int, default=None,
              help="Optimization profile: smallest batch (dynamic-batch graphs; default 1).")
@click.option("--opt-batch", type=int, default=None,
              help="Batch TensorRT tunes kernels for (default: --min-batch).")
@click.option("--max-batch", type=int, default=None,
              help="Largest batch (dynamic-batch graphs; default max(min, 8)). For a fixed-batch graph every "
                   "given value must equal its batch.")
@click.option("--workspace", "workspace_mib", type=int, default=None, help="Workspace memory pool limit in MiB.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None, help="Timing cache file (read and updated).")
@click.option("--force", is_flag=True, help="Overwrite the engine.")
@one_line_errors
def main(**options: Any) -> None:
    """Build a TensorRT engine from MODEL (an ONNX graph exported by gmg-export)."""
    _run(BuildOptions(**options))


@dataclass(frozen=True)
class BuildOptions:
    """What ``gmg-build`` was asked to do (its click arguments and options)."""

    model: str
    output: str
    min_batch: int | None
    opt_batch: int | None
    max_batch: int | None
    workspace_mib: int | None
    timing_cache: str | None
    force: bool


def _run(opts: BuildOptions) -> None:
    from gmg_deploy.engine.profile import BuildError, batch_range, profile_shapes
    from gmg_deploy.engine.sidecar import build_sidecar, sidecar_path, write_sidecar
    from gmg_deploy.export.metadata import read_metadata
    from gmg_deploy.export.trt_lint import refuse_cpu_int8
    from gmg_deploy.io import atomic_write_bytes, check_not_input, check_output_path

    # checks, all before TensorRT is touched
    meta = read_metadata(opts.model)
    import onnx

    from gmg_deploy.checks import check_graph_weights

    check_graph_weights(onnx.load(opts.model), opts.model)  # an engine of NaN weights forecasts only NaN
    refuse_cpu_int8(meta, opts.model)
    rng = batch_range(meta, opts.min_batch, opts.opt_batch, opts.max_batch)
    if opts.workspace_mib is not None and opts.workspace_mib < 1:
        raise BuildError(f"--workspace={opts.workspace_mib} MiB must be >= 1")
    out = check_output_path(opts.output, force=opts.force)
    check_output_path(sidecar_path(out), force=opts.force)
    inputs = {"MODEL": opts.model, "--timing-cache": opts.timing_cache}
    check_not_input(out, inputs, "-o/--output")
    check_not_input(sidecar_path(out), inputs, "the engine's sidecar")
    # build, then write the engine and its sidecar
    from gmg_deploy.engine.trt_engine import PURPOSE, build_engine
    from gmg_deploy.engine.trt_import import import_tensorrt

    import_tensorrt(PURPOSE)
    plan, info = build_engine(opts.model, profile_shapes(meta, rng), workspace_mib=opts.workspace_mib,
                              timing_cache=opts.timing_cache)
    atomic_write_bytes(out, plan)
    side = build_sidecar(meta, onnx_path=opts.model, trt_version=info["trt_version"], gpu_name=info["gpu_name"],
                         compute_capability=info["compute_capability"], batch=rng, io=info["io"],
                         workspace_mib=opts.workspace_mib, build_seconds=info["build_seconds"])
    write_sidecar(out, side)
    click.echo(f"wrote {out} ({len(plan) / 2**20:.1f} MiB, TensorRT {info['trt_version']}, {side['precision']}, "
               f"batch {rng.min}..{rng.max}) and {sidecar_path(out)}")


if __name__ == "__main__":  # pragma: no cover
    main()
