"""Ship a trained demo checkpoint: float16 weights into ``gmg_deploy/assets/demo_gmg.ckpt`` plus its record.

Loads ``--from`` (a float32 checkpoint written by ``scripts/train_demo.py``), stores its tensors as float16
in an OpenSTL Lightning checkpoint (``load_checkpoint`` casts them back into the float32 model), then
measures quality WITH the rounded weights on held-out test sequences and writes
``gmg_deploy/assets/demo_gmg.json`` (config, data set, training record, quality table)::

    python scripts/package_demo.py --from runs/demo/best.ckpt --record runs/demo/train_record.json
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_demo import evaluate, format_table  # noqa: E402

from gmg_deploy.data.demo import ASSETS_DIR, DEMO_CHECKPOINT, DEMO_INFO, DEMO_SPEC, demo_dataset  # noqa: E402
from gmg_deploy.data.moving_shapes import SPLIT_SEEDS  # noqa: E402
from gmg_deploy.io import atomic_write_text  # noqa: E402
from gmg_deploy.model import load_checkpoint, save_lightning_checkpoint  # noqa: E402

MAX_BYTES = 15 * 1024 * 1024


def _subsample(curve: list, n: int) -> list:
    if len(curve) <= n:
        return curve
    stride = len(curve) / n
    out = [curve[int(i * stride)] for i in range(n)]
    return out + ([curve[-1]] if out[-1] is not curve[-1] else [])


def _smoothed(curve: list, window: int = 20) -> list:
    """Loss curve averaged over consecutive ``window`` steps: ``[last_step, mean_loss]``."""
    out = []
    for i in range(0, len(curve), window):
        chunk = curve[i : i + window]
        out.append([chunk[-1][0], round(sum(c[1] for c in chunk) / len(chunk), 6)])
    return out


def _train_command(a: dict) -> str:
    keys = ("resume", "steps", "eval_every", "ss_fraction", "time_budget_min", "out_dir")
    parts = [f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in a.items() if k in keys and v]
    return "python scripts/train_demo.py " + " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", type=Path, required=True)
    ap.add_argument("--record", type=Path, required=True, help="train_record.json of the run")
    ap.add_argument("--n", type=int, default=256, help="held-out test sequences for the quality table")
    ap.add_argument("--out-dir", type=Path, default=ASSETS_DIR)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    model = load_checkpoint(args.src)
    record = json.loads(args.record.read_text())
    src_hp = torch.load(args.src, map_location="cpu", weights_only=True)["hyper_parameters"]
    ckpt_training = json.loads(json.dumps(src_hp.get("training", {})))  # the state at the saved step
    training = {
        "steps": ckpt_training.get("steps_done"),
        "total_steps_run": record["steps_done"],
        "wall_time_s_at_checkpoint": ckpt_training.get("wall_time_s"),
        "wall_time_s_total": record["wall_time_s"],
        "hardware": record["hardware"],
        "seed": record["seed"],
        "args": record["args"],
        "num_parameters": record["num_parameters"],
        "val_copy_last_mse": record["val_copy_last_mse"],
        "best_val_mse": record["best_val_mse"],
        "best_step": record["best_step"],
        "resumed": record.get("resumed", []),
        "loss": "MSE + l1_weight * L1 (per-pixel means), all 19 generated frames",
    }
    dataset = {**DEMO_SPEC.to_dict(), "train_seed_base": record["dataset"]["train_seed_base"],
               "val_seed": SPLIT_SEEDS["val"], "test_seed": SPLIT_SEEDS["test"]}

    half = copy.deepcopy(model).half()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out_dir / DEMO_CHECKPOINT
    save_lightning_checkpoint(half, ckpt_path, demo_dataset=dataset, training=training,
                              weights_dtype="float16")
    size = ckpt_path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{ckpt_path} is {size} bytes > {MAX_BYTES}")

    shipped = load_checkpoint(ckpt_path)  # float16 weights cast into the float32 model
    t = time.perf_counter()
    res = evaluate(shipped, demo_dataset("test", n=args.n))
    res["eval_seconds"] = round(time.perf_counter() - t, 2)
    res["seed"] = SPLIT_SEEDS["test"]
    res["weights"] = "float16 (as shipped)"
    print(format_table(res))

    info = {
        "name": "demo_gmg",
        "description": "GMG (2 layers, N=128) trained on CPU on synthetic moving digits, 10 observed -> 10 predicted "
                       "32x32 frames; a demonstration model, not a benchmark model",
        "config": shipped.config.to_dict(),
        "checkpoint": {"file": DEMO_CHECKPOINT, "bytes": size, "weights_dtype": "float16",
                       "sha256": hashlib.sha256(ckpt_path.read_bytes()).hexdigest()},
        "dataset": dataset,
        "training": {**training,
                     "loss_curve_every_20_steps": _smoothed(record["loss_curve"]),
                     "val_curve": record["val_curve"]},
        "quality": res,
        "commands": {
            "train": [_train_command(record["args"])]
            + [_train_command(r["args"]) + f"  # from step {r['at_step']}" for r in record.get("resumed", [])],
            "package": f"python scripts/package_demo.py --from {args.src} --record {args.record}",
            "evaluate": "python scripts/eval_demo.py",
        },
    }
    atomic_write_text(args.out_dir / DEMO_INFO, json.dumps(info, indent=1) + "\n")
    print(f"wrote {ckpt_path} ({size} bytes) and {args.out_dir / DEMO_INFO}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
