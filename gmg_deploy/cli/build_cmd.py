"""``gmg-build MODEL.onnx -o MODEL.plan``: a strongly typed TensorRT engine from an exported graph.

Precision is whatever the graph holds (``gmg-export --precision fp16|int8``); no builder precision flags.
One optimization profile spans ``--min-batch``..``--max-batch`` (default 1..8, opt = min) for a dynamic-batch
graph; a fixed-batch graph builds for its batch. Writes ``MODEL.plan.json`` beside the engine (TensorRT
version, GPU and compute capability, precision, I/O names/shapes/dtypes, the ONNX metadata).
Needs TensorRT 10.x/11.x and a CUDA GPU: ``pip install "gmg-deploy[trt]"``; without them it exits 2.
"""
from __future__ import annotations

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
def main(model, output, min_batch, opt_batch, max_batch, workspace_mib, timing_cache, force):
    """Build a TensorRT engine from MODEL (an ONNX graph exported by gmg-export)."""
    from gmg_deploy.engine.profile import BuildError, batch_range, profile_shapes
    from gmg_deploy.engine.sidecar import build_sidecar, sidecar_path, write_sidecar
    from gmg_deploy.export.metadata import read_metadata
    from gmg_deploy.io import atomic_write_bytes, check_output_path

    meta = read_metadata(model)
    from gmg_deploy.export.trt_lint import refuse_cpu_int8

    refuse_cpu_int8(meta, model)
    rng = batch_range(meta, min_batch, opt_batch, max_batch)
    if workspace_mib is not None and workspace_mib < 1:
        raise BuildError(f"--workspace={workspace_mib} MiB must be >= 1")
    out = check_output_path(output, force=force)
    check_output_path(sidecar_path(out), force=force)
    from gmg_deploy.engine.trt_engine import build_engine, import_tensorrt

    import_tensorrt()
    plan, info = build_engine(model, profile_shapes(meta, rng), workspace_mib=workspace_mib, timing_cache=timing_cache)
    atomic_write_bytes(out, plan)
    side = build_sidecar(meta, onnx_path=model, trt_version=info["trt_version"], gpu_name=info["gpu_name"],
                         compute_capability=info["compute_capability"], batch=rng, io=info["io"],
                         workspace_mib=workspace_mib, build_seconds=info["build_seconds"])
    write_sidecar(out, side)
    click.echo(f"wrote {out} ({len(plan) / 2**20:.1f} MiB, TensorRT {info['trt_version']}, {side['precision']}, "
               f"batch {rng.min}..{rng.max}) and {sidecar_path(out)}")


if __name__ == "__main__":  # pragma: no cover
    main()
