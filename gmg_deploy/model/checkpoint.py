"""Loading OpenSTL checkpoints (Lightning ``.ckpt`` or bare state dicts) safely.

Checkpoints are pickles. They are read with ``torch.load(weights_only=True)`` plus an allowlist of NumPy
array/scalar types (OpenSTL stores ``test_mean``/``test_std`` as arrays); anything else is refused unless
the caller passes ``trust_checkpoint=True``.
"""
from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gmg_deploy.checks import check_finite_tensors
from gmg_deploy.errors import CheckpointError, ConfigError
from gmg_deploy.model.config import ModelConfig
from gmg_deploy.model.network import RecurrentPredictor

_PREFIXES = ("model.", "module.")
_MAX_LISTED = 5


def _numpy_safe_globals() -> list[Any]:
    """NumPy globals an array/scalar pickle references, under NumPy 1.x and 2.x module names."""
    try:
        from numpy._core import multiarray as ma
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
    out: list[Any] = [np.ndarray, np.dtype]
    for fn in ("_reconstruct", "scalar"):
        obj = getattr(ma, fn)
        out += [obj, (obj, f"numpy.core.multiarray.{fn}"), (obj, f"numpy._core.multiarray.{fn}")]
    # dtype classes (NumPy >= 1.25 pickles dtypes via numpy.dtypes.*DType)
    dtypes_mod = getattr(np, "dtypes", None)
    if dtypes_mod is not None:
        out += [getattr(dtypes_mod, n) for n in dir(dtypes_mod) if n.endswith("DType")]
    return out


def read_checkpoint_file(path: str | Path, *, trust_checkpoint: bool = False) -> Any:
    """Unpickle a checkpoint file without executing code (unless ``trust_checkpoint``)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a directory; give the .ckpt/.pth file (e.g. checkpoints/best.ckpt)")
    if not os.access(p, os.R_OK):
        raise CheckpointError(f"checkpoint {p} is not readable (permission denied)")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes); re-copy or re-save it")
    try:
        if trust_checkpoint:
            return torch.load(p, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        glob = _unsupported_global(str(e))
        if glob is not None:
            raise CheckpointError(
                f"checkpoint {p} would run code when loaded: its pickle calls the global {glob}, which is not a "
                "tensor or array; refused. If you trust its source, pass trust_checkpoint=True (CLI: --trust-checkpoint)"
            ) from None
        raise CheckpointError(_not_a_checkpoint(p)) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, AttributeError, ImportError,
            ModuleNotFoundError, TypeError, KeyError, IndexError) as e:
        if isinstance(e, ModuleNotFoundError) and trust_checkpoint:
            raise CheckpointError(f"checkpoint {p} references module {e.name!r}, which is not installed") from None
        raise CheckpointError(_not_a_checkpoint(p)) from None


def _unsupported_global(msg: str) -> str | None:
    """The global named in torch's weights_only refusal (``posix.system``, ``eval``), or None."""
    m = re.search(r"GLOBAL\s+([A-Za-z_][\w.]*)", msg)
    return m.group(1).rstrip(".") if m else None


def _not_a_checkpoint(p: Path) -> str:
    kind = "truncated or corrupt" if zipfile.is_zipfile(p) or _starts_like_zip(p) else "not a PyTorch checkpoint"
    return f"checkpoint {p} cannot be read: {kind} (expected a Lightning .ckpt or a torch.save'd state dict)"


def _starts_like_zip(p: Path) -> bool:
    with open(p, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def split_checkpoint(obj: Any, where: str) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """-> ``(state_dict without prefixes, hyper_parameters or None)``."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where} holds a {type(obj).__name__}, not a checkpoint dict or state dict")
    hparams = obj.get("hyper_parameters") if "state_dict" in obj else None
    sd = obj["state_dict"] if "state_dict" in obj else obj
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{where}: 'state_dict' is a {type(sd).__name__}, not a mapping of tensors")
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{where} contains no tensors; is it a GMG/MotionRNN checkpoint?")
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        key = k
        changed = True
        while changed:
            changed = False
            for pref in _PREFIXES:
                if key.startswith(pref):
                    key, changed = key[len(pref):], True
        out[key] = v
    if hparams is not None and not isinstance(hparams, Mapping):
        hparams = dict(vars(hparams)) if hasattr(hparams, "__dict__") else None
    return out, (dict(hparams) if hparams is not None else None)


def check_state_dict(model: RecurrentPredictor, sd: Mapping[str, torch.Tensor], where: str) -> None:
    """One error listing the first few missing, unexpected and mis-shaped keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shaped = [
        f"{k} {tuple(sd[k].shape)} != {tuple(expected[k].shape)}"
        for k in expected
        if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
        if items:
            more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:_MAX_LISTED])}{more}")
    if problems:
        cfg = model.config
        raise CheckpointError(
            f"{where} does not match the configuration (arch={cfg.arch}, num_hidden={list(cfg.num_hidden)}, "
            f"in_shape={list(cfg.in_shape)}, patch_size={cfg.patch_size}, filter_size={cfg.filter_size}): "
            + "; ".join(problems)
            + ". Check --config-file/--in-shape/--arch against the run that trained it"
        )


def _as_numpy(v: Any) -> np.ndarray | None:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def load_checkpoint(
    path: str | Path,
    *,
    config_file: str | Path | None = None,
    in_shape: Sequence[int] | None = None,
    pre_seq_length: int | None = None,
    aft_seq_length: int | None = None,
    arch: str | None = None,
    warp: str = "gridsample",
    warp_gate: str | None = None,
    trust_checkpoint: bool = False,
) -> RecurrentPredictor:
    """Load a GMG / MotionRNN model from an OpenSTL checkpoint.

    Accepts a Lightning ``.ckpt`` (``state_dict`` with ``model.`` prefix and ``hyper_parameters``) or a bare
    state dict (``.pth``, optionally ``module.``-prefixed), whose configuration then comes from
    ``config_file`` (an OpenSTL ``configs/<data>/GMG.py``) plus ``in_shape``/``pre``/``aft``. Explicit
    arguments override the checkpoint's hyper-parameters. ``warp_gate`` (``motionrnn``, ``published`` or
    ``auto``; default: the checkpoint's ``warp_gate`` hyper-parameter if any, else ``auto``) selects the
    warp-gate layout; ``model.config.warp_gate`` holds the resolved one. Returns the model in eval mode with
    ``.config``, ``.test_mean`` and ``.test_std``.
    """
    where = f"checkpoint {path}"
    obj = read_checkpoint_file(path, trust_checkpoint=trust_checkpoint)
    sd, hparams = split_checkpoint(obj, where)
    overrides = dict(arch=arch, in_shape=in_shape, pre_seq_length=pre_seq_length, aft_seq_length=aft_seq_length,
                     warp_gate=warp_gate)
    if config_file is not None:
        config = ModelConfig.from_config_file(config_file, **overrides)
    elif hparams:
        config = ModelConfig.from_hparams(hparams, source=f"{where} hyper_parameters", **overrides)
    else:
        raise ConfigError(
            f"{where} is a bare state dict without hyper-parameters; pass config_file= (an OpenSTL "
            "configs/<data>/GMG.py) and in_shape=, pre_seq_length=, aft_seq_length= "
            "(CLI: --config-file F --in-shape T,C,H,W --pre N --aft N)"
        )
    model = RecurrentPredictor(config, warp=warp)
    check_state_dict(model, sd, where)
    check_finite_tensors(((k, v.detach().float().numpy()) for k, v in sd.items() if v.is_floating_point()), where)
    model.load_state_dict(sd, strict=True)
    hp = hparams or {}
    model.test_mean = _as_numpy(hp.get("test_mean"))
    model.test_std = _as_numpy(hp.get("test_std"))
    model.eval()
    return model


def save_lightning_checkpoint(model: RecurrentPredictor, path: str | Path, **extra_hparams: Any) -> None:
    """Write ``model`` as an OpenSTL-style Lightning checkpoint (atomically)."""
    from gmg_deploy.io import atomic_write_bytes

    hp = model.config.to_hparams()
    hp.update(extra_hparams)
    obj = {
        "state_dict": {"model." + k: v.detach().cpu() for k, v in model.state_dict().items()},
        "hyper_parameters": hp,
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": "2.2.1",
    }
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
