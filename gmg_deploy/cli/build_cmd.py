"""``gmg-build MODEL.onnx -o MODEL.plan``: a strongly typed TensorRT engine from an exported graph.

Precision is whatever the graph holds (``gmg-export --precision fp16|int8``); no builder precision flags.
One optimization profile spans ``--min-batch``..``--max-batch`` (default 1..8, opt = min) for a dynamic-batch
graph; a fixed-batch graph builds for its batch. Writes ``MODEL.plan.json`` beside the engine (TensorRT
version, GPU and compute capability, precision, I/O names/shapes/dtypes, the ONNX metadata).
Needs TensorRT 10.x/11.x and a CUDA GPU: ``pip install "gmg-deploy[trt]"``; without them it exits 2.

``--verify HELD_OUT.npy`` scores the engine right after building against ``--reference`` (default: the
source graph, run as is on ONNX Runtime) with gmg-compare's metrics and limits, records the result as the
sidecar's ``verification`` and exits 1 above the limit. Without it the sidecar says ``unverified`` (and the
runtime says so once when it opens the engine). When a known TensorRT pitfall of this TensorRT version and
graph asks for verification (:mod:`gmg_deploy.trt.pitfalls`), the build is refused unless ``--verify``
or ``--no-verify`` is given.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import click

from gmg_deploy.cli.common import OneLineCommand, load_sequences, one_line_errors
from gmg_deploy.cli.model_options import CheckpointOptions, checkpoint_options, model_argument, resolve_model

if TYPE_CHECKING:
    from gmg_deploy.graph.metadata import GraphMetadata


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@model_argument(help="ONNX graph exported by gmg-export (FP32, FP16 or INT8 --target tensorrt)")
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
@click.option("--verify", "verify", type=click.Path(dir_okay=False), default=None,
              help="Held-out sequences (N,T>=pre+aft,C,H,W) .npy/.npz: score the engine after building, record "
                   "the result in the sidecar, exit 1 above the limit.")
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="With --verify: the FP32 model to score against (.ckpt/.pth or .onnx; default: MODEL on "
                   "ONNX Runtime).")
@click.option("--verify-sequences", type=int, default=None, help="With --verify: use at most N sequences.")
@click.option("--no-verify", is_flag=True,
              help="Build without verification even where a known TensorRT pitfall asks for it (the sidecar "
                   "says unverified).")
@checkpoint_options
@one_line_errors
def main(**options: Any) -> None:
    """Build a TensorRT engine from MODEL (an ONNX graph exported by gmg-export)."""
    options["model"] = resolve_model(options)
    fields = set(BuildOptions.__dataclass_fields__)
    _run(BuildOptions(**{k: v for k, v in options.items() if k in fields},
                      checkpoint=CheckpointOptions.from_click(options)))


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
    verify: str | None
    reference: str | None
    verify_sequences: int | None
    no_verify: bool
    #: The checkpoint options, for a checkpoint --reference.
    checkpoint: CheckpointOptions


def _run(opts: BuildOptions) -> None:
    from gmg_deploy.trt.profile import BuildError, batch_range, profile_shapes
    from gmg_deploy.trt.sidecar import build_sidecar, sidecar_path, write_sidecar
    from gmg_deploy.export.trt_lint import refuse_cpu_int8
    from gmg_deploy.graph.metadata import load_graph
    from gmg_deploy.io import atomic_write_bytes, check_not_input, check_output_path

    # checks, all before TensorRT is touched
    proto, meta = load_graph(opts.model, finite=True)  # read once; an engine of NaN weights forecasts only NaN
    del proto  # TensorRT parses the file itself
    refuse_cpu_int8(meta, opts.model)
    rng = batch_range(meta, opts.min_batch, opts.opt_batch, opts.max_batch)
    if opts.workspace_mib is not None and opts.workspace_mib < 1:
        raise BuildError(f"--workspace={opts.workspace_mib} MiB must be >= 1")
    frames, reference = _verification_inputs(opts, meta)
    out = check_output_path(opts.output, force=opts.force)
    check_output_path(sidecar_path(out), force=opts.force)
    inputs = {"MODEL": opts.model, "--timing-cache": opts.timing_cache}
    check_not_input(out, inputs, "-o/--output")
    check_not_input(sidecar_path(out), inputs, "the engine's sidecar")
    # build, then write the engine and its sidecar
    from gmg_deploy.trt.trt_engine import PURPOSE, build_engine
    from gmg_deploy.trt.trt_import import import_tensorrt

    version = str(import_tensorrt(PURPOSE).__version__)  # one clear error when TensorRT is missing
    pitfall_gate(known_pitfalls(version, meta), verify=opts.verify is not None, no_verify=opts.no_verify)
    plan, info = build_engine(opts.model, profile_shapes(meta, rng), workspace_mib=opts.workspace_mib,
                              timing_cache=opts.timing_cache)
    atomic_write_bytes(out, plan)
    side = build_sidecar(meta.to_dict(), onnx_path=opts.model, trt_version=info["trt_version"],
                         gpu_name=info["gpu_name"], compute_capability=info["compute_capability"], batch=rng,
                         io=info["io"], workspace_mib=opts.workspace_mib, build_seconds=info["build_seconds"],
                         unverified_reason="--no-verify" if opts.no_verify else None)
    write_sidecar(out, side)
    click.echo(f"wrote {out} ({len(plan) / 2**20:.1f} MiB, TensorRT {info['trt_version']}, {side['precision']}, "
               f"batch {rng.min}..{rng.max}) and {sidecar_path(out)}")
    if frames is not None:
        from gmg_deploy.runtime.verify import Side

        status = verify_and_report(Side(str(out), "tensorrt"), opts.verify, frames, reference=reference,
                                   sidecar=sidecar_path(out))
        if status:
            sys.exit(status)


def _verification_inputs(opts: BuildOptions, meta: GraphMetadata) -> tuple[Any, Any]:
    """``--verify``'s frames (checked against the graph: true future included) and ``--reference``'s side,
    or ``(None, None)``; every mistake is refused before TensorRT builds anything."""
    from gmg_deploy.errors import InputError
    from gmg_deploy.evaluate.rollout import sequence_frames
    from gmg_deploy.runtime.verify import DEFAULT_BATCH, Side

    if opts.verify is None:
        if opts.reference is not None or opts.verify_sequences is not None:
            raise InputError("--reference/--verify-sequences apply with --verify DATA.npy only")
        _refuse_checkpoint_options(opts.checkpoint, "without --verify --reference CKPT")
        return None, None
    if opts.no_verify:
        raise InputError("--verify and --no-verify contradict each other; give one")
    frames = sequence_frames(load_sequences(opts.verify, opts.verify_sequences, DEFAULT_BATCH, meta), meta,
                             "--verify data")
    pre, aft = meta.pre, meta.aft
    if frames.shape[1] < pre + aft:
        raise InputError(f"--verify {opts.verify} holds {frames.shape[1]} frames per sequence; verification "
                         f"needs the true future too: {pre} + {aft} frames")
    if opts.reference is None:
        _refuse_checkpoint_options(opts.checkpoint, "without --reference CKPT")
        if meta.precision == "int8":
            raise InputError(f"{opts.model} is an INT8 graph, no FP32 reference for --verify; pass --reference "
                             "FP32.onnx or the checkpoint")
        return frames, None
    if not Path(opts.reference).is_file():
        raise InputError(f"--reference {opts.reference} not found; give the FP32 .onnx or checkpoint")
    is_ckpt = Path(opts.reference).suffix.lower() in (".ckpt", ".pth", ".pt")
    if not is_ckpt:
        _refuse_checkpoint_options(opts.checkpoint, f"--reference {opts.reference}")
    return frames, Side(opts.reference, "auto", emulate=False,
                        options=opts.checkpoint.load_kwargs() if is_ckpt else {})


def _refuse_checkpoint_options(ck: CheckpointOptions, what: str) -> None:
    from gmg_deploy.errors import InputError

    given = ck.describing_a_checkpoint() + [f for f, v in (("--pre", ck.pre), ("--aft", ck.aft)) if v is not None]
    if ck.warp_gate != "auto":
        given.append("--warp-gate")
    if given:
        raise InputError(f"{'/'.join(given)} describe a checkpoint --reference; not {what}")


def verify_and_report(engine: Any, data: str, frames: Any, *, reference: Any = None, sidecar: Any = None) -> int:
    """Score ``engine`` (a :class:`~gmg_deploy.runtime.verify.Side`: the .plan, or any model in tests), record
    the verification in ``sidecar``, print the table and verdict; -> exit status (1: above the limit)."""
    from gmg_deploy.runtime.verify import verify_engine

    cmp, record = verify_engine(engine, data, frames, reference=reference, sidecar=sidecar)
    click.echo(cmp.table())
    click.echo(f"verification {record['status']} against {record['reference']} (recorded in {sidecar})")
    return 0 if record["passed"] else 1


def known_pitfalls(trt_version: str, meta: Mapping[str, Any]) -> list[Any]:
    """The known TensorRT pitfalls for this version and graph (:func:`gmg_deploy.trt.pitfalls.pitfalls_for`)."""
    from gmg_deploy.trt.pitfalls import pitfalls_for

    return list(pitfalls_for(trt_version, meta))


def pitfall_gate(pitfalls: Iterable[Any], *, verify: bool, no_verify: bool) -> None:
    """Refuse (one line) a build that a pitfall with ``requires_verify`` concerns unless the user chose
    ``--verify`` or ``--no-verify``."""
    from gmg_deploy.trt.profile import BuildError

    needing = [p for p in pitfalls if getattr(p, "requires_verify", False)]
    if not needing or verify or no_verify:
        return
    p = needing[0]
    more = f" (and {len(needing) - 1} more: {', '.join(str(q.id) for q in needing[1:])})" if len(needing) > 1 else ""
    raise BuildError(f"known TensorRT pitfall {p.id} concerns this build{more}: {p.advice}; pass --verify "
                     "HELD_OUT.npy to score the engine after building, or --no-verify to build it unverified")


if __name__ == "__main__":  # pragma: no cover
    main()
