"""``gmg-demo``: the whole chain on the shipped demo model, on this machine, with no download.

Exports the embedded GMG (trained on synthetic moving digits) to a step and a sequence ONNX graph, plus an
FP16 and an INT8 step graph (INT8 calibrated on training-split rollouts); streams held-out sequences through
the ONNX Runtime step graph with :class:`~gmg_deploy.runtime.Forecaster`; checks the sequence graph and the
reduced-precision graphs against it; and writes predictions, a metrics table (model vs copy-last baseline)
and an input | truth | prediction GIF.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np

from gmg_deploy.cli.common import OneLineCommand, one_line_errors


def _say(msg: str) -> None:
    click.echo(msg, err=True)


@dataclass
class _DemoRun:
    """What every phase of a demo run shares: the output folder, the files written and the timings so far
    (both end up in the summary), and where progress lines go."""

    out_dir: Path
    say: Callable[[str], None]
    files: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def run_demo(
    out_dir: Path,
    *,
    sequences: int = 16,
    precision: bool = True,
    calib_sequences: int = 32,
    ckpt: Path | None = None,
    say: Callable[[str], None] = _say,
) -> dict[str, Any]:
    """Run the demo into ``out_dir``; returns the summary (also written as ``summary.json``)."""
    from gmg_deploy.data.demo import demo_dataset

    t_start = time.perf_counter()
    run = _DemoRun(out_dir, say)
    model, ckpt = _load_model(run, ckpt)
    cfg = model.config
    pre, aft = cfg.pre_seq_length, cfg.aft_seq_length
    step_path, seq_path = _export_graphs(run, model)
    data = demo_dataset("test", n=sequences)
    observed, truth = data[:, :pre], data[:, pre : pre + aft]
    preds, seq_diff = _stream(run, step_path, seq_path, data)
    summary = _quality_summary(run, ckpt, cfg, preds, observed, seq_diff, truth)
    if precision:
        summary["precision"] = _precision_checks(run, step_path, data, preds, truth, calib_sequences)
    _write_outputs(run, summary, preds, observed, truth, t_start)
    return summary


#: The files the demo (re)writes in its --out folder.
DEMO_FILES = ("demo_step.onnx", "demo_sequence.onnx", "preds.npy", "demo.gif", "metrics.md", "summary.json",
              "demo_step_fp16.onnx", "demo_int8_ranges.json", "demo_step_int8.onnx")


def _load_model(run: _DemoRun, ckpt: Path | None) -> tuple[Any, Path]:
    """Phase 1: the output folder exists and the (demo) checkpoint is loaded."""
    from gmg_deploy import load_checkpoint
    from gmg_deploy.data.demo import demo_checkpoint_path
    from gmg_deploy.io import OutputError

    try:
        run.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {run.out_dir}: {e.strerror or e}; pick another --out") from None
    ckpt = Path(ckpt) if ckpt is not None else demo_checkpoint_path()
    from gmg_deploy.io import check_not_input

    for name in DEMO_FILES:  # the demo replaces these files in --out: never the checkpoint it reads
        check_not_input(run.out_dir / name, {"--ckpt": ckpt}, "--out")
    model = load_checkpoint(ckpt)
    cfg = model.config
    run.say(f"[1/5] model: {ckpt.name} ({cfg.arch}, in_shape {list(cfg.in_shape)}, {cfg.pre_seq_length} -> "
            f"{cfg.aft_seq_length} frames, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters)")
    return model, ckpt


def _export_graphs(run: _DemoRun, model: Any) -> tuple[Path, Path]:
    """Phase 2: the FP32 step and sequence graphs."""
    from gmg_deploy.export import export_model

    cfg = model.config
    step_path, seq_path = run.out_dir / "demo_step.onnx", run.out_dir / "demo_sequence.onnx"
    res = export_model(model, step_path, graph="step", force=True)
    run.timings["export_step_s"] = res.seconds
    res_seq = export_model(model, seq_path, graph="sequence", force=True)
    run.timings["export_sequence_s"] = res_seq.seconds
    run.files.update(step_onnx=str(step_path), sequence_onnx=str(seq_path))
    run.say(f"[2/5] exported step graph ({res.node_count} nodes, {res.seconds:.1f} s) and "
            f"{cfg.pre_seq_length + cfg.aft_seq_length - 1}-step sequence graph ({res_seq.node_count} nodes, "
            f"{res_seq.seconds:.1f} s)")
    return step_path, seq_path


def _stream(run: _DemoRun, step_path: Path, seq_path: Path, data: np.ndarray) -> tuple[np.ndarray, float]:
    """Phase 3: stream the held-out sequences through the step graph (Forecaster, ONNX Runtime) and check the
    sequence graph against it; -> (predictions, max |sequence - stream|)."""
    import onnxruntime as ort

    from gmg_deploy.evaluate.ort_session import make_session
    from gmg_deploy.evaluate.rollout import rollout
    from gmg_deploy.graph.metadata import GraphMetadata
    from gmg_deploy.runtime import Forecaster

    step_meta = GraphMetadata.read(step_path)
    pre, aft = step_meta.pre, step_meta.aft
    t0 = time.perf_counter()
    with Forecaster.open(step_path, backend="onnxruntime", batch_size=data.shape[0]) as fc:
        fc.observe(data[:, :pre])
        preds = np.asarray(fc.forecast(aft), dtype=np.float32)
    run.timings["stream_s"] = time.perf_counter() - t0
    seq_preds = rollout(make_session(seq_path, 2), GraphMetadata.read(seq_path), data)
    seq_diff = float(np.abs(seq_preds - preds).max())
    run.say(f"[3/5] streamed {data.shape[0]} held-out sequences through the step graph (ONNX Runtime "
            f"{ort.__version__}, {run.timings['stream_s']:.1f} s); sequence graph agrees to {seq_diff:.1e}")
    return preds, seq_diff


def _quality_summary(run: _DemoRun, ckpt: Path, cfg: Any, preds: np.ndarray, observed: np.ndarray,
                     seq_diff: float, truth: np.ndarray) -> dict[str, Any]:
    """Phase 4: forecast quality of the model and of the copy-last baseline (the summary's core)."""
    from gmg_deploy.evaluate.metrics import copy_last_baseline, per_step_report

    model_q = per_step_report(preds, truth)
    base_q = per_step_report(copy_last_baseline(observed, int(cfg.aft_seq_length)), truth)
    return {
        "checkpoint": str(ckpt),
        "config": cfg.to_dict(),
        "sequences": int(preds.shape[0]),
        "model": model_q,
        "copy_last": base_q,
        "mse_ratio_vs_copy_last": model_q["mse"] / base_q["mse"],
        "sequence_vs_stream_max_abs": seq_diff,
        "precision": {},
        "timings": run.timings,
        "files": run.files,
    }


def _write_outputs(run: _DemoRun, summary: dict[str, Any], preds: np.ndarray, observed: np.ndarray,
                   truth: np.ndarray, t_start: float) -> None:
    """Phase 5: predictions, GIF, metrics table and summary, each written atomically."""
    from gmg_deploy.evaluate.strip_gif import write_strip_gif
    from gmg_deploy.io import atomic_save_npy, atomic_write_text

    files, timings, out_dir = run.files, run.timings, run.out_dir

    atomic_save_npy(out_dir / "preds.npy", preds)
    files["preds"] = str(out_dir / "preds.npy")
    gif = out_dir / "demo.gif"
    n_frames, size = write_strip_gif(gif, observed[0], preds[0], truth[0])
    files["gif"] = str(gif)
    table = metrics_table(summary)
    atomic_write_text(out_dir / "metrics.md", table + "\n")
    files["metrics"] = str(out_dir / "metrics.md")
    timings["total_s"] = time.perf_counter() - t_start
    files["summary"] = str(out_dir / "summary.json")
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    run.say(f"[5/5] wrote predictions, metrics, GIF ({n_frames} frames, {size[0]}x{size[1]} px)")


def _precision_checks(run: _DemoRun, step_path: Path, data: np.ndarray, preds: np.ndarray, truth: np.ndarray,
                      calib_sequences: int) -> dict[str, Any]:
    """FP16 and INT8 step graphs of the demo model, compared per step with the FP32 stream."""
    from gmg_deploy.data.demo import demo_dataset
    from gmg_deploy.evaluate.accuracy import SSIM_DROP_LIMITS as SSIM_LIMITS, compare_predictions
    from gmg_deploy.evaluate.ort_session import make_session
    from gmg_deploy.evaluate.rollout import rollout
    from gmg_deploy.graph.metadata import GraphMetadata
    from gmg_deploy.graph.onnx_file import load_onnx
    from gmg_deploy.io import atomic_write_bytes
    from gmg_deploy.precision.fp16 import convert_to_fp16
    from gmg_deploy.precision.fp16_emulation import emulate_fp16
    from gmg_deploy.precision.qdq import quantize_graph
    from gmg_deploy.precision.ranges import collect_ranges, save_ranges

    out_dir, files = run.out_dir, run.files
    fp32 = load_onnx(step_path, what="the demo's FP32 step graph")
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    fp16 = convert_to_fp16(fp32)
    atomic_write_bytes(out_dir / "demo_step_fp16.onnx", fp16.SerializeToString())
    files["step_fp16_onnx"] = str(out_dir / "demo_step_fp16.onnx")
    calib = demo_dataset("train", n=calib_sequences)
    ranges = collect_ranges(fp32, calib)
    save_ranges(ranges, out_dir / "demo_int8_ranges.json")
    int8 = quantize_graph(fp32, ranges)
    atomic_write_bytes(out_dir / "demo_step_int8.onnx", int8.SerializeToString())
    files.update(step_int8_onnx=str(out_dir / "demo_step_int8.onnx"),
                 int8_ranges=str(out_dir / "demo_int8_ranges.json"))
    for name, proto in (("fp16", emulate_fp16(fp16)), ("int8", int8)):
        cand = rollout(make_session(proto, 2), GraphMetadata.from_proto(proto), data)
        cmp = compare_predictions(preds, cand, truth)
        worst = float(max(cmp["ssim_drop"]))
        out[name] = {**cmp, "worst_ssim_drop": worst, "limit": SSIM_LIMITS[name],
                     "passed": worst <= SSIM_LIMITS[name]}
    run.say(f"[4/5] precision: FP16 worst per-step SSIM drop {out['fp16']['worst_ssim_drop']:.1e} "
            f"(limit {SSIM_LIMITS['fp16']}), INT8 {out['int8']['worst_ssim_drop']:.1e} "
            f"(limit {SSIM_LIMITS['int8']}; calibrated on {len(calib)} training rollouts), "
            f"{time.perf_counter() - t0:.1f} s")
    return out


def metrics_table(summary: dict[str, Any]) -> str:
    """Markdown: overall model vs copy-last, then the per-step curve."""
    m, b = summary["model"], summary["copy_last"]
    lines = [
        f"Held-out synthetic sequences: {summary['sequences']}; forecast {len(m['mse_per_step'])} frames "
        "(OpenSTL metrics: MSE/MAE summed over pixels, SSIM per frame)",
        "",
        "| forecast | MSE (sum over pixels) | MAE (sum over pixels) | SSIM | PSNR |",
        "|---|---|---|---|---|",
        f"| GMG demo model (ONNX Runtime, streaming) | {m['mse']:.2f} | {m['mae']:.2f} | {m['ssim']:.4f} | {m['psnr']:.2f} |",
        f"| copy last observed frame | {b['mse']:.2f} | {b['mae']:.2f} | {b['ssim']:.4f} | {b['psnr']:.2f} |",
        f"| ratio model / copy-last | {m['mse'] / b['mse']:.3f} | {m['mae'] / b['mae']:.3f} | | |",
        "",
        "| step | MSE (sum over pixels) model | MSE (sum over pixels) copy-last | SSIM model | SSIM copy-last |",
        "|---|---|---|---|---|",
    ]
    for k in range(len(m["mse_per_step"])):
        lines.append(f"| {k + 1} | {m['mse_per_step'][k]:.2f} | {b['mse_per_step'][k]:.2f} | "
                     f"{m['ssim_per_step'][k]:.4f} | {b['ssim_per_step'][k]:.4f} |")
    prec = summary.get("precision") or {}
    if prec:
        lines += ["", "| graph | worst per-step SSIM drop vs FP32 | limit | max abs error vs FP32 |", "|---|---|---|---|"]
        for name, r in prec.items():
            lines.append(f"| {name.upper()} step graph | {r['worst_ssim_drop']:.2e} | {r['limit']} | "
                         f"{max(r['max_abs']):.2e} |")
    return "\n".join(lines)


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="gmg-demo-out", show_default=True,
              help="Folder for the ONNX graphs, predictions, metrics and GIF (created if missing; "
                   "earlier demo files in it are replaced).")
@click.option("--sequences", type=click.IntRange(1, 512), default=16, show_default=True,
              help="Held-out synthetic sequences to forecast.")
@click.option("--no-precision", is_flag=True, help="Skip the FP16/INT8 graphs and their accuracy check.")
@click.option("--calib-sequences", type=click.IntRange(1, 1024), default=32, show_default=True,
              help="Training-split sequences the INT8 calibration rolls out.")
@click.option("--ckpt", type=click.Path(dir_okay=False), default=None, hidden=True,
              help="Another checkpoint of the demo's configuration (development).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@one_line_errors
def main(out_dir: str, sequences: int, no_precision: bool, calib_sequences: int, ckpt: str | None,
         as_json: bool) -> None:
    """Run the toolkit end to end on the embedded demo model (no download, CPU is enough)."""
    summary = run_demo(Path(out_dir), sequences=sequences, precision=not no_precision,
                       calib_sequences=calib_sequences, ckpt=Path(ckpt) if ckpt else None)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(metrics_table(summary))
    click.echo("")
    for k, v in summary["files"].items():
        click.echo(f"{k:>16}: {v}")
    click.echo(f"done in {summary['timings']['total_s']:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    main()
