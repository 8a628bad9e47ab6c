"""What a TensorRT engine must look like for the streaming runtime, checked without TensorRT.

The TensorRT backend describes its engine as :class:`EngineIO` (names, I/O mode, shapes with -1 for
dynamic axes, dtypes, optimisation-profile ranges) and :func:`make_binding_plan` checks it against the
gmg-deploy metadata of the ONNX graph it was built from (read from the ``MODEL.plan.json`` sidecar the
build stage writes). The resulting :class:`BindingPlan` says which shape to set on each input and which
runtime buffer (frame, prediction, state) each tensor is bound to.

Sidecar (``<engine>.json``, e.g. ``model.plan.json``)::

    {"metadata": {...gmg-deploy ONNX metadata...},
     "io": [{"name": "frame", "mode": "input", "shape": [-1, 1, 64, 64], "dtype": "float32"}, ...]}

``onnx_metadata`` is accepted for ``metadata``; ``inputs``/``outputs`` lists of the same records for ``io``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from gmg_deploy.export.metadata import SCHEMA_VERSION, STATE_IN, STATE_OUT, MetadataError

FRAME_IN = "frame"
FRAME_OUT = "next_frame"

#: TensorRT ``DataType`` member names -> NumPy-style names (the build stage's sidecar writes ``FLOAT``...).
TRT_DTYPE_NAMES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
                   "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "float8", "INT4": "int4"}


def normalise_dtype(name: str) -> str:
    """``"FLOAT"``, ``"DataType.HALF"``, ``"float32"`` -> ``"float32"``/``"float16"``/..."""
    short = str(name).split(".")[-1]
    return TRT_DTYPE_NAMES.get(short.upper(), short.lower())


@dataclass(frozen=True)
class TensorSpec:
    """One engine I/O tensor: ``shape`` uses -1 for dynamic axes; ``dtype`` a NumPy-style name."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class EngineIO:
    """An engine's I/O tensors (engine order) and, per input, profile 0's ``(min, opt, max)`` shapes."""

    tensors: tuple[TensorSpec, ...]
    profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    @property
    def inputs(self) -> list[str]:
        return [t.name for t in self.tensors if t.is_input]

    @property
    def outputs(self) -> list[str]:
        return [t.name for t in self.tensors if not t.is_input]

    def spec(self, name: str) -> TensorSpec:
        return next(t for t in self.tensors if t.name == name)


@dataclass(frozen=True)
class Binding:
    """Tensor ``name`` is bound to runtime buffer ``role`` (``frame``, ``pred`` or ``state``) of ``state_name``."""

    name: str
    is_input: bool
    role: str
    state_name: str | None
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class BindingPlan:
    batch_size: int
    bindings: tuple[Binding, ...]

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes to pass to ``set_input_shape`` before the first step."""
        return {b.name: b.shape for b in self.bindings if b.is_input}


# ---------------------------------------------------------------------------------------- sidecar
def _spec_from_record(r: Any, mode: bool | None, where: str) -> TensorSpec:
    try:
        is_input = mode if mode is not None else str(r["mode"]).lower() == "input"
        return TensorSpec(str(r["name"]), bool(is_input), tuple(-1 if d is None else int(d) for d in r["shape"]),
                          normalise_dtype(r["dtype"]))
    except (KeyError, TypeError, ValueError):
        raise MetadataError(f"{where}: an I/O record lacks name/shape/dtype: {str(r)[:80]}; rebuild the engine") from None


def read_sidecar(path: str | Path) -> tuple[dict[str, Any], EngineIO | None]:
    """-> ``(metadata, io described in the sidecar or None)``."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise MetadataError(f"engine sidecar {p} does not exist; rebuild with gmg-build, or pass metadata_path=") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise MetadataError(f"engine sidecar {p} is not valid JSON; rebuild the engine with gmg-build") from None
    if not isinstance(doc, dict):
        raise MetadataError(f"engine sidecar {p} holds no JSON object; rebuild the engine with gmg-build")
    meta = doc.get("metadata") or doc.get("onnx_metadata") or (doc if "schema" in doc else None)
    if not isinstance(meta, dict):
        raise MetadataError(f"engine sidecar {p} has no gmg-deploy metadata; rebuild the engine with gmg-build")
    if meta.get("schema") != SCHEMA_VERSION:
        raise MetadataError(f"engine sidecar {p}: metadata schema {meta.get('schema')} is not {SCHEMA_VERSION}")
    specs: list[TensorSpec] = []
    if isinstance(doc.get("io"), list):
        specs = [_spec_from_record(r, None, str(p)) for r in doc["io"]]
    else:
        for key, mode in (("inputs", True), ("outputs", False)):
            recs = doc.get(key)
            if isinstance(recs, list) and recs and isinstance(recs[0], dict):
                specs += [_spec_from_record(r, mode, str(p)) for r in recs]
    return meta, (EngineIO(tuple(specs)) if specs else None)


# ---------------------------------------------------------------------------------------- checks
def expected_io(meta: dict[str, Any]) -> dict[str, tuple[bool, tuple[int | None, ...], str, str, str | None]]:
    """name -> (is_input, shape with None for a dynamic batch, dtype, role, state name) from the metadata."""
    from gmg_deploy.export.metadata import config_from_metadata

    cfg = config_from_metadata(meta)
    B = meta.get("batch")
    frame = (B, *cfg.frame_shape)
    io_dt, st_dt = meta.get("io_dtype", "float32"), meta.get("state_dtype", "float32")
    out: dict[str, tuple[bool, tuple[int | None, ...], str, str, str | None]] = {
        FRAME_IN: (True, frame, io_dt, "frame", None),
        FRAME_OUT: (False, frame, io_dt, "pred", None),
    }
    for s in meta["state"]:
        shape = tuple(s["shape"])
        out[STATE_IN + s["name"]] = (True, shape, st_dt, "state", s["name"])
        out[STATE_OUT + s["name"]] = (False, shape, st_dt, "state", s["name"])
    return out


def check_engine_io(engine: EngineIO, meta: dict[str, Any], where: str) -> None:
    """The engine's tensor names, modes, shapes and dtypes are those the metadata describes."""
    if meta.get("graph") != "step":
        raise MetadataError(f"{where} was built from a {meta.get('graph')!r} graph; the runtime needs a step graph")
    want = expected_io(meta)
    names = {t.name for t in engine.tensors}
    missing = [n for n in want if n not in names]
    extra = sorted(names - set(want))
    if missing or extra:
        raise MetadataError(
            f"{where}: engine I/O does not match its metadata (missing {missing[:3]}, unexpected {extra[:3]}); "
            "the engine and its .json come from different models - rebuild"
        )
    for t in engine.tensors:
        is_in, shape, dtype, _, _ = want[t.name]
        if t.is_input != is_in:
            raise MetadataError(f"{where}: {t.name} is an engine {'input' if t.is_input else 'output'}, "
                                f"the metadata says {'input' if is_in else 'output'}")
        if t.dtype != dtype:
            raise MetadataError(f"{where}: {t.name} is {t.dtype} in the engine but {dtype} in the metadata; rebuild")
        if len(t.shape) != len(shape) or any(w is not None and d != w for d, w in zip(t.shape, shape)):
            raise MetadataError(f"{where}: {t.name} has engine shape {list(t.shape)}, metadata shape "
                                f"{[-1 if w is None else w for w in shape]}; rebuild the engine")
        if any(d == -1 for d in t.shape[1:]):
            raise MetadataError(f"{where}: {t.name} has a dynamic non-batch axis {list(t.shape)}; "
                                "the runtime needs fixed C,H,W and state shapes")


def make_binding_plan(engine: EngineIO, meta: dict[str, Any], batch_size: int, where: str = "engine") -> BindingPlan:
    """Check ``engine`` against ``meta`` for ``batch_size`` streams and say how to bind it."""
    if batch_size < 1:
        raise MetadataError(f"batch_size={batch_size} must be >= 1")
    check_engine_io(engine, meta, where)
    want = expected_io(meta)
    bindings = []
    for t in engine.tensors:
        _, _, _, role, state_name = want[t.name]
        b0 = t.shape[0]
        if b0 != -1 and b0 != batch_size:
            raise MetadataError(f"{where} has a fixed batch of {b0} ({t.name}); use --batch-size {b0}")
        if t.is_input and b0 == -1:
            rng = engine.profiles.get(t.name)
            if rng is not None:
                lo, hi = rng[0][0], rng[2][0]
                if not lo <= batch_size <= hi:
                    raise MetadataError(
                        f"{where}: batch_size={batch_size} is outside the engine's profile range {lo}..{hi} "
                        f"({t.name}); use a batch in that range or rebuild with a wider profile"
                    )
        bindings.append(Binding(t.name, t.is_input, role, state_name, (batch_size, *t.shape[1:]), t.dtype))
    return BindingPlan(batch_size, tuple(bindings))


def check_sidecar_matches(engine: EngineIO, recorded: EngineIO | None, where: str) -> None:
    """The sidecar's I/O list (when it has one) describes this engine (names, modes, dtypes)."""
    if recorded is None:
        return
    got = {(t.name, t.is_input, t.dtype) for t in engine.tensors}
    rec = {(t.name, t.is_input, t.dtype) for t in recorded.tensors}
    if got != rec:
        diff = sorted(n for n, _, _ in got ^ rec)
        raise MetadataError(f"{where}: the engine's I/O differs from its .json sidecar ({diff[:3]}); "
                            "the sidecar belongs to another engine - rebuild")


def dims_to_tuple(dims: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(d) for d in dims)
