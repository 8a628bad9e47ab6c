"""Largest parity errors against the reference implementation's golden fixtures (tests/fixtures).

For gmg_tiny and motionrnn_tiny (batch 2, 4 observed + 4 predicted): the PyTorch model in both warp forms
and both batch modes, and the exported ONNX step graph (chained through its state) and sequence graph run in
ONNX Runtime CPU, each against ``all_steps`` (reference batch mode) or ``all_steps_single`` (invariant).

    python benchmarks/parity_report.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import fixture_golden, write_lightning_ckpt  # noqa: E402

from gmg_deploy import load_checkpoint  # noqa: E402
from gmg_deploy.export import build_proto  # noqa: E402
from gmg_deploy.export.metadata import metadata_from_proto  # noqa: E402
from gmg_deploy.export.ort_rollout import make_session, rollout  # noqa: E402


def main() -> None:
    print("| fixture | warp | batch mode | torch predict (all steps) | ORT step chain (forecast) | ORT sequence (forecast) |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    with tempfile.TemporaryDirectory() as d:
        for name in ("gmg_tiny", "motionrnn_tiny"):
            ckpt = write_lightning_ckpt(name, Path(d) / f"{name}.ckpt")
            g = fixture_golden(name)
            frames = g["frames"]
            for warp in ("gridsample", "gather"):
                model = load_checkpoint(ckpt, warp=warp)
                for mode in ("reference", "invariant"):
                    gold_all = g["all_steps"] if mode == "reference" else g["all_steps_single"]
                    gold = g["preds"] if mode == "reference" else g["preds_single"]
                    out = model.predict(torch.from_numpy(frames), all_steps=True,
                                        batch_invariant=mode == "invariant").numpy()
                    errs = [float(np.abs(out - gold_all).max())]
                    for graph in ("step", "sequence"):
                        proto = build_proto(model, graph=graph, batch_mode=mode)
                        pred = rollout(make_session(proto, 2), metadata_from_proto(proto), frames)
                        errs.append(float(np.abs(pred - gold).max()))
                    worst = max(worst, *errs)
                    print(f"| {name} | {warp} | {mode} | " + " | ".join(f"{e:.2e}" for e in errs) + " |")
    print(f"\nlargest error: {worst:.2e} (limit 1e-5)")


if __name__ == "__main__":
    main()
