"""The one definition of an exported graph's I/O contract: names, order, shapes, dtypes (:class:`GraphSignature`).

Floor 2 (the graph contract): imports ``model`` and the utilities only.

Graph kinds and their I/O (``B`` = batch, ``None`` in a shape when the batch axis is dynamic)::

    step      frame (B,C,H,W), state_in.<name>...  -> next_frame (B,C,H,W), state_out.<name>...
    sequence  frames (B,pre,C,H,W)                 -> preds (B,aft,C,H,W)
    forecast  frame (B,C,H,W), state_in.<name>...  -> forecast (B,K,C,H,W), state_out.<name>...

State tensors come in the model's fixed order (:func:`gmg_deploy.model.network.state_shapes`); feed
each ``state_out.X`` back as ``state_in.X`` (zeros start). Build a signature from a :class:`ModelConfig`
(:meth:`GraphSignature.from_config`, what the exporter does) or from a graph's gmg-deploy metadata
(:meth:`GraphSignature.from_metadata`, what the runtime and the engine builder do); every module that
names, orders or shapes graph I/O asks it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gmg_deploy.model.config import ModelConfig
from gmg_deploy.model.network import state_shapes

FRAME = "frame"
NEXT_FRAME = "next_frame"
FRAMES = "frames"
PREDS = "preds"
FORECAST = "forecast"
STATE_IN = "state_in."
STATE_OUT = "state_out."

#: Graph kinds a signature describes (``forecast``: K autoregressive steps in one call).
GRAPH_KINDS = ("step", "sequence", "forecast")
#: Dtype names of graph I/O (metadata ``io_dtype``/``state_dtype``).
DTYPES = ("float32", "float16")

Shape = tuple  # tuple[int | None, ...]: None marks a dynamic batch axis


@dataclass(frozen=True)
class TensorSig:
    """One graph input or output: ``role`` is ``frame``/``pred``/``state``/``frames``/``preds``/``forecast``."""

    name: str
    is_input: bool
    shape: Shape
    dtype: str
    role: str
    state_name: str | None = None


@dataclass(frozen=True)
class GraphSignature:
    """Names, order, shapes and dtypes of one exported graph's inputs and outputs (any kind: step, sequence,
    forecast; ``StepSignature`` is its old name).

    ``state`` holds ``(name, per-sample shape)`` in the fixed state order; ``batch`` is the graph's
    batch (``None``: dynamic). ``horizon`` is K of a forecast graph (``None`` for the other kinds).
    """

    graph: str
    frame_shape: tuple[int, int, int]
    state: tuple[tuple[str, tuple[int, ...]], ...]
    pre: int
    aft: int
    batch: int | None = None
    io_dtype: str = "float32"
    state_dtype: str = "float32"
    horizon: int | None = None

    def __post_init__(self) -> None:
        if self.graph not in GRAPH_KINDS:
            raise ValueError(f"graph={self.graph!r}; a signature describes one of {', '.join(GRAPH_KINDS)}")
        for d in (self.io_dtype, self.state_dtype):
            if d not in DTYPES:
                raise ValueError(f"dtype {d!r} is not one of {', '.join(DTYPES)}")
        if self.graph == "forecast" and (self.horizon is None or int(self.horizon) < 1):
            raise ValueError(f"a forecast graph needs a horizon K >= 1, got {self.horizon!r}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls,
        config: ModelConfig,
        graph: str = "step",
        *,
        batch: int | None = None,
        io_dtype: str = "float32",
        state_dtype: str = "float32",
        horizon: int | None = None,
    ) -> "GraphSignature":
        """The signature of ``graph`` exported from a model with ``config``."""
        shapes = state_shapes(config, 1)
        return cls(
            graph=graph,
            frame_shape=tuple(int(d) for d in config.frame_shape),
            state=tuple((n, tuple(int(d) for d in s[1:])) for n, s in shapes.items()),
            pre=int(config.pre_seq_length),
            aft=int(config.aft_seq_length),
            batch=batch,
            io_dtype=io_dtype,
            state_dtype=state_dtype,
            horizon=horizon if graph == "forecast" else None,
        )

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> "GraphSignature":
        """The signature a graph's gmg-deploy metadata describes (its ``state`` list gives order and shapes)."""
        cfg = meta["config"]
        graph = meta.get("graph", "step")
        return cls(
            graph=graph,
            frame_shape=tuple(int(d) for d in cfg["in_shape"][1:]),
            state=tuple((str(s["name"]), tuple(int(d) for d in s["shape"][1:])) for s in meta["state"]),
            pre=int(cfg["pre_seq_length"]),
            aft=int(cfg["aft_seq_length"]),
            batch=None if meta.get("batch") is None else int(meta["batch"]),
            io_dtype=meta.get("io_dtype", "float32"),
            state_dtype=meta.get("state_dtype", "float32"),
            horizon=(int(meta.get("horizon") or cfg["aft_seq_length"]) if graph == "forecast" else None),
        )

    # ------------------------------------------------------------------ names
    @property
    def state_names(self) -> list[str]:
        return [n for n, _ in self.state]

    @property
    def has_state(self) -> bool:
        """Step and forecast graphs carry the state as explicit inputs/outputs; the sequence graph does not."""
        return self.graph != "sequence"

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs()]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs()]

    @property
    def frame_input(self) -> str:
        return FRAMES if self.graph == "sequence" else FRAME

    @property
    def frame_output(self) -> str:
        return {"step": NEXT_FRAME, "sequence": PREDS, "forecast": FORECAST}[self.graph]

    # ------------------------------------------------------------------ tensors
    def _b(self, batch: int | None) -> int | None:
        return self.batch if batch is None else int(batch)

    def inputs(self, batch: int | None = None) -> list[TensorSig]:
        """Inputs in graph order; shapes for ``batch`` (default: the graph's own, None when dynamic)."""
        B = self._b(batch)
        C, H, W = self.frame_shape
        if self.graph == "sequence":
            return [TensorSig(FRAMES, True, (B, self.pre, C, H, W), self.io_dtype, "frames")]
        return [TensorSig(FRAME, True, (B, C, H, W), self.io_dtype, "frame")] + [
            TensorSig(STATE_IN + n, True, (B, *s), self.state_dtype, "state", n) for n, s in self.state
        ]

    def outputs(self, batch: int | None = None) -> list[TensorSig]:
        """Outputs in graph order; shapes for ``batch`` (default: the graph's own, None when dynamic)."""
        B = self._b(batch)
        C, H, W = self.frame_shape
        if self.graph == "sequence":
            return [TensorSig(PREDS, False, (B, self.aft, C, H, W), self.io_dtype, "preds")]
        if self.graph == "forecast":
            first = TensorSig(FORECAST, False, (B, int(self.horizon), C, H, W), self.io_dtype, "forecast")
        else:
            first = TensorSig(NEXT_FRAME, False, (B, C, H, W), self.io_dtype, "pred")
        return [first] + [TensorSig(STATE_OUT + n, False, (B, *s), self.state_dtype, "state", n)
                          for n, s in self.state]

    def tensors(self, batch: int | None = None) -> list[TensorSig]:
        """Inputs then outputs."""
        return self.inputs(batch) + self.outputs(batch)

    def by_name(self, batch: int | None = None) -> dict[str, TensorSig]:
        return {t.name: t for t in self.tensors(batch)}

    def shapes(self, batch: int | None = None) -> dict[str, Shape]:
        """Every input and output name -> its shape for ``batch``."""
        return {t.name: t.shape for t in self.tensors(batch)}

    def state_shapes(self, batch: int) -> "dict[str, tuple[int, ...]]":
        """State name -> ``(batch, ...)`` in the fixed order (the runtime's buffer layout)."""
        return {n: (int(batch), *s) for n, s in self.state}

    def state_records(self) -> list[dict[str, Any]]:
        """The metadata ``state`` list: ``[{"name", "shape": [batch or None, ...]}, ...]``."""
        return [{"name": n, "shape": [self.batch, *s]} for n, s in self.state]

    def matches(self, inputs: list[str], outputs: list[str]) -> bool:
        """A graph with these input/output names (in order) has this signature's names."""
        return list(inputs) == self.input_names and list(outputs) == self.output_names


def state_in(name: str) -> str:
    """State ``name`` -> its input tensor name ``state_in.<name>``."""
    return STATE_IN + name


def state_out(name: str) -> str:
    """State ``name`` -> its output tensor name ``state_out.<name>``."""
    return STATE_OUT + name


def state_name(tensor: str) -> str | None:
    """``state_in.X`` or ``state_out.X`` -> ``X``; ``None`` for a tensor that is no state input/output."""
    for prefix in (STATE_IN, STATE_OUT):
        if tensor.startswith(prefix):
            return tensor[len(prefix):]
    return None


#: The old name (it always described every graph kind, not only the step graph).
StepSignature = GraphSignature
