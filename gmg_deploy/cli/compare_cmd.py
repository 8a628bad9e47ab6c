"""``gmg-compare REFERENCE CANDIDATE --data seqs.npy``: per-forecast-step accuracy of a model against another.

Each side is anything the runtime opens: a checkpoint (``.ckpt``/``.pth``, PyTorch), a step or forecast
``.onnx`` (ONNX Runtime), a ``.plan`` (TensorRT) or ``triton://HOST:PORT/NAME`` (a served model); pick a
backend per side with ``--reference-backend``/``--candidate-backend``. Both roll out through the runtime
(observe ``pre`` with chained state, forecast ``aft``; a sequence graph, which the runtime does not stream,
takes ONNX Runtime's batched rollout). Prints per step the MSE (per pixel, and summed over pixels as OpenSTL reports it), max |error|
and SSIM of B vs A, and - when ``--data`` holds the true future frames (T >= pre+aft) - each side's SSIM
against the truth and the SSIM drop, checked against the limit for B's precision (FP16 0.002, INT8 0.01,
FP32 1e-6 and max |err| <= 1e-4), with the first step outside it. FP16 ONNX graphs on ONNX Runtime run
through an FP32 graph that rounds every FP16 tensor (ORT CPU would otherwise skip the rounding between ops);
``--no-emulate`` runs them as is. Exit status 1 when ``--check`` is given and a limit is exceeded.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from gmg_deploy.cli.common import OneLineCommand, load_sequences, model_metadata, one_line_errors
from gmg_deploy.cli.model_options import CheckpointOptions, checkpoint_options
from gmg_deploy.cli.ort_options import ort_options
from gmg_deploy.runtime.forecaster import BACKENDS

#: ``--*-backend`` choices (Forecaster.open's backends).
BACKEND_CHOICES = BACKENDS
_KNOWN_SUFFIXES = {".plan", ".engine", ".onnx", ".ckpt", ".pth", ".pt"}


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("reference")
@click.argument("candidate")
@click.option("--data", required=True, type=click.Path(), help="Sequences: .npy/.npz (N,T,C,H,W) (uint8 scaled by "
              "1/255), a folder of PNG frames or a video file (one sequence each).")
@click.option("--max-sequences", type=int, default=None, help="Use at most N sequences.")
@click.option("--batch-size", type=int, default=8, show_default=True,
              help="Sequences per ONNX Runtime call (more: faster, more memory); streams per side on the "
                   "other backends.")
@click.option("--no-emulate", is_flag=True, help="Run an FP16 graph in ORT as is (ORT CPU upcasts; understates error).")
@click.option("--reference-backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True,
              help="Backend for REFERENCE (auto: by file type).")
@click.option("--candidate-backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True,
              help="Backend for CANDIDATE (auto: by file type).")
@click.option("--limit", type=float, default=None,
              help="SSIM-drop limit per step (default by CANDIDATE's precision: fp16 0.002, int8 0.01, fp32 1e-6).")
@click.option("--max-abs-limit", type=float, default=None,
              help="Bound on max |B - A| per step (default: 1e-4 for an FP32 candidate, none otherwise).")
@click.option("--precision-hint", "precision_hint", type=click.Choice(["f32", "bf16", "f16"]), default=None,
              help="OpenVINO sides (--*-backend openvino): INFERENCE_PRECISION_HINT; bf16/f16 score against the "
                   "FP16/BF16 limit (0.002).")
@checkpoint_options
@click.option("--check", is_flag=True, help="Exit 1 if a step exceeds the limit (SSIM drop, max |err| bound).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@ort_options()
@one_line_errors
def main(**options: Any) -> None:
    """Compare model CANDIDATE against model REFERENCE per forecast step."""
    ck = CheckpointOptions.from_click(options)
    fields = {f for f in CompareOptions.__dataclass_fields__}
    _run(CompareOptions(**{k: v for k, v in options.items() if k in fields}, checkpoint=ck))


@dataclass(frozen=True)
class CompareOptions:
    """What ``gmg-compare`` was asked to do (its click arguments and options)."""

    reference: str
    candidate: str
    data: str
    max_sequences: int | None
    batch_size: int
    no_emulate: bool
    reference_backend: str
    candidate_backend: str
    limit: float | None
    max_abs_limit: float | None
    check: bool
    as_json: bool
    threads: int | None
    no_spin: bool
    checkpoint: CheckpointOptions
    precision_hint: str | None = None


def _is_checkpoint(path: str, backend: str) -> bool:
    return not path.startswith("triton://") and (backend == "torch" or (
        backend == "auto" and Path(path).suffix.lower() in (".ckpt", ".pth", ".pt")))


def side_of(path: str, backend: str, opts: CompareOptions) -> Any:
    """A :class:`gmg_deploy.runtime.verify.Side` for one argument; an unknown file type is read as ONNX."""
    from gmg_deploy.runtime.verify import Side

    p = Path(path)
    if backend == "auto" and not path.startswith("triton://") and p.suffix.lower() not in _KNOWN_SUFFIXES \
            and p.is_file():
        backend = "onnxruntime"  # gmg-compare's historic input: say "not a readable ONNX model" if it is not
    options = opts.checkpoint.load_kwargs() if _is_checkpoint(path, backend) else {}
    if opts.precision_hint is not None and backend == "openvino":
        options["precision_hint"] = opts.precision_hint
    return Side(path, backend, emulate=not opts.no_emulate, options=options)


def _refuse_unused_checkpoint_options(opts: CompareOptions) -> None:
    from gmg_deploy.errors import InputError

    if any(_is_checkpoint(p, b) for p, b in ((opts.reference, opts.reference_backend),
                                            (opts.candidate, opts.candidate_backend))):
        return
    ck = opts.checkpoint
    given = ck.describing_a_checkpoint() + [f for f, v in (("--pre", ck.pre), ("--aft", ck.aft)) if v is not None]
    if ck.warp_gate != "auto":
        given.append("--warp-gate")
    if given:
        raise InputError(f"{'/'.join(given)} describe a checkpoint; neither REFERENCE nor CANDIDATE is one "
                         "(a graph's metadata or an engine's sidecar holds its configuration)")


def _run(opts: CompareOptions) -> None:
    from gmg_deploy.checks import check_threads
    from gmg_deploy.runtime.verify import compare_models

    check_threads(opts.threads, "--threads")
    _refuse_unused_checkpoint_options(opts)
    if opts.precision_hint is not None and "openvino" not in (opts.reference_backend, opts.candidate_backend):
        from gmg_deploy.errors import InputError

        raise InputError("--precision-hint applies to an OpenVINO side; add --candidate-backend openvino "
                         "(or --reference-backend openvino)")
    ref = side_of(opts.reference, opts.reference_backend, opts)
    frames = load_sequences(opts.data, opts.max_sequences, opts.batch_size,
                            model=lambda: model_metadata(ref.path, ref.backend, ref.options))
    cmp = compare_models(side_of(opts.reference, opts.reference_backend, opts),
                         side_of(opts.candidate, opts.candidate_backend, opts), frames,
                         batch_size=opts.batch_size, threads=opts.threads, spin=not opts.no_spin,
                         limit=opts.limit, max_abs_limit=opts.max_abs_limit)
    cmp.extra["fp16_evaluation"] = "as-is" if opts.no_emulate else "emulated (FP16 storage between ops)"
    click.echo(cmp.to_json() if opts.as_json else cmp.table())
    if opts.check and cmp.passed is False:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
