"""An engine's I/O tensors as plain data (:class:`EngineIO`), as TensorRT reports them or a sidecar records them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

#: TensorRT ``DataType`` member names -> NumPy-style names (the build stage's sidecar writes ``FLOAT``...).
TRT_DTYPE_NAMES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
                   "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "float8", "INT4": "int4"}


def normalise_dtype(name: str) -> str:
    """``"FLOAT"``, ``"DataType.HALF"``, ``"float32"`` -> ``"float32"``/``"float16"``/..."""
    short = str(name).split(".")[-1]
    return TRT_DTYPE_NAMES.get(short.upper(), short.lower())


def dims_to_tuple(dims: Sequence[int]) -> tuple[int, ...]:
    """TensorRT ``Dims`` (or any sequence of ints) -> a tuple (-1 stays -1: a dynamic axis)."""
    return tuple(int(d) for d in dims)


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
