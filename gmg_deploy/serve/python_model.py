"""Triton Python-backend model that runs a gmg-deploy forecast graph with ONNX Runtime inside the server.

``gmg-triton --flavour python`` copies this file to ``REPO/NAME/1/model.py`` beside ``model.onnx``. It needs
only NumPy and ONNX Runtime in the server's Python (not gmg_deploy). Each sequence's recurrent state is kept
here, keyed by the sequence batcher's CORRID control: START zeroes it, END frees it after the request, a
request whose READY is 0 is answered with zeros. Triton does not tell a Python-backend model that a
sequence went idle, so each ``execute`` first evicts every sequence not seen for the batcher's
``max_sequence_idle_microseconds`` (or the ``state_idle_timeout_s`` parameter, when set) (a client that never sends END does not grow the server); a request
on an evicted (or never started) CORRID without START starts from zero state. Both are logged (``gmg[NAME]:``
lines in the server log, with the count of live sequences). All requests of one ``execute`` call (one per sequence,
dynamic batching of the ``oldest`` strategy) run as one batch. Request: ``frame``; response: ``forecast``.
Tensor names and order are read from the graph's gmg-deploy metadata (``parameters["gmg_deploy_metadata"]``,
whose ``inputs``/``outputs`` lists the exporter wrote from its ``GraphSignature``: the frame first, then the
state tensors in the same order on both sides), so this file spells no I/O name itself.
"""
import json
import os
import time

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _log(model, msg):
    """One ``gmg[MODEL]:`` line in the server's log (Triton's logger where the stub has it, else its stdout)."""
    line = f"gmg[{model}]: {msg}"
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        logger.log_info(line)
    else:
        print(line, flush=True)


def _idle_seconds(config, params):
    """After how many idle seconds a sequence's state is evicted: the ``state_idle_timeout_s`` parameter when
    set, else the sequence batcher's idle timeout (Triton's default, 1 s, when the config sets none)."""
    if params.get("state_idle_timeout_s"):
        return max(float(params["state_idle_timeout_s"]), 1e-6)
    us = (config.get("sequence_batching") or {}).get("max_sequence_idle_microseconds") or 1_000_000
    return max(int(us), 1) / 1e6


def _control(request, name):
    t = pb_utils.get_input_tensor_by_name(request, name)
    return None if t is None else t.as_numpy().reshape(-1)[0]


class TritonPythonModel:
    """One ONNX Runtime session; ``states[corrid]`` = list of state arrays ``(1, ...)`` in graph order."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.name = args.get("model_name", "?")
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("intra_op_threads", "0") or 0)  # 0: one per core
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        meta = json.loads(params["gmg_deploy_metadata"])  # gmg_deploy.graph.metadata.METADATA_PARAM
        (self.frame_in, *self.state_in), (self.forecast_out, *self.state_out) = meta["inputs"], meta["outputs"]
        ins = {i.name: i for i in self.session.get_inputs()}
        self.state_shapes = [tuple(int(d) for d in ins[n].shape[1:]) for n in self.state_in]
        self.state_dtypes = [np.float16 if "float16" in ins[n].type else np.float32 for n in self.state_in]
        self.frame_dtype = np.float16 if "float16" in ins[self.frame_in].type else np.float32
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.idle_s = _idle_seconds(config, params)
        self.states = {}
        self.last_seen = {}  # corrid -> time.monotonic() of its last request

    def _evict(self, now):
        """Drop the state of every sequence idle for longer than the idle timeout."""
        old = [c for c, t in self.last_seen.items() if now - t > self.idle_s]
        for c in old:
            self.states.pop(c, None)
            del self.last_seen[c]
        if old:
            _log(self.name, f"evicted {len(old)} sequence(s) idle for more than {self.idle_s:g} s; {len(self.states)} live")

    def _zeros(self):
        return [np.zeros((1,) + s, d) for s, d in zip(self.state_shapes, self.state_dtypes)]

    def execute(self, requests):
        live, frames, keys = [], [], []
        responses = [None] * len(requests)
        now = time.monotonic()
        self._evict(now)
        for i, r in enumerate(requests):
            corrid = _control(r, "CORRID")
            corrid = int(corrid) if corrid is not None else 0
            frame = pb_utils.get_input_tensor_by_name(r, self.frame_in).as_numpy().astype(self.frame_dtype, copy=False)
            if _control(r, "START"):
                self.states[corrid] = self._zeros()
            ready = _control(r, "READY")
            if ready is not None and not ready:
                responses[i] = None
                continue
            self.last_seen[corrid] = now
            if corrid not in self.states:
                _log(self.name, f"sequence {corrid} has no state (evicted after the {self.idle_s:g} s idle timeout, or never "
                     "started): it starts from zero state")
                self.states[corrid] = self._zeros()
            live.append(i)
            frames.append(frame)
            keys.append(corrid)
        if live:
            feed = {self.frame_in: np.concatenate(frames)}
            for k, name in enumerate(self.state_in):
                feed[name] = np.concatenate([self.states[c][k] for c in keys])
            out = dict(zip(self.outputs, self.session.run(None, feed)))
            fc = out[self.forecast_out]
            start = 0
            for i, c in zip(live, keys):
                n = frames[live.index(i)].shape[0]
                self.states[c] = [out[name][start : start + n].copy() for name in self.state_out]
                tensor = pb_utils.Tensor(self.forecast_out, np.ascontiguousarray(fc[start : start + n]))
                responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])
                start += n
        for i, r in enumerate(requests):
            if responses[i] is None:
                shape = (1,) + tuple(int(d) for d in self.session.get_outputs()[0].shape[1:])
                zeros = np.zeros(shape, self.frame_dtype)
                responses[i] = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.forecast_out, zeros)])
            if _control(r, "END"):
                corrid = _control(r, "CORRID")
                corrid = int(corrid) if corrid is not None else 0
                self.states.pop(corrid, None)
                self.last_seen.pop(corrid, None)
        return responses

    def finalize(self):
        self.states.clear()
        self.last_seen.clear()
