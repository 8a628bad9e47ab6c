"""``gmg-export``: an OpenSTL GMG / MotionRNN checkpoint -> ONNX (step or unrolled sequence graph).

Examples::

    gmg-export work_dirs/mmnist/checkpoints/best.ckpt -o gmg_step.onnx      # or --model / --ckpt PATH
    gmg-export best.ckpt -o gmg_seq.onnx --graph sequence --batch 8
    gmg-export weights.pth --config-file configs/mmnist/GMG.py --in-shape 20,1,64,64 --pre 10 --aft 10 -o s.onnx

The step graph takes ``frame`` and ``state_in.*`` and returns ``next_frame`` and ``state_out.*`` (feed each
``state_out.X`` back as ``state_in.X``; zeros start). The sequence graph maps ``frames (B,pre,C,H,W)`` to
``preds (B,aft,C,H,W)``. Metadata (config, state layout, warp, batch mode, normalisation) is embedded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import click

from gmg_deploy.cli.model_options import auto_gate_note, checkpoint_options, model_argument, resolve_model
from gmg_deploy.cli.common import OneLineCommand, fields_of, one_line_errors
from gmg_deploy.cli.common import parse_in_shape as _parse_shape
from gmg_deploy.cli.precision_options import check_precision_options, precision_options
from gmg_deploy.errors import InputError
from gmg_deploy.graph.signature import GRAPH_KINDS


def _human(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@model_argument("--ckpt", required=False,
                help="OpenSTL checkpoint (Lightning .ckpt, or a bare .pth state dict with --config-file); "
                     "default: the demo model shipped with gmg-deploy")
@checkpoint_options
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="ONNX file to write.")
@click.option("--graph", type=click.Choice(GRAPH_KINDS), default="step", show_default=True,
              help="step: one recurrent step with explicit state; sequence: all pre+aft-1 steps unrolled; "
                   "forecast: observe one frame and forecast --horizon frames in one call (for Triton).")
@click.option("--horizon", type=int, default=None, help="Forecast graph: frames forecast per call [aft].")
@click.option("--warp", type=click.Choice(["gridsample", "gather"]), default="gridsample", show_default=True,
              help="Warp form: one GridSample (TensorRT-friendly) or the reference's index gathers.")
@click.option("--batch", type=int, default=None, help="Fixed batch size (default: dynamic batch axis).")
@click.option("--dynamic-batch", is_flag=True, help="Dynamic batch axis (the default; excludes --batch).")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset (GridSample needs >= 16).")
@click.option("--batch-mode", type=click.Choice(["invariant", "reference"]), default="invariant", show_default=True,
              help="invariant: each sample as if run alone; reference: OpenSTL's batch-position growth decay.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--force", is_flag=True, help="Overwrite the output file.")
@precision_options
@one_line_errors
def main(**options: Any) -> None:
    """Export a GMG / MotionRNN checkpoint to ONNX (step graph or unrolled sequence graph)."""
    options["ckpt"] = resolve_model(options, required=False)
    opts = ExportOptions.from_click(options)
    check_precision_options(**opts.prec, graph=opts.graph)
    if opts.prec["calibration"]:  # a bad ranges file fails before the slow export
        from gmg_deploy.precision.ranges import load_ranges

        load_ranges(opts.prec["calibration"])
    _run(opts)


@dataclass(frozen=True)
class ExportOptions:
    """What ``gmg-export`` was asked to do (its click options; ``prec``: the precision options)."""

    ckpt: str | None
    config_file: str | None
    in_shape: str | None
    pre: int | None
    aft: int | None
    arch: str | None
    output: str
    graph: str
    horizon: int | None
    warp: str
    warp_gate: str
    batch: int | None
    dynamic_batch: bool
    opset: int
    batch_mode: str
    trust_checkpoint: bool
    as_json: bool
    force: bool
    prec: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_click(cls, options: dict[str, Any]) -> "ExportOptions":
        own = {k: v for k, v in fields_of(cls, options).items() if k != "prec"}
        return cls(**own, prec={k: v for k, v in options.items() if k not in own})

    def check(self) -> None:
        """Option combinations that cannot work, refused before any slow work."""
        if self.ckpt is None and (self.config_file or self.in_shape or self.arch or self.pre is not None
                                  or self.aft is not None):
            raise InputError("--config-file/--in-shape/--pre/--aft/--arch describe a checkpoint; give it with --ckpt PATH "
                             "(or as the MODEL argument)")
        if self.batch is not None and self.dynamic_batch:
            raise InputError("--batch and --dynamic-batch exclude each other; give one")
        if self.batch is not None and self.batch < 1:
            raise InputError(f"--batch {self.batch} must be >= 1")
        if self.horizon is not None and self.graph != "forecast":
            raise InputError("--horizon applies to --graph forecast only")
        if self.horizon is not None and self.horizon < 1:
            raise InputError(f"--horizon {self.horizon} must be >= 1")


def _run(opts: ExportOptions) -> None:
    from gmg_deploy.io import check_not_input, check_output_path

    opts.check()
    shape = _parse_shape(opts.in_shape)
    check_output_path(opts.output, force=opts.force)  # fail before the slow work
    check_not_input(opts.output, {"--ckpt": opts.ckpt, "--config-file": opts.config_file,
                                  "--calibration": opts.prec.get("calibration")}, "-o/--output")
    say = lambda msg: click.echo(msg, err=True)  # noqa: E731
    model = _load_model(opts, shape, say)
    res = _export(model, opts, say)
    _report(res, opts)


def _load_model(opts: ExportOptions, shape: Any, say: Callable[[str], None]) -> Any:
    """The checkpoint (or the shipped demo model) as a :class:`RecurrentPredictor`."""
    from gmg_deploy.model.checkpoint import load_checkpoint

    ckpt = opts.ckpt
    if ckpt is None:
        from gmg_deploy.data.demo import demo_checkpoint_path

        ckpt = demo_checkpoint_path()
        say(f"no --ckpt: exporting the shipped demo model ({ckpt.name}, GMG on synthetic moving digits)")
    say(f"loading {ckpt}...")
    return load_checkpoint(ckpt, config_file=opts.config_file, in_shape=shape, pre_seq_length=opts.pre,
                           aft_seq_length=opts.aft, arch=opts.arch, warp=opts.warp, warp_gate=opts.warp_gate,
                           trust_checkpoint=opts.trust_checkpoint)


def _export(model: Any, opts: ExportOptions, say: Callable[[str], None]) -> Any:
    """Export (with the precision pass in memory, before the one atomic write) -> ``ExportResult``."""
    from gmg_deploy.export import export_model

    prec = opts.prec
    transform = None
    if prec["precision"] != "fp32":  # FP16 / INT8 pass in memory, before the one atomic write
        say(f"converting to {prec['precision']}"
            + (f" (target {prec['target']})" if prec['precision'] == 'int8' else "") + "...")
        from gmg_deploy.precision import apply_precision

        transform = lambda proto: apply_precision(proto, **prec)  # noqa: E731
    return export_model(model, opts.output, graph=opts.graph, batch=opts.batch, opset=opts.opset,
                        batch_mode=opts.batch_mode, force=opts.force, progress=say, transform=transform,
                        horizon=opts.horizon)


def _report(res: Any, opts: ExportOptions) -> None:
    note = auto_gate_note(opts.warp_gate, res.warp_gate)
    if opts.as_json:
        click.echo(json.dumps({**res.to_dict(), "warp_gate_requested": opts.warp_gate}, sort_keys=True))
    else:
        ops = ", ".join(f"{k} {v}" for k, v in list(res.op_types.items())[:8])
        click.echo(f"wrote {res.path} ({res.graph} graph, {res.node_count} nodes, {_human(res.file_size)}) "
                   f"in {res.seconds:.1f} s; ops: {ops}{', ...' if len(res.op_types) > 8 else ''}")
        if note:
            click.echo(note)


if __name__ == "__main__":  # pragma: no cover
    main()
