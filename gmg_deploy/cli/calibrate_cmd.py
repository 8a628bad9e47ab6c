"""``gmg-calibrate``: INT8 activation ranges of an FP32 step graph over recurrent rollouts -> ranges.json.

Examples::

    gmg-calibrate model.ckpt --data calib.npy -o ranges.json           # or --model / --ckpt PATH
    gmg-calibrate model_step.onnx --data calib.npy -o ranges.json --method percentile --max-sequences 64
    gmg-export --ckpt model.ckpt -o model_int8.onnx --precision int8 --calibration ranges.json

The FP32 graph observes each sequence's first ``pre`` frames and forecasts ``aft`` (state chained, so the
state inputs of every step are calibrated). ``--data`` is ``(N, T>=pre, C, H, W)`` frames in the model's
input units, read by :func:`gmg_deploy.frames.read_frames` (``.npy``/``.npz``, uint8 scaled by 1/255, a PNG
folder or a video file fitted to the graph's frame size).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import click
import numpy as np

from gmg_deploy.cli.model_options import (CHECKPOINT_OPTIONS, CheckpointOptions, auto_gate_note, checkpoint_options,
                                          model_argument, resolve_model)
from gmg_deploy.cli.common import OneLineCommand, load_sequences, model_metadata, one_line_errors
from gmg_deploy.cli.ort_options import ort_options
from gmg_deploy.errors import InputError
from gmg_deploy.io import check_not_input, check_output_path


def load_fp32_step_graph(ckpt: str | None, onnx_path: str | None, batch_mode: str = "invariant",
                         checkpoint: CheckpointOptions | None = None) -> Any:
    """The FP32 step graph (ModelProto with metadata) from a checkpoint (exported in memory) or an ONNX file.

    ``checkpoint``: the checkpoint options (``--trust-checkpoint``, ``--config-file``, ``--in-shape``, ...).
    """
    checkpoint = checkpoint or CheckpointOptions()
    warp_gate = checkpoint.warp_gate
    if (ckpt is None) == (onnx_path is None):
        raise InputError("give exactly one model: a checkpoint or an FP32 step .onnx")
    if onnx_path is not None:
        checkpoint.refuse_for_graph(onnx_path)
        if checkpoint.pre is not None or checkpoint.aft is not None:
            raise InputError(f"--pre/--aft change a checkpoint's configuration, but {onnx_path} is a graph; "
                             "drop them (its metadata holds pre/aft)")
        from gmg_deploy.graph.metadata import load_graph

        proto, meta = load_graph(onnx_path, finite=True)  # one error for a missing, non-ONNX or NaN-weight file
        if warp_gate != "auto" and warp_gate != meta.warp_gate:
            raise InputError(f"--warp-gate {warp_gate}: {onnx_path} was exported with warp-gate layout "
                             f"{meta.warp_gate!r}; re-export it with --warp-gate {warp_gate}, or drop --warp-gate")
        return proto
    from gmg_deploy.export import build_proto
    from gmg_deploy.model import load_checkpoint

    return build_proto(load_checkpoint(ckpt, **checkpoint.load_kwargs()), graph="step", batch_mode=batch_mode)


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@model_argument("--ckpt", "--onnx", help="OpenSTL checkpoint (.ckpt/.pth, exported in memory) or FP32 step graph "
                                       "(.onnx from gmg-export)")
@checkpoint_options
@click.option("--data", required=True, type=click.Path(), help="Calibration sequences: .npy/.npz (N,T,C,H,W) "
              "(uint8 scaled by 1/255), a folder of PNG frames or a video file (one sequence each).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Ranges file to write (JSON).")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True,
              help="Range estimator (symmetric int8 amax per tensor).")
@click.option("--max-sequences", type=int, default=None, help="Use at most N sequences of --data.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Sequences per ORT call.")
@click.option("--batch-mode", type=click.Choice(["invariant", "reference"]), default="invariant", show_default=True,
              help="Checkpoint: the growth-decay mode to export (must match gmg-export's).")
@click.option("--keep-float", default="default", show_default=True,
              help="Quantizable nodes to leave in float: 'default' (motion-offset GRU convs and the output head), "
                   "'none', or comma-separated node names. Stored in the ranges file.")
@click.option("--force", is_flag=True, help="Overwrite the output file.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@ort_options()
@one_line_errors
def main(**options: Any) -> None:
    """Calibrate INT8 ranges on recurrent rollouts of the FP32 step graph."""
    model = resolve_model(options, missing="give exactly one of --ckpt or --onnx (or the model as the first argument)")
    onnx_given = str(model).lower().endswith(".onnx")
    ck = CheckpointOptions.from_click(options)
    _run(CalibrateOptions(ckpt=None if onnx_given else model, onnx_path=model if onnx_given else None, checkpoint=ck,
                          **{k: v for k, v in options.items() if k not in CHECKPOINT_OPTIONS}))


@dataclass(frozen=True)
class CalibrateOptions:
    """What ``gmg-calibrate`` was asked to do (its click options)."""

    ckpt: str | None
    onnx_path: str | None
    checkpoint: CheckpointOptions
    data: str
    output: str
    method: str
    max_sequences: int | None
    batch_size: int
    batch_mode: str
    keep_float: str
    force: bool
    as_json: bool
    threads: int | None = None
    no_spin: bool = False

    def keep_list(self) -> str | list[str]:
        """``--keep-float``: ``"default"``, ``"none"`` or the node names."""
        if self.keep_float in ("default", "none"):
            return self.keep_float
        return [k.strip() for k in self.keep_float.split(",") if k.strip()]


def _run(opts: CalibrateOptions) -> None:
    from gmg_deploy.precision import calibrate
    from gmg_deploy.checks import check_threads

    check_threads(opts.threads, "--threads")
    out = check_output_path(opts.output, force=opts.force)
    check_not_input(out, {"--ckpt": opts.ckpt, "--onnx": opts.onnx_path, "--data": opts.data,
                          "--config-file": opts.checkpoint.config_file}, "-o/--output")
    frames = load_sequences(opts.data, opts.max_sequences, opts.batch_size, model=lambda: model_metadata(
        opts.onnx_path or opts.ckpt, "onnxruntime" if opts.onnx_path else "torch", opts.checkpoint.load_kwargs()))
    proto = load_fp32_step_graph(opts.ckpt, opts.onnx_path, opts.batch_mode, opts.checkpoint)
    say = (lambda s: None) if opts.as_json else (lambda s: click.echo(s, err=True))
    keep = opts.keep_list()
    if isinstance(keep, list):
        unknown = sorted(set(keep) - {n.name for n in proto.graph.node})
        if unknown:
            raise InputError(f"--keep-float names {unknown[0]!r}, which is not a node of the step graph")
    doc = calibrate(proto, np.asarray(frames), method=opts.method, batch_size=opts.batch_size, keep_float=keep,
                    output=out, progress=say, threads=opts.threads, spin=not opts.no_spin)
    _report(opts, out, doc)


def _report(opts: CalibrateOptions, out: Any, doc: dict[str, Any]) -> None:
    from gmg_deploy.graph.metadata import as_metadata

    states = {k: v for k, v in doc["tensors"].items() if v["kind"] == "state"}
    summary = {
        "output": str(out),
        "method": opts.method,
        "sequences": doc["sequences"],
        "steps_per_sequence": doc["steps_per_sequence"],
        "tensors": len(doc["tensors"]),
        "state_tensors": len(states),
        "fingerprint": doc["fingerprint"],
        "warp_gate": as_metadata(doc["metadata"], str(out)).warp_gate,
        "keep_float": doc["keep_float"],
    }
    if opts.as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"wrote {out}: {summary['tensors']} tensors ({summary['state_tensors']} state inputs) over "
                   f"{summary['sequences']} sequences x {summary['steps_per_sequence']} steps, method {opts.method}; "
                   f"{len(doc['keep_float'])} node(s) kept float; warp gate {summary['warp_gate']}")
        note = auto_gate_note(opts.checkpoint.warp_gate, summary["warp_gate"]) if opts.ckpt is not None else None
        if note:
            click.echo(note)


if __name__ == "__main__":  # pragma: no cover
    main()
