"""ModelConfig: the architecture hyper-parameters of a GMG or MotionRNN model, validated."""
from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from gmg_deploy.errors import ConfigError

ARCHS = ("gmg", "motionrnn")
#: OpenSTL ``method`` names accepted for each architecture (compared case-insensitively).
_METHOD_ALIASES = {"gmg": "gmg", "motionrnn": "motionrnn", "motion_rnn": "motionrnn"}
NEIGHBOUR = 3
MOTION_CHANNELS = 2 * NEIGHBOUR * NEIGHBOUR  # 18: 9 row offsets then 9 column offsets
#: Warp-gate layouts (see the architecture notes, "The neighbourhood warp"); ``auto`` resolves to one of the
#: first two: ``published`` exactly when the motion grid is 9x9 (the only grid the published code runs at).
WARP_GATES = ("motionrnn", "published", "auto")
#: Growth-decay modes: each sample as if run alone (invariant) or OpenSTL's batch-position decay (reference).
BATCH_MODES = ("invariant", "reference")
PUBLISHED_MOTION_GRID = (9, 9)


def _as_int_tuple(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    elif hasattr(value, "tolist"):
        parts = list(value.tolist())
    else:
        raise ConfigError(f"{name}={value!r} is not a list of integers; give e.g. '128,128,128,128'")
    try:
        out = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a list of integers; give e.g. '128,128,128,128'") from None
    if any(float(p) != int(float(p)) for p in parts if not isinstance(p, str)):
        raise ConfigError(f"{name}={value!r} holds non-integer values")
    return out


def normalise_arch(method: Any) -> str:
    """Map an OpenSTL ``method`` string (any case) to ``"gmg"`` or ``"motionrnn"``."""
    key = str(method).strip().lower()
    if key not in _METHOD_ALIASES:
        raise ConfigError(
            f"method/arch {method!r} is not supported; gmg-deploy handles {', '.join(ARCHS)} (any case)"
        )
    return _METHOD_ALIASES[key]


def resolve_warp_gate(warp_gate: Any, motion_grid: tuple[int, int]) -> str:
    """``motionrnn`` / ``published`` for ``warp_gate`` at ``motion_grid``; ``auto`` picks by the grid.

    ``published`` (the published GMG code's transposed gate broadcast) exists only at a 9x9 motion grid.
    """
    value = str(warp_gate).strip().lower() if isinstance(warp_gate, str) else warp_gate
    if value not in WARP_GATES:
        raise ConfigError(f"warp_gate={warp_gate!r} is not a warp-gate layout; choose one of {', '.join(WARP_GATES)}")
    nine = tuple(motion_grid) == PUBLISHED_MOTION_GRID
    if value == "auto":
        return "published" if nine else "motionrnn"
    if value == "published" and not nine:
        hm, wm = motion_grid
        raise ConfigError(
            f"warp_gate='published' is defined only for a 9x9 motion grid, but this model's motion grid is "
            f"{hm}x{wm} (H/p/2, W/p/2); use warp_gate='motionrnn' or 'auto' (CLI: --warp-gate)"
        )
    return value


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a GMG / MotionRNN model (OpenSTL hyper-parameter names).

    ``in_shape`` is ``(T, C, H, W)`` of one sequence; ``num_hidden`` one width per layer.
    Construction validates every constraint of the architecture and raises :class:`ConfigError`.
    """

    arch: str
    in_shape: tuple[int, int, int, int]
    pre_seq_length: int
    aft_seq_length: int
    num_hidden: tuple[int, ...] = (128, 128, 128, 128)
    att_hidden: int = 32
    filter_size: int = 5
    stride: int = 1
    patch_size: int = 4
    layer_norm: bool = False
    #: Warp-gate layout, resolved on construction: ``auto`` becomes ``published`` or ``motionrnn``.
    warp_gate: str = "auto"
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        set_("arch", normalise_arch(self.arch))
        in_shape = _as_int_tuple(self.in_shape, "in_shape")
        if len(in_shape) != 4 or min(in_shape) < 1:
            raise ConfigError(f"in_shape={list(in_shape)} must be four positive integers [T, C, H, W]")
        set_("in_shape", in_shape)
        set_("num_hidden", _as_int_tuple(self.num_hidden, "num_hidden"))
        for name in ("pre_seq_length", "aft_seq_length", "att_hidden", "filter_size", "stride", "patch_size"):
            value = getattr(self, name)
            try:
                ivalue = int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{name}={value!r} is not an integer") from None
            if ivalue != value and not isinstance(value, str):
                raise ConfigError(f"{name}={value!r} is not an integer")
            set_(name, ivalue)
        set_("layer_norm", bool(int(self.layer_norm)))
        self._validate()
        set_("warp_gate", resolve_warp_gate(self.warp_gate, self.motion_grid))

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        T, C, H, W = self.in_shape
        nh = self.num_hidden
        if self.pre_seq_length < 1 or self.aft_seq_length < 1:
            raise ConfigError(
                f"pre_seq_length={self.pre_seq_length}, aft_seq_length={self.aft_seq_length}: both must be >= 1"
            )
        if len(nh) < 2:
            raise ConfigError(f"num_hidden={list(nh)} has {len(nh)} layer(s); GMG/MotionRNN need at least 2")
        if len(set(nh)) != 1:
            raise ConfigError(
                f"num_hidden={list(nh)} must hold one width for every layer "
                "(the spatio-temporal memory passes through all layers)"
            )
        if nh[0] < 4 or nh[0] % 4:
            raise ConfigError(f"num_hidden={nh[0]} must be a positive multiple of 4 (motion features use N/4)")
        if self.arch == "gmg" and nh[0] // 4 != 32:
            raise ConfigError(
                f"num_hidden={nh[0]}: GMG needs N/4 == 32, i.e. num_hidden=128 "
                "(the growth module's linear layers take 32 inputs)"
            )
        if self.arch == "gmg" and self.att_hidden < 1:
            raise ConfigError(f"att_hidden={self.att_hidden} must be >= 1")
        if self.filter_size < 1 or self.filter_size % 2 == 0:
            raise ConfigError(f"filter_size={self.filter_size} must be a positive odd integer")
        if self.stride != 1:
            raise ConfigError(f"stride={self.stride}: only stride 1 keeps the recurrent state's shape; use 1")
        p = self.patch_size
        if p < 1:
            raise ConfigError(f"patch_size={p} must be >= 1")
        if H % p or W % p:
            raise ConfigError(f"in_shape H,W=({H},{W}) must be divisible by patch_size={p}")
        h, w = H // p, W // p
        if h % 2 or w % 2:
            raise ConfigError(
                f"grid (H/p, W/p)=({h},{w}) must be even (the motion branch halves and doubles it); "
                f"pick H, W, patch_size so that H/p and W/p are even"
            )

    # ------------------------------------------------------------------ derived sizes
    @property
    def num_layers(self) -> int:
        return len(self.num_hidden)

    @property
    def hidden(self) -> int:
        return self.num_hidden[0]

    @property
    def channels(self) -> int:
        return self.in_shape[1]

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one raw frame."""
        return tuple(self.in_shape[1:])  # type: ignore[return-value]

    @property
    def grid(self) -> tuple[int, int]:
        """``(h, w)``: the patch grid."""
        return self.in_shape[2] // self.patch_size, self.in_shape[3] // self.patch_size

    @property
    def motion_grid(self) -> tuple[int, int]:
        h, w = self.grid
        return h // 2, w // 2

    @property
    def patch_channels(self) -> int:
        return self.patch_size * self.patch_size * self.in_shape[1]

    @property
    def total_steps(self) -> int:
        """Recurrent steps of one OpenSTL test sequence: ``pre + aft - 1``."""
        return self.pre_seq_length + self.aft_seq_length - 1

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        d["in_shape"] = list(self.in_shape)
        d["num_hidden"] = list(self.num_hidden)
        return d

    def to_hparams(self) -> dict[str, Any]:
        """OpenSTL-style hyper-parameters (what a Lightning checkpoint holds)."""
        return {
            "method": self.arch,
            "in_shape": list(self.in_shape),
            "pre_seq_length": self.pre_seq_length,
            "aft_seq_length": self.aft_seq_length,
            "total_length": self.pre_seq_length + self.aft_seq_length,
            "num_hidden": ",".join(str(n) for n in self.num_hidden),
            "att_hidden": self.att_hidden,
            "filter_size": self.filter_size,
            "stride": self.stride,
            "patch_size": self.patch_size,
            "layer_norm": int(self.layer_norm),
            "warp_gate": self.warp_gate,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown model config field(s) {sorted(unknown)}; expected {sorted(names)}")
        return cls(**dict(d))

    @classmethod
    def from_hparams(
        cls,
        hparams: Mapping[str, Any],
        *,
        arch: str | None = None,
        in_shape: Sequence[int] | None = None,
        pre_seq_length: int | None = None,
        aft_seq_length: int | None = None,
        warp_gate: str | None = None,
        source: str = "hyper_parameters",
    ) -> "ModelConfig":
        """Build from OpenSTL hyper-parameters (checkpoint ``hyper_parameters`` or a config file).

        Explicit keyword arguments override the corresponding hyper-parameter. ``warp_gate`` defaults to
        the hyper-parameter of that name (written by gmg-deploy's own checkpoints), else ``auto``.
        """
        hp = dict(hparams)
        method = arch if arch is not None else hp.get("method")
        if method is None:
            raise ConfigError(f"{source} has no 'method'; pass arch='gmg' or arch='motionrnn' (CLI: --arch)")
        shape = in_shape if in_shape is not None else hp.get("in_shape")
        pre = pre_seq_length if pre_seq_length is not None else hp.get("pre_seq_length")
        aft = aft_seq_length if aft_seq_length is not None else hp.get("aft_seq_length")
        missing = [n for n, v in (("in_shape", shape), ("pre_seq_length", pre), ("aft_seq_length", aft)) if v is None]
        if missing:
            raise ConfigError(
                f"{source} lacks {', '.join(missing)}; pass them explicitly (CLI: --in-shape T,C,H,W --pre N --aft N)"
            )
        kwargs: dict[str, Any] = {}
        for name in ("num_hidden", "att_hidden", "filter_size", "stride", "patch_size", "layer_norm", "warp_gate"):
            if name in hp and hp[name] is not None:
                kwargs[name] = hp[name]
        if warp_gate is not None:
            kwargs["warp_gate"] = warp_gate
        if "num_hidden" not in kwargs:
            raise ConfigError(f"{source} has no 'num_hidden' (e.g. '128,128,128,128')")
        if "patch_size" not in kwargs:
            raise ConfigError(f"{source} has no 'patch_size'")
        if "filter_size" not in kwargs:
            raise ConfigError(f"{source} has no 'filter_size'")
        if normalise_arch(method) == "gmg" and "att_hidden" not in kwargs:
            raise ConfigError(f"{source} has no 'att_hidden' (GMG's attention width)")
        extra = {k: v for k, v in hp.items() if k not in kwargs}
        return cls(arch=method, in_shape=shape, pre_seq_length=pre, aft_seq_length=aft, extra=extra, **kwargs)

    @classmethod
    def from_config_file(
        cls,
        path: str | Path,
        *,
        in_shape: Sequence[int] | None = None,
        pre_seq_length: int | None = None,
        aft_seq_length: int | None = None,
        arch: str | None = None,
        warp_gate: str | None = None,
    ) -> "ModelConfig":
        """Build from an OpenSTL config file (``configs/<data>/GMG.py``) without executing it."""
        return cls.from_hparams(
            parse_config_file(path),
            arch=arch,
            warp_gate=warp_gate,
            in_shape=in_shape,
            pre_seq_length=pre_seq_length,
            aft_seq_length=aft_seq_length,
            source=f"config file {path}",
        )


def parse_config_file(path: str | Path) -> dict[str, Any]:
    """Read the top-level ``name = literal`` assignments of an OpenSTL config file.

    The file is parsed with :mod:`ast`, never executed; assignments whose value is not a plain literal
    are skipped.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text; give an OpenSTL configs/<data>/<METHOD>.py") from None
    try:
        tree = ast.parse(text, filename=str(p))
    except SyntaxError as e:
        raise ConfigError(f"config file {p} line {e.lineno}: not valid Python ({e.msg})") from None
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    if not out:
        raise ConfigError(f"config file {p} has no 'name = value' assignments; is it an OpenSTL config?")
    return out
