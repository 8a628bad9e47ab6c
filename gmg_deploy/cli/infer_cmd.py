"""``gmg-infer``: streaming inference over sequences with a TensorRT engine, an ONNX step graph or a checkpoint."""
from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
import numpy as np

from gmg_deploy.cli.ort_options import ort_options
from gmg_deploy.cli.openvino_options import OV_ONLY_DEVICES, openvino_options
from gmg_deploy.cli.model_options import checkpoint_options, model_argument
from gmg_deploy.cli.common import OneLineCommand, one_line_errors
from gmg_deploy.checks import check_finite_frames
from gmg_deploy.cli.infer_options import InferOptions, VideoOptions  # noqa: F401 - VideoOptions re-exported
from gmg_deploy.cli.infer_video import check_array_call, video_main, video_options
from gmg_deploy.errors import GMGError, InputError
from gmg_deploy.io import atomic_save_npy, check_not_input, check_output_path
from gmg_deploy.video.kinds import is_video_input


def _parse_thresholds(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"--csi-thresholds {text!r} is not a comma-separated list of numbers (e.g. 0.3,0.5)") from None


class PartialRun(Exception):
    """The array run stopped early (the engine failed, e.g. no Triton server left, or a signal): ``done`` holds
    the forecasts of the sequences finished before ``cause``."""

    def __init__(self, done: np.ndarray, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.done, self.cause = done, cause


def run_inference(fc: Any, frames: np.ndarray, pre: int, aft: int, show_progress: bool = False) -> np.ndarray:
    """Forecast every sequence of ``frames`` ``(N,T,C,H,W)`` in chunks of ``fc.batch_size`` -> ``(N,aft,C,H,W)``.

    Each chunk starts from a reset state, observes ``pre`` frames, then forecasts ``aft``; a short last
    chunk is padded with copies of its last sequence (their outputs are dropped). An engine error or a signal
    after some chunks raises :class:`PartialRun` with the finished sequences' forecasts.
    """
    N, B = frames.shape[0], fc.batch_size
    out = np.empty((N, aft) + frames.shape[2:], dtype=np.float32)
    starts = range(0, N, B)
    bar = click.progressbar(length=N, label="sequences", file=sys.stderr) if show_progress else None
    done = 0
    try:
        for s in starts:
            chunk = np.array(frames[s : s + B, :pre], dtype=np.float32)  # a copy: frames may be memory-mapped
            n = chunk.shape[0]
            if n < B:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], B - n, axis=0)])
            fc.reset()
            fc.observe(chunk)
            out[s : s + n] = fc.forecast(aft)[:n]
            done = s + n
            if bar is not None:
                bar.update(n)
    except (GMGError, KeyboardInterrupt) as e:
        if done == 0:
            raise
        raise PartialRun(out[:done], e) from None
    except Exception as e:  # the engine failed (a runtime error): one line, keeping the finished sequences
        from gmg_deploy.errors import error_reason

        err = GMGError(f"the {fc.backend_name} engine failed on sequence {done + 1} ({error_reason(e, 300)}); "
                       "the run stopped there")
        if done == 0:
            raise err from None
        raise PartialRun(out[:done], err) from None
    finally:
        if bar is not None:
            bar.render_finish()
    return out


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@model_argument("--engine", help="Model: TensorRT engine (.plan/.engine), ONNX step or forecast graph (.onnx), "
                                 "checkpoint (.ckpt/.pth) or triton://HOST:PORT/NAME")
@click.option("--input", "input_path", required=True, multiple=True, metavar="FRAMES|VIDEO",
              help=".npy/.npz (N,T,C,H,W) or (N,T,H,W), or a folder of PNG frames (one sequence, sorted by name); "
                   "uint8 data is scaled by 1/255. Or a video (.mp4 .mkv .avi .mov .webm), an rtsp:// or "
                   "http(s):// URL, a camera /dev/videoN: repeat --input for several streams in one batch.")
@click.option("--out", "out", default=None, metavar="PREDS.npy",
              help="Predictions (N,aft,C,H,W) float32 .npy (required for array input). Video: (frames,K,C,H,W) in "
                   "model units (.npz with one array per input for several inputs).")
@click.option("--gif", default=None, metavar="STRIP.gif",
              help="Animated GIF of the first sequence: rows input | truth | prediction, one GIF frame per step.")
@click.option("--metrics", is_flag=True, help="MSE/MAE/SSIM/PSNR (OpenSTL) and CSI; needs T >= pre+aft frames.")
@click.option("--csi-thresholds", default="0.3,0.5", show_default=True, help="CSI thresholds (with --metrics).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Streams per step (engine batch).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt", "openvino"]),
              default="auto", show_default=True, help="auto: by file type; openvino: an .onnx graph on OpenVINO.")
@click.option("--device", type=click.Choice(["cpu", "cuda", *OV_ONLY_DEVICES], case_sensitive=False), default=None,
              help="[cuda for TensorRT, else cpu]; gpu/npu/auto: OpenVINO devices (--backend openvino).")
@click.option("--timeout", type=float, default=None, metavar="S",
              help="triton:// engines: seconds each request (and the closing END) may take [60].")
@checkpoint_options
@click.option("--clip", is_flag=True,
              help="Clip predictions to [0, 1] before saving and scoring (default: as the model outputs them, "
                   "which may fall outside the input range).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@ort_options()
@openvino_options
@video_options
@one_line_errors
def main(**options: Any) -> None:
    """Forecast sequences with the streaming runtime and optionally score them.

    For each sequence: reset, observe the first PRE frames one step at a time, forecast AFT frames
    (the sequences are processed BATCH-SIZE at a time, one stream per slot). If the input has
    T >= PRE+AFT frames, frames PRE..PRE+AFT-1 are the ground truth for --metrics and the GIF.
    Outputs are written atomically; input or option errors print one line and exit with code 2.

    Video sources: a forecast K frames ahead at every frame; see "Forecast a video" in the README.
    """
    opts = InferOptions.from_click(options)
    if any(is_video_input(i) for i in opts.inputs):
        if opts.clip:
            raise InputError("--clip applies to array inputs; video panels are always shown clipped to [0, 1]")
        sys.exit(video_main(opts))
    check_array_call(opts.inputs, opts.out, opts.video)
    summary = _run_arrays(opts)
    if opts.as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    click.echo(f"{summary['sequences']} sequence(s), pre={summary['pre']} aft={summary['aft']} with "
               f"{summary['backend']} on {summary['device']} (batch {summary['batch_size']}): "
               f"{summary['seconds']:.2f} s, {summary['steps_per_s']:.1f} stream-steps/s; "
               f"warp gate {summary['warp_gate']}")
    lo, hi = summary["range"]
    click.echo(f"predictions -> {summary['out']} (values {lo:.3g}..{hi:.3g}, "
               f"{'clipped to [0, 1]' if summary['clipped'] else 'not clipped; --clip clips them to [0, 1]'})")
    if summary.get("failovers"):
        fo = summary["failovers"]
        click.echo(f"failovers: {len(fo)} (replayed {sum(f['replayed'] for f in fo)} frames, "
                   f"{max(f['detect_s'] + f['seconds'] for f in fo):.2f} s at most each)")
    if summary.get("gif"):
        click.echo(f"gif ({summary['gif_frames']} frames, {summary['gif_size'][0]}x{summary['gif_size'][1]}) "
                   f"-> {summary['gif']}")
    for k, v in (summary.get("metrics") or {}).items():
        if k not in ("mse", "mae"):  # their named forms, mse_pixel_sum/mae_pixel_sum, are printed
            click.echo(f"{k:>13s}: {v:.6g}")


def _run_arrays(opts: InferOptions) -> dict[str, Any]:
    """The array path: forecast the sequences of the one ``--input``, save them, score them -> the summary."""
    from gmg_deploy.evaluate.metrics import all_metrics
    from gmg_deploy.evaluate.strip_gif import write_strip_gif
    from gmg_deploy.runtime.buffers import check_horizon_budget
    from gmg_deploy.frames import count_sequences, read_frames

    input_path, model, pre, aft, clip = opts.inputs[0], opts.forecaster.model, opts.pre, opts.aft, opts.clip
    thresholds = _parse_thresholds(opts.csi_thresholds) if opts.metrics else []
    out_path = check_output_path(opts.out, force=opts.force)
    gif_path = check_output_path(opts.gif, force=opts.force) if opts.gif else None
    if gif_path is not None and gif_path.resolve() == out_path.resolve():
        raise InputError("--gif and --out name the same file; give two paths")
    read = {"--input": input_path, "--engine": model, "--config-file": opts.forecaster.config_file}
    check_not_input(out_path, read, "--out")
    check_not_input(gif_path, read, "--gif")
    fc = opts.forecaster.open(streams=count_sequences(input_path))
    cfg = fc.config
    frames = read_frames(input_path, fc.frame_shape)
    pre = cfg.pre_seq_length if pre is None else pre
    aft = cfg.aft_seq_length if aft is None else aft
    N, T = frames.shape[:2]
    if T < pre:
        raise InputError(f"input has {T} frames per sequence, fewer than --pre {pre}")
    check_horizon_budget(aft, "--aft", frame_shape=fc.frame_shape, streams=fc.batch_size, device=fc.device, kept=N)
    has_truth = T >= pre + aft
    if opts.metrics and not has_truth:
        raise InputError(f"--metrics needs ground truth: input has T={T} frames, pre+aft={pre + aft}; "
                         "give longer sequences or drop --metrics")
    t0 = time.perf_counter()
    try:
        preds = run_inference(fc, frames, pre, aft, show_progress=sys.stderr.isatty())
    except PartialRun as p:  # keep what was processed, then the one error line / signal status
        _save_partial(p, out_path, clip)
        raise p.cause from None
    seconds = time.perf_counter() - t0
    check_finite_frames(preds, f"predictions of {model}", "check the model's weights and precision")
    if clip:
        np.clip(preds, 0.0, 1.0, out=preds)
    fc.close()
    truth = frames[:, pre : pre + aft] if has_truth else None
    summary: dict[str, Any] = {
        "engine": str(model), "backend": fc.backend_name, "batch_size": fc.batch_size,
        "device": str(getattr(fc.backend, "ov_device", fc.device)),  # OpenVINO: its device, not the buffers'
        "batch_mode": fc.batch_mode, "warp_gate": cfg.warp_gate, "sequences": int(N), "pre": pre, "aft": aft,
        "seconds": seconds, "steps_per_s": N * (pre + aft - 1) / seconds if seconds > 0 else float("inf"),
        "out": str(out_path), "shape": list(preds.shape), "clipped": bool(clip),
        "range": [float(preds.min()), float(preds.max())],
    }
    if getattr(fc.backend, "failovers", None) is not None:  # triton://: streams moved to another server
        summary["failovers"] = list(fc.backend.failovers)
    if opts.metrics:
        summary["metrics"] = all_metrics(preds, truth, thresholds)
    atomic_save_npy(out_path, preds)
    if gif_path is not None:
        count, size = write_strip_gif(gif_path, frames[0, :pre], preds[0], None if truth is None else truth[0])
        summary.update(gif=str(gif_path), gif_frames=count, gif_size=list(size))
    return summary


def _save_partial(p: PartialRun, out_path: Any, clip: bool) -> None:
    """Write the forecasts of the sequences finished before the run stopped, and say so on one line."""
    from gmg_deploy.cli.signals import message_of

    preds = p.done
    if clip:
        np.clip(preds, 0.0, 1.0, out=preds)
    atomic_save_npy(out_path, preds)
    why = message_of(p.cause) if isinstance(p.cause, KeyboardInterrupt) else "the engine failed"
    click.echo(f"partial: {why}; {out_path} holds the {preds.shape[0]} sequence(s) finished before it", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
