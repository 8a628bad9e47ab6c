"""The metadata every exported graph carries, as one typed, validated object (:class:`GraphMetadata`).

Floor 2 (the graph contract): imports ``model`` and the utilities only. Every stage that reads a graph's
metadata asks this module: it is parsed and checked once per graph (:meth:`GraphMetadata.from_proto` keeps
the objects it made, keyed by the JSON text) and then passed down; no other module parses the JSON or reads
``meta["config"][...]`` by hand.

Stored as JSON in ``metadata_props["gmg_deploy"]`` of the ONNX file (and copied into an engine's ``.json``
sidecar and a Triton model's ``config.pbtxt``). Schema (version 1)::

    {
      "schema": 1,
      "toolkit_version": "0.1.0",
      "graph": "step" | "sequence" | "forecast",
      "horizon": K,                            # forecast graphs only
      "config": {...ModelConfig.to_dict()...},
      "warp": "gridsample" | "gather",
      "warp_gate": "motionrnn" | "published",   # resolved warp-gate layout (also config.warp_gate)
      "batch_mode": "invariant" | "reference",
      "batch": null (dynamic) | int,
      "precision": "fp32" | "fp16" | "int8",
      "io_dtype": "float32" | "float16",      # graph inputs/outputs
      "state_dtype": "float32" | "float16",   # state_in.*/state_out.* (step graph)
      "state": [{"name": "h.0", "shape": [null, 128, 16, 16]}, ...],   # fixed order; null = batch axis
      "inputs": ["frame", "state_in.h.0", ...],  "outputs": ["next_frame", "state_out.h.0", ...],
      "test_mean": null | nested list, "test_std": null | nested list,
      "calibration": null | {...},            # INT8 only
      "fp32_islands": {...}                   # FP16 only: nodes kept in FP32, per reason
    }

``state``, ``inputs`` and ``outputs`` are written from :class:`gmg_deploy.graph.signature.GraphSignature`
(the one definition of the I/O names, order and shapes). Forecast graph I/O: the step graph's inputs ->
``forecast (B,K,C,H,W)`` (``forecast[:,0]`` is the step's ``next_frame``, then K-1 autoregressive frames)
and ``state_out.*`` (the state after observing ``frame``). Graphs from before ``warp_gate`` was recorded
computed ``motionrnn``. The dict functions at the end (``build_metadata``, ``metadata_from_proto``,
``read_metadata``, ...) are the same contract as plain JSON dicts, for callers that edit or serialise them.
"""
from __future__ import annotations

import copy
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from gmg_deploy import __version__
from gmg_deploy.checks import check_graph_weights
from gmg_deploy.errors import ConfigError, MetadataError
from gmg_deploy.graph.onnx_file import load_onnx
from gmg_deploy.graph.signature import DTYPES, GRAPH_KINDS, GraphSignature
from gmg_deploy.model.config import BATCH_MODES, ModelConfig
from gmg_deploy.model.warp import WARP_FORMS

METADATA_KEY = "gmg_deploy"
#: Where the metadata JSON travels in a Triton model's ``config.pbtxt`` (``parameters``), for clients and
#: the Python-backend model (see :mod:`gmg_deploy.serve.triton_config`).
METADATA_PARAM = "gmg_deploy_metadata"
SCHEMA_VERSION = 1
#: Precisions a graph is written in (``gmg-export --precision``).
PRECISIONS = ("fp32", "fp16", "int8")
__all__ = ["METADATA_KEY", "METADATA_PARAM", "SCHEMA_VERSION", "PRECISIONS", "MetadataError", "GraphMetadata",
           "as_metadata", "MetadataLike", "load_graph", "build_metadata", "forecast_metadata", "attach_metadata", "metadata_from_proto",
           "read_metadata", "warp_gate_of", "config_from_metadata", "signature_of"]

_FIELDS = ("where", "graph", "config", "signature", "precision", "warp", "warp_gate", "batch_mode", "batch",
           "io_dtype", "state_dtype", "horizon", "calibration", "test_mean", "test_std", "opset", "fp32_islands",
           "toolkit_version")


def _jsonable(a: Any) -> Any:
    if a is None:
        return None
    return np.asarray(a, dtype=np.float64).tolist()


def _one_of(doc: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str, where: str) -> str:
    value = doc.get(key, default)
    if value is None:
        value = default
    if value not in allowed:
        raise MetadataError(f"{where}: metadata {key} {value!r} is not one of {', '.join(allowed)}; re-export it")
    return str(value)


class GraphMetadata(Mapping[str, Any]):
    """One graph's gmg-deploy metadata, checked once: typed attributes, and read-only ``meta["key"]`` access to
    the JSON document (values are copies).

    Attributes: ``graph`` (kind), ``config`` (:class:`ModelConfig`, warp-gate layout resolved), ``signature``
    (:class:`GraphSignature`), ``precision``, ``warp``, ``warp_gate``, ``batch_mode``, ``batch`` (None:
    dynamic), ``io_dtype``, ``state_dtype``, ``horizon`` (forecast graphs), ``calibration`` (INT8),
    ``test_mean``/``test_std`` (normalisation, nested lists or None), ``opset``, ``fp32_islands``,
    ``toolkit_version`` and ``where`` (what to call the graph in an error).
    """

    __slots__ = ("_doc",) + _FIELDS

    def __init__(self, doc: Mapping[str, Any], where: str = "ONNX model") -> None:
        if not isinstance(doc, Mapping):
            raise MetadataError(f"{where}: metadata is a {type(doc).__name__}, not a JSON object; re-export it")
        if isinstance(doc, GraphMetadata):
            doc = doc._doc
        try:
            d = json.loads(json.dumps(dict(doc)))  # a detached, JSON-able copy
        except (TypeError, ValueError):
            raise MetadataError(f"{where}: metadata is not JSON-serialisable; re-export it") from None
        if d.get("schema") != SCHEMA_VERSION:
            raise MetadataError(f"{where}: metadata schema {d.get('schema')} is not {SCHEMA_VERSION}; "
                                "re-export with this version")
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen after __init__
        set_("_doc", d)
        set_("where", str(where))
        set_("graph", _one_of(d, "graph", GRAPH_KINDS, "step", where))
        set_("precision", _one_of(d, "precision", PRECISIONS, "fp32", where))
        set_("warp", _one_of(d, "warp", WARP_FORMS, "gridsample", where))
        set_("batch_mode", _one_of(d, "batch_mode", BATCH_MODES, "invariant", where))
        set_("io_dtype", _one_of(d, "io_dtype", DTYPES, "float32", where))
        set_("state_dtype", _one_of(d, "state_dtype", DTYPES, "float32", where))
        cfg = d.get("config")
        if not isinstance(cfg, dict):
            raise MetadataError(f"{where}: metadata has no model config; re-export it with gmg-export")
        gate = str(d.get("warp_gate") or cfg.get("warp_gate") or "motionrnn")
        try:
            set_("config", ModelConfig.from_dict({**cfg, "warp_gate": gate}))
        except (ConfigError, KeyError, TypeError, ValueError) as e:
            raise MetadataError(f"{where}: metadata config is invalid ({str(e).splitlines()[0][:120]}); "
                                "re-export it") from None
        set_("warp_gate", self.config.warp_gate)
        batch = d.get("batch")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise MetadataError(f"{where}: metadata batch {batch!r} is not null or a positive integer; re-export it")
        set_("batch", batch)
        try:
            sig = GraphSignature.from_metadata(d)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise MetadataError(f"{where}: metadata state/shape records are invalid ({str(e)[:120]}); "
                                "re-export it") from None
        set_("signature", sig)
        if ("inputs" in d or "outputs" in d) and not sig.matches(d.get("inputs", []), d.get("outputs", [])):
            raise MetadataError(f"{where}: the metadata's input/output names disagree with its state list; re-export")
        set_("horizon", sig.horizon)
        set_("calibration", d.get("calibration"))
        set_("test_mean", d.get("test_mean"))
        set_("test_std", d.get("test_std"))
        set_("opset", None if d.get("opset") is None else int(d["opset"]))
        set_("fp32_islands", d.get("fp32_islands"))
        set_("toolkit_version", d.get("toolkit_version"))

    def __reduce__(self) -> tuple[Any, ...]:
        return (GraphMetadata, (self._doc, self.where))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"GraphMetadata is read-only; use .replace({name}=...)")

    # ------------------------------------------------------------------ Mapping (the JSON document)
    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._doc[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._doc)

    def __len__(self) -> int:
        return len(self._doc)

    def __repr__(self) -> str:
        if not hasattr(self, "batch"):  # refused half-way through __init__
            return "GraphMetadata(<not valid>)"
        return (f"GraphMetadata({self.where}: {self.config.arch} {self.graph} graph, {self.precision}, "
                f"warp={self.warp}, batch={self.batch})")

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        config: ModelConfig,
        *,
        graph: str,
        warp: str,
        batch_mode: str,
        batch: int | None,
        precision: str = "fp32",
        io_dtype: str = "float32",
        state_dtype: str = "float32",
        test_mean: Any = None,
        test_std: Any = None,
        calibration: dict[str, Any] | None = None,
        horizon: int | None = None,
        **extra: Any,
    ) -> "GraphMetadata":
        """The metadata of ``graph`` exported from a model with ``config`` (I/O from :class:`GraphSignature`);
        ``extra`` keys (``opset``, ...) are stored as given."""
        sig = GraphSignature.from_config(config, graph, batch=batch, io_dtype=io_dtype, state_dtype=state_dtype,
                                         horizon=horizon)
        doc: dict[str, Any] = {
            "schema": SCHEMA_VERSION, "toolkit_version": __version__, "graph": graph, "config": config.to_dict(),
            "warp": warp, "warp_gate": config.warp_gate, "batch_mode": batch_mode, "batch": batch,
            "precision": precision, "io_dtype": io_dtype, "state_dtype": state_dtype,
            "state": sig.state_records(), "inputs": sig.input_names, "outputs": sig.output_names,
            "test_mean": _jsonable(test_mean), "test_std": _jsonable(test_std), "calibration": calibration,
            **extra,
        }
        if sig.horizon is not None:
            doc["horizon"] = sig.horizon
        return cls(doc, "metadata")

    @classmethod
    def from_json(cls, text: str, where: str = "ONNX model") -> "GraphMetadata":
        """Parse the metadata JSON text (cached: the same text is parsed once)."""
        key = (text, where)
        with _PARSED_LOCK:
            hit = _PARSED.get(key)
            if hit is not None:
                _PARSED.move_to_end(key)
                return hit
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            raise MetadataError(f"{where}: metadata '{METADATA_KEY}' is not valid JSON; re-export it") from None
        meta = cls(doc, where)
        with _PARSED_LOCK:  # live streams open engines from several threads
            _PARSED[key] = meta
            while len(_PARSED) > _PARSED_MAX:
                _PARSED.popitem(last=False)
        return meta

    @classmethod
    def from_proto(cls, model_proto: Any, where: str = "ONNX model") -> "GraphMetadata":
        """The metadata stored in an ``onnx.ModelProto`` (one clear error when it has none)."""
        for p in model_proto.metadata_props:
            if p.key == METADATA_KEY:
                return cls.from_json(p.value, where)
        raise MetadataError(f"{where} has no gmg-deploy metadata; export it with gmg-export")

    @classmethod
    def read(cls, path: str | Path) -> "GraphMetadata":
        """The metadata of an exported ONNX file (its weights are not loaded)."""
        return cls.from_proto(load_onnx(path, weights=False), str(path))

    # ------------------------------------------------------------------ derived metadata
    def replace(self, **changes: Any) -> "GraphMetadata":
        """A copy with JSON keys changed (validated again): ``meta.replace(precision="fp16", ...)``."""
        return GraphMetadata({**self._doc, **changes}, self.where)

    def for_forecast(self, horizon: int) -> "GraphMetadata":
        """This step graph's metadata (any precision) turned into that of the forecast graph built from it."""
        doc = {**self._doc, "graph": "forecast", "horizon": int(horizon)}
        doc["outputs"] = GraphSignature.from_metadata(doc).output_names
        return GraphMetadata(doc, self.where)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (a copy)."""
        return copy.deepcopy(self._doc)

    def to_json(self) -> str:
        return json.dumps(self._doc, sort_keys=True)

    def attach(self, model_proto: Any) -> None:
        """Store this metadata in ``model_proto``'s ``metadata_props`` (replacing an earlier entry)."""
        attach_metadata(model_proto, self)

    # ------------------------------------------------------------------ questions every stage asks
    @property
    def pre(self) -> int:
        """Frames observed before forecasting (``config.pre_seq_length``)."""
        return self.signature.pre

    @property
    def aft(self) -> int:
        """Frames forecast (``config.aft_seq_length``)."""
        return self.signature.aft

    @property
    def config_dict(self) -> dict[str, Any]:
        """The recorded config as a JSON dict with the resolved warp-gate layout (what two graphs compare)."""
        return {**copy.deepcopy(self._doc["config"]), "warp_gate": self.warp_gate}

    def identity(self) -> dict[str, Any]:
        """What makes two graphs the same model for calibration ranges: config, kind, warp and batch mode as
        recorded (so the fingerprints in ranges files written by earlier versions stay valid)."""
        return {k: copy.deepcopy(self._doc.get(k)) for k in ("config", "graph", "warp", "batch_mode")}

    def require(self, *, graph: str | tuple[str, ...] | None = None, precision: str | None = None,
                what: str = "this command", error: type[Exception] = MetadataError) -> "GraphMetadata":
        """Refuse (one ``error`` line) a graph of another kind or precision than ``what`` needs; -> self."""
        kinds = (graph,) if isinstance(graph, str) else graph
        if kinds is not None and self.graph not in kinds:
            need = " or ".join(f"a {k} graph" for k in kinds)
            raise error(f"{self.where} is a {self.graph} graph; {what} needs {need}")
        if precision is not None and self.precision != precision:
            raise error(f"{self.where} is already {self.precision}; {what} needs the {precision.upper()} graph "
                        "(gmg-export without --precision)")
        return self


#: What a function taking metadata accepts: a :class:`GraphMetadata`, or its JSON dict (:func:`as_metadata` turns
#: either into the typed object).
MetadataLike = GraphMetadata | Mapping[str, Any]

#: GraphMetadata objects by (JSON text, where): a graph's metadata is parsed once however often it is asked.
_PARSED: "OrderedDict[tuple[str, str], GraphMetadata]" = OrderedDict()
_PARSED_MAX = 64
_PARSED_LOCK = threading.Lock()


def load_graph(model: str | Path | Any, *, weights: bool = True, what: str = "ONNX model",
               finite: bool = False) -> tuple[Any, GraphMetadata]:
    """``(proto, GraphMetadata)`` of an exported graph: loaded once (:func:`load_onnx`), its metadata parsed once;
    ``finite=True`` also refuses NaN/Inf weights (:func:`gmg_deploy.checks.check_graph_weights`), what every path
    that runs or builds the graph asks (such weights turn every forecast into NaN)."""
    proto = load_onnx(model, weights=weights, what=what)
    where = str(model) if isinstance(model, (str, Path)) else what
    meta = GraphMetadata.from_proto(proto, where)
    if finite:
        check_graph_weights(proto, where)
    return proto, meta


def as_metadata(meta: Mapping[str, Any], where: str = "metadata") -> GraphMetadata:
    """``meta`` itself when it is a :class:`GraphMetadata`, else the JSON dict parsed and checked once."""
    return meta if isinstance(meta, GraphMetadata) else GraphMetadata(meta, where)


# ---------------------------------------------------------------------- the same contract as JSON dicts
def build_metadata(config: ModelConfig, **kwargs: Any) -> dict[str, Any]:
    """The metadata dict for a graph exported from a model with ``config`` (see :meth:`GraphMetadata.build`)."""
    return GraphMetadata.build(config, **kwargs).to_dict()


def forecast_metadata(step_meta: Mapping[str, Any], horizon: int) -> dict[str, Any]:
    """A step graph's metadata dict turned into that of the forecast graph built from it."""
    return as_metadata(step_meta).for_forecast(horizon).to_dict()


def attach_metadata(model_proto: Any, meta: Mapping[str, Any]) -> None:
    """Store ``meta`` (a :class:`GraphMetadata` or its dict) in an ``onnx.ModelProto``'s ``metadata_props``."""
    doc = meta._doc if isinstance(meta, GraphMetadata) else meta
    props = model_proto.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == METADATA_KEY:
            del props[i]
    entry = props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(doc, sort_keys=True)


def metadata_from_proto(model_proto: Any, where: str = "ONNX model") -> dict[str, Any]:
    """The metadata dict of an ``onnx.ModelProto`` (checked; a copy the caller may edit)."""
    return GraphMetadata.from_proto(model_proto, where).to_dict()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The gmg-deploy metadata of an exported ONNX file (``config`` as a dict)."""
    return GraphMetadata.read(path).to_dict()


def warp_gate_of(meta: Mapping[str, Any]) -> str:
    """The graph's resolved warp-gate layout; graphs from before the setting computed ``motionrnn``."""
    if isinstance(meta, GraphMetadata):
        return meta.warp_gate
    return str(meta.get("warp_gate") or (meta.get("config") or {}).get("warp_gate") or "motionrnn")


def config_from_metadata(meta: Mapping[str, Any]) -> ModelConfig:
    """The :class:`ModelConfig` a graph was exported from (with its resolved warp-gate layout)."""
    return as_metadata(meta).config


def signature_of(meta: Mapping[str, Any]) -> GraphSignature:
    """The :class:`GraphSignature` (I/O names, order, shapes, dtypes) a graph's metadata describes."""
    return meta.signature if isinstance(meta, GraphMetadata) else GraphSignature.from_metadata(meta)
