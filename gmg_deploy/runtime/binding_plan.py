"""What a TensorRT engine must look like for the streaming runtime, checked without TensorRT.

The TensorRT backend describes its engine as :class:`gmg_deploy.trt.engine_io.EngineIO` (names, I/O
mode, shapes with -1 for dynamic axes, dtypes, optimisation-profile ranges) and :func:`make_binding_plan`
checks it against the :class:`gmg_deploy.graph.signature.GraphSignature` of the gmg-deploy metadata it was
built from (read from the ``MODEL.plan.json`` sidecar by :func:`gmg_deploy.trt.sidecar.read_sidecar`).
The resulting :class:`BindingPlan` says which shape to set on each input and which runtime buffer (frame,
prediction, state) each tensor is bound to.
"""
from __future__ import annotations

from dataclasses import dataclass

from gmg_deploy.trt.engine_io import EngineIO
from gmg_deploy.graph.metadata import MetadataError, MetadataLike, signature_of
from gmg_deploy.graph.signature import TensorSig


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


# ---------------------------------------------------------------------------------------- checks
def expected_io(meta: MetadataLike) -> dict[str, TensorSig]:
    """name -> what the metadata's step signature says of it (shape with None for a dynamic batch, dtype, role)."""
    return signature_of(meta).by_name()


def check_engine_io(engine: EngineIO, meta: MetadataLike, where: str) -> None:
    """The engine's tensor names, modes, shapes and dtypes are those the metadata describes."""
    sig = signature_of(meta)
    if sig.graph != "step":
        raise MetadataError(f"{where} was built from a {sig.graph!r} graph; the runtime needs a step graph")
    want = sig.by_name()
    names = {t.name for t in engine.tensors}
    missing = [n for n in want if n not in names]
    extra = sorted(names - set(want))
    if missing or extra:
        raise MetadataError(
            f"{where}: engine I/O does not match its metadata (missing {missing[:3]}, unexpected {extra[:3]}); "
            "the engine and its .json come from different models - rebuild"
        )
    for t in engine.tensors:
        is_in, shape, dtype = want[t.name].is_input, want[t.name].shape, want[t.name].dtype
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


def make_binding_plan(engine: EngineIO, meta: MetadataLike, batch_size: int, where: str = "engine") -> BindingPlan:
    """Check ``engine`` against ``meta`` for ``batch_size`` streams and say how to bind it."""
    if batch_size < 1:
        raise MetadataError(f"batch_size={batch_size} must be >= 1")
    check_engine_io(engine, meta, where)
    want = expected_io(meta)
    bindings = []
    for t in engine.tensors:
        role, state_name = want[t.name].role, want[t.name].state_name
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

