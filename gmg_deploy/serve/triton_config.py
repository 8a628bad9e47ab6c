"""``config.pbtxt`` text for a forecast graph served by Triton: implicit server-side state, or the Python backend.

Both flavours take ``frame (B,C,H,W)`` and answer ``forecast (B,K,C,H,W)`` per request of one sequence.
``implicit``: platform ``onnxruntime_onnx``/``tensorrt_plan``, one ``sequence_batching.state`` entry per
recurrent tensor (``state_in.X`` <-> ``state_out.X``, ``zero_data`` initial state), no control inputs.
``python``: ``backend: "python"`` with START/END/READY/CORRID controls (see :mod:`.python_model`).
The model's gmg-deploy metadata travels in ``parameters["gmg_deploy_metadata"]`` for clients.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gmg_deploy.errors import InputError
from gmg_deploy.graph.metadata import METADATA_PARAM, MetadataLike, as_metadata
from gmg_deploy.graph.signature import state_in, state_name, state_out

FLAVOURS = ("implicit", "python")
STRATEGIES = ("oldest", "direct")
_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}


@dataclass(frozen=True)
class ServeOptions:
    """What ``gmg-triton`` was asked for (validated by :func:`check_options`)."""

    name: str = "gmg"
    flavour: str = "implicit"
    max_batch: int | None = None
    instances: int = 1
    max_streams: int = 64
    strategy: str = "oldest"
    idle_timeout_s: float = 60.0
    intra_op_threads: int = 0


INT32_MAX = 2**31 - 1  # max_batch_size, preferred_batch_size, instance_group.count are int32 in model_config.proto
MIN_IDLE_S = 1e-6  # max_sequence_idle_microseconds: below one microsecond it would be written as 0 (Triton's default)
MAX_IDLE_S = 1e9  # ~31 years: it is a uint64 that the server adds to its clocks; far below any overflow


def max_threads() -> int:
    """The most ONNX Runtime threads ``--threads`` may ask for: the shared rule of :func:`gmg_deploy.checks.check_threads`."""
    from gmg_deploy.checks import MAX_THREADS_PER_CPU, cpu_count

    return MAX_THREADS_PER_CPU * cpu_count()


def check_options(o: ServeOptions) -> None:
    """Every option within what ``config.pbtxt`` can hold and this machine can run; one :class:`InputError`."""
    import math
    import re

    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", o.name or ""):
        raise InputError(f"--name {o.name!r}: use letters, digits, '_', '-', '.' (a folder name, no '/')")
    if o.flavour not in FLAVOURS:
        raise InputError(f"--flavour {o.flavour!r} is not one of {', '.join(FLAVOURS)}")
    if o.strategy not in STRATEGIES:
        raise InputError(f"--strategy {o.strategy!r} is not one of {', '.join(STRATEGIES)}")
    for flag, v, hi in (("--instances", o.instances, INT32_MAX), ("--max-streams", o.max_streams, INT32_MAX),
                        ("--max-batch", 1 if o.max_batch is None else o.max_batch, INT32_MAX),
                        ("--threads", o.intra_op_threads, max_threads())):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(f"{flag}={v!r} must be an integer")
        low = 0 if flag == "--threads" else 1  # --threads 0: ONNX Runtime's default (one per core)
        if v < low:
            raise InputError(f"{flag}={v} must be >= {low}")
        if v > hi:
            why = f"4x this machine's {hi // 4} CPUs" if flag == "--threads" else "a Triton int32 field"
            raise InputError(f"{flag}={v} is above {hi} ({why}); give a smaller value")
    t = o.idle_timeout_s
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        raise InputError(f"--idle-timeout={t!r} must be a finite number of seconds")
    if not MIN_IDLE_S <= t <= MAX_IDLE_S:
        raise InputError(f"--idle-timeout={t:g} s is outside {MIN_IDLE_S:g}..{MAX_IDLE_S:.4g} s (Triton counts it in "
                         "whole microseconds); give a value in that range")


def idle_microseconds(o: ServeOptions) -> int:
    """``max_sequence_idle_microseconds`` for ``--idle-timeout`` (checked: >= 1)."""
    return max(1, int(round(o.idle_timeout_s * 1e6)))


def parse_config_text(text: str, where: str) -> Any:
    """Parse ``config.pbtxt`` text with Triton's own schema (``tritonclient``'s ``model_config_pb2``) -> the
    ``ModelConfig`` message, or None when tritonclient is not installed; a text it rejects is an InputError."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return None
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise InputError(f"{where} is not a valid Triton model config ({' '.join(str(e).split())[:200]})") from None


def check_forecast_metadata(meta: MetadataLike, where: str) -> None:
    """Triton serves the one-call forecast graph with a dynamic batch axis."""
    m = as_metadata(meta, where)
    if m.graph != "forecast":
        raise InputError(f"{where} is a {m.graph!r} graph; Triton serves the forecast graph: "
                         "gmg-export --graph forecast --horizon K")
    if m.batch is not None:
        raise InputError(f"{where} has a fixed batch of {m.batch}; Triton batches streams on axis 0: "
                         "re-export without --batch (dynamic batch axis)")


def check_state_pairing(inputs: list[str], outputs: list[str]) -> None:
    """Triton pairs state inputs with outputs by position in two separately sorted lists (server issue
    #8586): ``state_in.X`` must sit where ``state_out.X`` sits after sorting both."""
    si, so = sorted(inputs), sorted(outputs)
    for a, b in zip(si, so):
        if state_name(a) != state_name(b):
            raise InputError(f"state tensors {a} and {b} would be paired by Triton (names sort differently, "
                             "server issue #8586); rename the states so that both lists sort alike")
    if len(si) != len(so):
        raise InputError(f"{len(si)} state inputs but {len(so)} state outputs; re-export the model")


def _dims(shape: Any) -> str:
    return "[ " + ", ".join(str(int(d)) for d in shape) + " ]"


def _q(s: str) -> str:
    return json.dumps(s)  # a protobuf text-format string literal (JSON escapes are a subset)


def config_text(meta: MetadataLike, o: ServeOptions, *, platform: str, max_batch: int) -> str:
    """The ``config.pbtxt`` text. ``platform``: ``onnxruntime_onnx``, ``tensorrt_plan`` or ``python``."""
    m = as_metadata(meta)
    sig = m.signature
    (frame,), (forecast,) = sig.inputs()[:1], sig.outputs()[:1]
    io_t = _TYPES[sig.io_dtype]
    st_t = _TYPES[sig.state_dtype]
    states = [(state_in(n), state_out(n), shape) for n, shape in sig.state]
    check_state_pairing([s[0] for s in states], [s[1] for s in states])
    lines = [f"name: {_q(o.name)}"]
    lines.append('backend: "python"' if platform == "python" else f"platform: {_q(platform)}")
    lines += [f"max_batch_size: {int(max_batch)}",
              f"input [ {{ name: {_q(frame.name)} data_type: {io_t} dims: {_dims(frame.shape[1:])} }} ]",
              f"output [ {{ name: {_q(forecast.name)} data_type: {io_t} dims: {_dims(forecast.shape[1:])} }} ]",
              "sequence_batching {",
              f"  max_sequence_idle_microseconds: {idle_microseconds(o)}"]
    if o.strategy == "oldest":
        lines.append(f"  oldest {{ max_candidate_sequences: {int(o.max_streams)} "
                     f"preferred_batch_size: [ {int(max_batch)} ] max_queue_delay_microseconds: 0 }}")
    else:
        lines.append("  direct { }")
    if platform == "python":
        lines.append("  control_input [")
        ctl = [("START", "CONTROL_SEQUENCE_START"), ("END", "CONTROL_SEQUENCE_END"),
               ("READY", "CONTROL_SEQUENCE_READY")]
        for k, (name, kind) in enumerate(ctl):
            lines.append(f"    {{ name: \"{name}\" control [ {{ kind: {kind} int32_false_true: [ 0, 1 ] }} ] }},")
        lines.append("    { name: \"CORRID\" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }")
        lines.append("  ]")
    else:
        lines.append("  state [")
        for k, (si, so, dims) in enumerate(states):
            sep = "," if k < len(states) - 1 else ""
            lines.append(f"    {{ input_name: {_q(si)} output_name: {_q(so)} data_type: {st_t} dims: {_dims(dims)}")
            lines.append(f"      initial_state {{ name: \"zeros\" data_type: {st_t} dims: {_dims(dims)} "
                         f"zero_data: true }} }}{sep}")
        lines.append("  ]")
    lines.append("}")
    kind = {"python": "KIND_CPU", "tensorrt_plan": "KIND_GPU"}.get(platform)
    lines.append(f"instance_group [ {{ count: {int(o.instances)}" + (f" kind: {kind}" if kind else "") + " } ]")
    params = {METADATA_PARAM: m.to_json()}
    if platform == "python":
        params.update(onnx_file="model.onnx", intra_op_threads=str(int(o.intra_op_threads)))
    lines.append("parameters [")
    items = sorted(params.items())
    for k, (key, val) in enumerate(items):
        lines.append(f"  {{ key: {_q(key)} value: {{ string_value: {_q(val)} }} }}" + ("," if k < len(items) - 1 else ""))
    lines.append("]")
    return "\n".join(lines) + "\n"
