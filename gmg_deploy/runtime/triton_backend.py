"""Triton backend: each slot is one Triton sequence of a forecast model served by ``gmg-serve`` (gRPC).

``triton://HOST:PORT/NAME`` names the server and model (a ``gmg-triton`` repository entry). The recurrent
state lives in the server; one request per slot and observed frame returns ``forecast (1,K,C,H,W)``, kept
as ``rollout`` so :meth:`Forecaster.forecast` answers ``k <= K`` without another call. A slot sends START on
its first frame and after ``reset``; ``close`` sends END (one zero frame) for every started slot.
"""
from __future__ import annotations

import json
import secrets
import threading
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from gmg_deploy.errors import InputError, ServeError
from gmg_deploy.export.metadata import METADATA_PARAM, MetadataError
from gmg_deploy.runtime.backend import StepBackend

SCHEME = "triton://"
_NP_TRITON = {torch.float32: ("FP32", np.float32), torch.float16: ("FP16", np.float16)}


def parse_url(url: str) -> tuple[str, str]:
    """``triton://HOST:PORT/NAME`` -> (``HOST:PORT``, ``NAME``)."""
    u = urlparse(str(url))
    name = u.path.strip("/")
    if u.scheme != "triton" or not u.hostname or not u.port or not name or "/" in name:
        raise InputError(f"{url!r} is not triton://HOST:PORT/NAME (gRPC port, model name), "
                         "e.g. triton://127.0.0.1:8001/gmg")
    return f"{u.hostname}:{u.port}", name


def _import_client() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise InputError("the Triton client is not installed; pip install gmg-deploy[serve]") from None
    return grpcclient


class TritonBackend(StepBackend):
    """Streams through a Triton forecast model; ``batch_size`` slots = that many Triton sequences."""

    name = "triton"
    graph_kinds = ("forecast",)
    supports_snapshot = False  # the state lives in the server

    def __init__(self, url: str, *, batch_size: int = 1, device: str = "cpu", timeout_s: float = 60.0) -> None:
        if str(device) != "cpu":
            raise InputError("backend triton runs on the server; use device cpu on the client")
        self._set_batch_size(batch_size)
        self.address, self.model = parse_url(url)
        self.url = str(url)
        self.timeout_s = float(timeout_s)
        g = _import_client()
        self._g = g
        try:
            self.client = g.InferenceServerClient(self.address)
            ready = self.client.is_model_ready(self.model)
        except Exception as e:  # grpc raises InferenceServerException and others when unreachable
            raise ServeError(f"cannot reach Triton at {self.address} ({_short(e)}); start it with gmg-serve") from None
        if not ready:
            raise ServeError(f"model {self.model!r} is not ready on {self.address}; check gmg-serve's log")
        cfg = self.client.get_model_config(self.model, as_json=True)["config"]
        raw = cfg.get("parameters", {}).get(METADATA_PARAM, {}).get("string_value")
        if not raw:
            raise MetadataError(f"model {self.model!r} on {self.address} has no gmg-deploy metadata; "
                                "write its repository with gmg-triton")
        self._set_metadata(json.loads(raw), f"model {self.model!r} on {self.address}")
        self._set_device("cpu")
        self._allocate()  # also ``horizon`` and the ``rollout`` buffer (a forecast graph)
        self.sequence_ids = [secrets.randbits(62) + 1 for _ in range(self.batch_size)]
        self._start = [True] * self.batch_size
        self._closed = False

    # ------------------------------------------------------------------ requests
    def _infer_all(self, frames: np.ndarray, slots: list[int], *, end: bool = False) -> list[np.ndarray]:
        """One request per slot, all in flight at once; -> each slot's ``forecast`` ``(1,K,C,H,W)``."""
        g = self._g
        dtype, _ = _NP_TRITON[self.frame_in.dtype]
        results: list[Any] = [None] * len(slots)
        errors: list[str] = []
        done = threading.Semaphore(0)
        frame_name, forecast_name = self.signature.frame_input, self.signature.frame_output

        def callback(k: int) -> Any:
            def cb(result: Any, error: Any) -> None:
                if error is not None:
                    errors.append(_short(error))
                else:
                    results[k] = result.as_numpy(forecast_name)
                done.release()
            return cb

        for k, slot in enumerate(slots):
            inp = g.InferInput(frame_name, [1, *frames.shape[1:]], dtype)
            inp.set_data_from_numpy(np.ascontiguousarray(frames[k : k + 1]))
            try:
                self.client.async_infer(self.model, [inp], callback(k), sequence_id=self.sequence_ids[slot],
                                        sequence_start=self._start[slot], sequence_end=end,
                                        client_timeout=self.timeout_s)
            except Exception as e:  # connection refused and the like
                errors.append(_short(e))
                done.release()
        for _ in slots:
            if not done.acquire(timeout=self.timeout_s + 5):
                raise ServeError(f"Triton at {self.address} did not answer within {self.timeout_s:.0f} s")
        if errors:
            raise ServeError(f"Triton model {self.model!r} at {self.address}: {errors[0]}")
        return results

    def run_impl(self, src: int, dst: int, from_pred: bool) -> None:
        if from_pred:
            raise InputError(f"a Triton stream forecasts at most K={self.horizon} frames, right after observe() (the "
                             "server's state only advances on observe; after reset() observe a frame first)")
        if self._closed:
            raise InputError("this Triton forecaster is closed; open a new one")
        frames = self.frame_in.numpy()
        outs = self._infer_all(frames, list(range(self.batch_size)))
        for i, r in enumerate(outs):
            self.rollout[i].copy_(torch.from_numpy(np.array(r[0])))
        self._start = [False] * self.batch_size
        self.sets[dst].pred.copy_(self.rollout[:, 0])

    def reset_slots(self, slots: list[int]) -> None:
        """The next frame of each slot in ``slots`` starts a new sequence (START: zero state in the server)."""
        for s in slots:
            self._start[s] = True

    def close(self) -> None:
        """END every started sequence (frees its state in the server), then close the connection."""
        if self._closed:
            return
        self._closed = True
        started = [s for s in range(self.batch_size) if not self._start[s]]
        try:
            if started:
                zeros = np.zeros((len(started), *self.frame_in.shape[1:]), _NP_TRITON[self.frame_in.dtype][1])
                self._infer_all(zeros, started, end=True)
        finally:
            self.client.close()


def _short(e: Any) -> str:
    msg = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
    return " ".join(str(msg).split())[:200]
