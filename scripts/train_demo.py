"""Train the small demo GMG shipped as ``gmg_deploy/assets/demo_gmg.ckpt`` (CPU, deterministic from a seed).

Data: synthetic moving digits (``gmg_deploy.data.moving_shapes``), a fresh batch per step drawn from
``train_seed + step`` (never the test seed). Each step runs the model over 19 recurrent steps with the
OpenSTL target (every generated frame against the next true frame) and loss MSE + ``--l1-weight`` * L1
(per-pixel means; the L1 term keeps the background exactly black). Observed frames are always fed
(teacher forcing); for the forecast frames the ground truth is fed with probability ``eta`` per sample and
step, ``eta`` falling linearly from 1 to 0 over ``--ss-fraction`` of the steps, after which training is pure
autoregressive (the model feeds its own predictions, as at test time).

Writes into ``--out-dir``: ``last.ckpt`` / ``best.ckpt`` (float32 OpenSTL Lightning checkpoints, best by
held-out validation MSE), ``train_state.pt`` (to ``--resume``), ``train_record.json``, ``train.log`` lines on
stdout. Single-threaded CPU runs are deterministic from ``--seed`` (``--time-budget-min`` may stop early;
the record says where). The shipped demo was trained in three parts (each ``--resume`` lengthens the cosine
schedule; ``--ss-fraction`` keeps the scheduled-sampling end at step 585)::

    python scripts/train_demo.py --steps 1300 --eval-every 100 --ss-fraction 0.45 --time-budget-min 58 \
        --out-dir runs/demo                                   # stopped after the step-700 save
    python scripts/train_demo.py --resume --steps 1800 --ss-fraction 0.325 --time-budget-min 38 --out-dir runs/demo
    python scripts/train_demo.py --resume --steps 2400 --ss-fraction 0.244 --time-budget-min 14 --out-dir runs/demo
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gmg_deploy.data.moving_shapes import SPLIT_SEEDS, MovingDigitsSpec, moving_digits
from gmg_deploy.io import atomic_write_text
from gmg_deploy.model import ModelConfig, build_model, save_lightning_checkpoint

VAL_SEED = SPLIT_SEEDS["val"]  # validation sequences (model selection); the test split uses another seed


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def demo_config(patch_size: int, att_hidden: int, filter_size: int) -> ModelConfig:
    return ModelConfig(
        arch="gmg", in_shape=(20, 1, 32, 32), pre_seq_length=10, aft_seq_length=10, num_hidden=(128, 128),
        att_hidden=att_hidden, filter_size=filter_size, stride=1, patch_size=patch_size, layer_norm=False,
    )


def rollout(model, frames: torch.Tensor, eta: float, gen: torch.Generator) -> torch.Tensor:
    """Outputs of the 19 steps ``(B, 19, C, H, W)`` with scheduled sampling probability ``eta``."""
    cfg = model.config
    pre, total = cfg.pre_seq_length, cfg.total_steps
    B = frames.shape[0]
    state = model.init_state(B)
    outs = []
    x_gen = None
    for t in range(total):
        if t < pre:
            inp = frames[:, t]
        elif eta <= 0.0:
            inp = x_gen
        else:
            use_true = (torch.rand(B, generator=gen) < eta).float().view(B, 1, 1, 1)
            inp = use_true * frames[:, t] + (1 - use_true) * x_gen
        x_gen, state = model.step(inp, state)
        outs.append(x_gen)
    return torch.stack(outs, dim=1)


def validate(model, val: torch.Tensor) -> float:
    """Forecast MSE (summed over pixels, mean over samples and frames) of pure autoregressive prediction."""
    model.eval()
    with torch.no_grad():
        pred = model.predict(val[:, :10])
    model.train()
    return float(((pred - val[:, 10:]) ** 2).sum(dim=(2, 3, 4)).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1, help="cosine decay to lr*this at the end")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--l1-weight", type=float, default=1.0,
                    help="loss = MSE + this * L1 (L1 keeps the background at 0 and shapes sharp)")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--ss-fraction", type=float, default=0.6, help="fraction of steps with scheduled sampling")
    ap.add_argument("--patch-size", type=int, default=8)
    ap.add_argument("--att-hidden", type=int, default=16)
    ap.add_argument("--filter-size", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-seed", type=int, default=SPLIT_SEEDS["train"], help="batch i uses data seed train_seed + i")
    ap.add_argument("--val-n", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-budget-min", type=float, default=0.0, help="stop (and save) after this many minutes")
    ap.add_argument("--out-dir", type=Path, default=Path("runs/demo"))
    ap.add_argument("--resume", action="store_true", help="continue from out-dir/train_state.pt")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    spec = MovingDigitsSpec()
    cfg = demo_config(args.patch_size, args.att_hidden, args.filter_size)
    model = build_model(cfg)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    val = torch.from_numpy(moving_digits(args.val_n, VAL_SEED, spec))
    copy_last = float(((val[:, 9:10] - val[:, 10:]) ** 2).sum(dim=(2, 3, 4)).mean())

    record = {
        "seed": args.seed, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "config": cfg.to_dict(), "num_parameters": n_params,
        "dataset": {**spec.to_dict(), "train_seed_base": args.train_seed, "val_seed": VAL_SEED, "val_n": args.val_n},
        "hardware": {"cpu": cpu_model(), "threads": torch.get_num_threads(), "device": "cpu",
                     "torch": str(torch.__version__), "python": platform.python_version()},
        "loss_curve": [], "val_curve": [], "val_copy_last_mse": copy_last,
        "steps_done": 0, "wall_time_s": 0.0, "best_val_mse": None, "best_step": None,
    }
    start_step, prior_wall = 0, 0.0
    if args.resume and (out / "train_state.pt").exists():
        st = torch.load(out / "train_state.pt", weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        record = st["record"]
        start_step, prior_wall = record["steps_done"], record["wall_time_s"]
        resumed = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        record.setdefault("resumed", []).append({"at_step": start_step, "args": resumed})
        print(f"resumed at step {start_step}", flush=True)

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        frac = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))

    def eta_at(step: int) -> float:
        stop = args.ss_fraction * args.steps
        return max(0.0, 1.0 - step / stop) if stop > 0 else 0.0

    def save(step: int, tag: str) -> None:
        record["steps_done"] = step
        record["wall_time_s"] = prior_wall + (time.time() - t0)
        extra = {"training": {k: v for k, v in record.items() if k not in ("loss_curve", "val_curve")}}
        save_lightning_checkpoint(model, out / f"{tag}.ckpt", **extra)
        if tag == "last":
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                        "record": record}, out / "train_state.pt")
            atomic_write_text(out / "train_record.json", json.dumps(record, indent=1))

    print(f"config {cfg.to_dict()} params {n_params} val copy-last MSE {copy_last:.2f}", flush=True)
    t0 = time.time()
    run_loss, step = 0.0, start_step
    for step in range(start_step, args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        eta = eta_at(step)
        frames = torch.from_numpy(moving_digits(args.batch_size, args.train_seed + step, spec))
        outs = rollout(model, frames, eta, gen)
        target = frames[:, 1:]
        loss = torch.nn.functional.mse_loss(outs, target)
        if args.l1_weight:
            loss = loss + args.l1_weight * torch.nn.functional.l1_loss(outs, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        lv = loss.item()
        run_loss += lv
        record["loss_curve"].append([step + 1, round(lv, 6), round(eta, 4)])
        done = step + 1
        if done % 10 == 0:
            el = prior_wall + time.time() - t0
            print(f"step {done} loss {run_loss / 10:.5f} eta {eta:.3f} lr {lr_at(step):.2e} "
                  f"{el:.0f}s ({(time.time() - t0) / (done - start_step):.2f}s/it)", flush=True)
            run_loss = 0.0
        budget_hit = args.time_budget_min > 0 and (time.time() - t0) / 60 > args.time_budget_min
        if done % args.eval_every == 0 or done == args.steps or budget_hit:
            v = validate(model, val)
            record["val_curve"].append([done, v, eta])
            best = record["best_val_mse"]
            if best is None or v < best:
                record["best_val_mse"], record["best_step"] = v, done
                save(done, "best")
            save(done, "last")
            print(f"  val MSE {v:.3f} (copy-last {copy_last:.3f}, ratio {v / copy_last:.3f}) best "
                  f"{record['best_val_mse']:.3f}@{record['best_step']}", flush=True)
        if budget_hit:
            print(f"time budget reached at step {done}", flush=True)
            break
    print(f"done: {record['steps_done']} steps, {record['wall_time_s']:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
