"""Measure a moving-digits GMG against the copy-last-frame baseline on held-out sequences and print a table.

Baselines: copy-last (the last observed frame repeated) and blank (all-zero frames; on this sparse data a
blank forecast already beats copy-last, so a useful model must beat both). Metrics (OpenSTL definitions, ``gmg_deploy.evaluate.metrics``): MSE / MAE summed over C,H,W and averaged over
samples and the 10 forecast frames; SSIM per frame (prediction clipped to [0, 1]); also per forecast step.
Defaults evaluate the shipped ``gmg_deploy/assets/demo_gmg.ckpt`` on 256 test-split sequences::

    python scripts/eval_demo.py
    python scripts/eval_demo.py --ckpt runs/demo/best.ckpt --n 64 --json-out quality.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset
from gmg_deploy.data.moving_shapes import SPLIT_SEEDS
from gmg_deploy.evaluate.metrics import copy_last_baseline, per_step_report as quality_report
from gmg_deploy.model import load_checkpoint


def forecast(model, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Autoregressive forecast ``(N, aft, C, H, W)`` from the first ``pre`` frames."""
    pre = model.config.pre_seq_length
    outs = []
    for i in range(0, len(frames), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch_size, :pre]))
        outs.append(model.predict(x).numpy())
    return np.concatenate(outs)


def evaluate(model, frames: np.ndarray) -> dict[str, Any]:
    """``{"model", "copy_last", "blank": report, "n": N, ...}`` over the forecast frames of ``frames``."""
    cfg = model.config
    pre, aft = cfg.pre_seq_length, cfg.aft_seq_length
    true = frames[:, pre : pre + aft]
    t = time.perf_counter()
    pred = forecast(model, frames)
    secs = time.perf_counter() - t
    return {
        "n": int(len(frames)),
        "model": quality_report(pred, true),
        "copy_last": quality_report(copy_last_baseline(frames[:, :pre], aft), true),
        "blank": quality_report(np.zeros_like(true), true),
        "forecast_seconds": round(secs, 3),
        "threads": torch.get_num_threads(),
    }


def format_table(res: dict[str, Any]) -> str:
    m, b, z = res["model"], res["copy_last"], res["blank"]
    lines = [
        f"held-out sequences: {res['n']}",
        f"{'':10s} {'MSE':>9s} {'MAE':>9s} {'SSIM':>7s}",
        f"{'model':10s} {m['mse']:9.3f} {m['mae']:9.3f} {m['ssim']:7.4f}",
        f"{'copy-last':10s} {b['mse']:9.3f} {b['mae']:9.3f} {b['ssim']:7.4f}",
        f"{'blank':10s} {z['mse']:9.3f} {z['mae']:9.3f} {z['ssim']:7.4f}",
        f"model / copy-last: MSE {m['mse'] / b['mse']:.3f}, MAE {m['mae'] / b['mae']:.3f}",
        "",
        f"{'step':>4s} {'MSE model':>10s} {'MSE copy':>9s} {'MSE blank':>10s} {'SSIM model':>11s} {'SSIM copy':>10s}"
        f" {'SSIM blank':>11s}",
    ]
    cols = zip(m["mse_per_step"], b["mse_per_step"], z["mse_per_step"], m["ssim_per_step"], b["ssim_per_step"],
               z["ssim_per_step"])
    for i, (a, c, e, s, d, f) in enumerate(cols):
        lines.append(f"{i + 1:4d} {a:10.3f} {c:9.3f} {e:10.3f} {s:11.4f} {d:10.4f} {f:11.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, default=None, help="default: the shipped demo checkpoint")
    ap.add_argument("--n", type=int, default=256, help="held-out sequences")
    ap.add_argument("--seed", type=int, default=SPLIT_SEEDS["test"], help="data seed (default: test split)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.ckpt or demo_checkpoint_path())
    res = evaluate(model, demo_dataset(n=args.n, seed=args.seed))
    res["seed"] = args.seed
    print(format_table(res))
    if args.json_out:
        args.json_out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
