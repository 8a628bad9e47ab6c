"""Known TensorRT pitfalls as data: version range, graph pattern, source issue, advice (``gmg-build``, ``gmg-doctor``).

:data:`PITFALLS` is the one table. :func:`pitfalls_for` lists the rows that apply to a graph (its gmg-deploy
metadata, :class:`gmg_deploy.graph.metadata.GraphMetadata` or its dict) on a TensorRT version; :func:`pitfalls_in` the
rows whose version range holds a version (``gmg-doctor``). A row with ``requires_verify`` means: an engine
built from such a graph must be checked against ONNX Runtime FP32 on real data (``gmg-build --verify``).

Version ranges are comma-separated clauses, all of which must hold: ``">=10.14.1.48"``, ``">=10.0,<10.3"``;
``""`` or ``"*"`` is every version. Versions compare numerically component by component, missing components
being 0 (``"10.14.1"`` is ``10.14.1.0``, ``"11.1"`` is ``11.1.0.0``); a suffix such as ``"11.0.0b1"`` or
``"10.9.0.34+cuda12"`` is ignored after the leading digits of its component.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from gmg_deploy.errors import InputError
from gmg_deploy.export.trt_lint import GRIDSAMPLE_BAD_OPSET
from gmg_deploy.graph.metadata import GraphMetadata, MetadataLike, as_metadata


@dataclass(frozen=True)
class Pitfall:
    """One known TensorRT problem: for which ``versions``, on which graph ``pattern``, from which ``source``,
    and what to do (``advice``); ``requires_verify``: an engine of such a graph must be verified on data."""

    id: str
    versions: str
    pattern: str
    source: str
    advice: str
    requires_verify: bool

    def __str__(self) -> str:
        return f"{self.id} (TensorRT {self.versions or '*'}, {self.source}): {self.pattern}; {self.advice}"


def _fp16_with_fp32_gridsample(meta: GraphMetadata, opset: int | None) -> bool:
    """An FP16 graph whose GridSample sits in the FP32 warp island (``fp32_islands.warp``; graphs that do not
    record their islands were made with the default ones, which include the warp)."""
    if meta.precision != "fp16" or meta.warp != "gridsample":
        return False
    islands = meta.fp32_islands
    if not isinstance(islands, dict):
        return True
    return bool(islands.get("warp"))


def _gridsample_at_bad_opset(meta: GraphMetadata, opset: int | None) -> bool:
    """A GridSample graph at opset >= 20 (only known when the opset is given or recorded in the metadata)."""
    opset = opset if opset is not None else meta.opset
    return meta.warp == "gridsample" and opset is not None and int(opset) >= GRIDSAMPLE_BAD_OPSET


#: The table: (pitfall, does its graph pattern match ``(meta, opset)``).
_TABLE: tuple[tuple[Pitfall, Callable[[GraphMetadata, int | None], bool]], ...] = (
    (Pitfall(
        id="fp16-fp32-gridsample",
        versions=">=10.14.1.48",
        pattern="FP16 strongly typed graph with GridSample kept in FP32 (the FP32 warp island: "
                "gmg-export --precision fp16 --warp gridsample)",
        source="pytorch/TensorRT#4074",
        advice="TensorRT may compute that GridSample wrongly: verify the engine against ONNX Runtime FP32 on "
               "your data (gmg-build --verify DATA), or export with gmg-export --warp gather (no GridSample in "
               "the graph; see benchmarks/warp_forms.py for its cost)",
        requires_verify=True,
    ), _fp16_with_fp32_gridsample),
    (Pitfall(
        id="gridsample-opset20-modes",
        versions=">=10.0",
        pattern=f"GridSample in a graph of opset >= {GRIDSAMPLE_BAD_OPSET} (modes renamed linear/cubic)",
        source="NVIDIA/TensorRT#4646",
        advice="TensorRT reads the renamed modes as nearest: export at opset 16-19 (gmg-export --opset 17); "
               "the TensorRT lint (check_tensorrt_compat) refuses such graphs",
        requires_verify=False,
    ), _gridsample_at_bad_opset),
)

#: Every known pitfall, in table order.
PITFALLS: tuple[Pitfall, ...] = tuple(p for p, _ in _TABLE)

_OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
        "<": lambda a, b: a < b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
_CLAUSE = re.compile(r"^(>=|<=|==|!=|>|<)?\s*(\S+)$")


def parse_version(version: str) -> tuple[int, ...]:
    """``"10.14.1.48"`` -> ``(10, 14, 1, 48)``; ``"11.1"`` -> ``(11, 1)``; raises :class:`InputError` when the
    string does not start with a number (``"unknown"``)."""
    parts = []
    for comp in str(version).strip().split("."):
        m = re.match(r"\d+", comp)
        if not m:
            break
        parts.append(int(m.group()))
        if m.end() != len(comp):  # "0b1", "34+cuda12": the rest is a suffix
            break
    if not parts:
        raise InputError(f"TensorRT version {version!r} is not a version number like 10.14.1.48")
    return tuple(parts)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as version ``a`` is older than, equal to or newer than ``b`` (missing components are 0)."""
    va, vb = parse_version(a), parse_version(b)
    n = max(len(va), len(vb))
    va, vb = va + (0,) * (n - len(va)), vb + (0,) * (n - len(vb))
    return (va > vb) - (va < vb)


def version_in(version: str, spec: str) -> bool:
    """Whether ``version`` satisfies every comma-separated clause of ``spec`` (``""``/``"*"``: always)."""
    for clause in (c.strip() for c in str(spec).split(",")):
        if clause in ("", "*"):
            continue
        m = _CLAUSE.match(clause)
        if not m:
            raise InputError(f"version range clause {clause!r} is not like '>=10.14.1.48'")
        op = m.group(1) or "=="
        if not _OPS[op](compare_versions(version, m.group(2)), 0):
            return False
    return True


def _version_matches(trt_version: str | None, spec: str) -> bool:
    """An unknown or unreadable version matches every range (a pitfall is assumed rather than missed)."""
    if trt_version is None:
        return True
    try:
        parse_version(trt_version)
    except InputError:
        return True
    return version_in(trt_version, spec)


def pitfalls_in(trt_version: str | None) -> list[Pitfall]:
    """The pitfalls whose version range holds ``trt_version`` (``None``/unreadable: all of them)."""
    return [p for p in PITFALLS if _version_matches(trt_version, p.versions)]


def pitfalls_for(trt_version: str, meta: MetadataLike, *,
                 opset: int | None = None) -> list[Pitfall]:
    """The pitfalls that apply to a graph with gmg-deploy metadata ``meta`` built with TensorRT ``trt_version``.

    ``opset`` (the graph's default-domain opset, :func:`gmg_deploy.export.trt_lint.graph_opset`) enables the
    opset-dependent rows; without it (and no recorded ``opset``) they are not reported. An unreadable version
    (``"unknown"``) matches every version range.
    """
    m = as_metadata(meta)
    return [p for p, applies in _TABLE if _version_matches(trt_version, p.versions) and applies(m, opset)]


def needs_verify(trt_version: str, meta: MetadataLike, *,
                 opset: int | None = None) -> list[Pitfall]:
    """The applicable pitfalls that make verification on data mandatory (empty: none)."""
    return [p for p in pitfalls_for(trt_version, meta, opset=opset) if p.requires_verify]
