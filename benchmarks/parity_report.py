"""Largest parity errors against the reference implementation's golden fixtures (tests/fixtures).

For gmg_tiny and motionrnn_tiny (batch 2, 4 observed + 4 predicted) and gmg_pub9 and motionrnn_pub9 (batch 2,
3 + 3, 9x9 motion grid, made by the published GMG code): the PyTorch model in both warp forms and both batch
modes, and the exported ONNX step graph (chained through its state) and sequence graph run in ONNX Runtime
CPU, each against ``all_steps`` (reference batch mode) or ``all_steps_single`` (invariant), with the
warp-gate layout ``auto`` resolves to. A second table shows the effect of the wrong layout: the same errors
with the other layout forced (``published`` is defined only at a 9x9 motion grid, so for ``*_pub9`` only).

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
from gmg_deploy.graph.metadata import metadata_from_proto  # noqa: E402
from gmg_deploy.evaluate.ort_session import make_session  # noqa: E402
from gmg_deploy.evaluate.rollout import rollout  # noqa: E402


FIXTURES = ("gmg_tiny", "motionrnn_tiny", "gmg_pub9", "motionrnn_pub9")
HEAD = ("| fixture | warp gate | warp | batch mode | torch predict (all steps) | ORT step chain (forecast) "
        "| ORT sequence (forecast) |\n|---|---|---|---|---|---|---|")


def main() -> None:
    print(HEAD)
    worst = 0.0
    with tempfile.TemporaryDirectory() as d:
        for name in FIXTURES:
            worst = max(worst, _rows(name, Path(d), "auto"))
        print(f"\nlargest error: {worst:.2e} (limit 1e-5)")
        print("\nwrong warp-gate layout (the pub9 goldens need 'published'):\n")
        print(HEAD)
        smallest = min(_rows(name, Path(d), "motionrnn") for name in ("gmg_pub9", "motionrnn_pub9"))
        print(f"\nwrong layout: every entry misses its golden by at least {smallest:.2e}")


def _rows(name: str, d: Path, warp_gate: str) -> float:
    """Print one row per warp form and batch mode; return the largest error (``auto``) or the smallest."""
    ckpt = write_lightning_ckpt(name, d / f"{name}.ckpt")
    g = fixture_golden(name)
    frames = g["frames"]
    errs_all: list[float] = []
    for warp in ("gridsample", "gather"):
        model = load_checkpoint(ckpt, warp=warp, warp_gate=warp_gate)
        for mode in ("reference", "invariant"):
            gold_all = g["all_steps"] if mode == "reference" else g["all_steps_single"]
            gold = g["preds"] if mode == "reference" else g["preds_single"]
            out = model.predict(torch.from_numpy(frames), all_steps=True, batch_mode=mode).numpy()
            errs = [float(np.abs(out - gold_all).max())]
            for graph in ("step", "sequence"):
                proto = build_proto(model, graph=graph, batch_mode=mode)
                pred = rollout(make_session(proto, 2), metadata_from_proto(proto), frames)
                errs.append(float(np.abs(pred - gold).max()))
            errs_all += errs
            print(f"| {name} | {model.warp_gate} | {warp} | {mode} | " + " | ".join(f"{e:.2e}" for e in errs) + " |")
    return max(errs_all) if warp_gate == "auto" else min(errs_all)


if __name__ == "__main__":
    main()
