"""Triton backend: each slot is one Triton sequence of a forecast model served by ``gmg-serve`` (gRPC).

``triton://HOST:PORT/NAME`` names the server and model (a ``gmg-triton`` repository entry). The recurrent
state lives in the server; one request per slot and observed frame returns ``forecast (1,K,C,H,W)``, kept
as ``rollout`` so :meth:`Forecaster.forecast` answers ``k <= K`` without another call. A slot sends START on
its first frame and after ``reset``; ``close`` sends END (one zero frame) for every started slot.
"""
from __future__ import annotations

import json
import math
import secrets
import threading
import time
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
    """``triton://HOST:PORT/NAME`` -> (``HOST:PORT``, ``NAME``); the one parser of these URLs (an IPv6 host is
    written ``[::1]``). A malformed URL or a port outside 1..65535 is one :class:`InputError`."""
    text = str(url)
    usage = "give triton://HOST:PORT/NAME (gRPC port 1..65535, model name), e.g. triton://127.0.0.1:8001/gmg"
    try:
        u = urlparse(text)
        host, port = u.hostname, u.port
    except ValueError as e:  # port out of range / not a number, unclosed IPv6 bracket
        raise InputError(f"{text!r} is not a valid Triton URL ({e}); {usage}") from None
    name = u.path.strip("/")
    if u.scheme != "triton" or not host or not port or not name or "/" in name or u.query or u.fragment:
        raise InputError(f"{text!r} is not a valid Triton URL; {usage}")
    return (f"[{host}]" if ":" in host else host) + f":{port}", name


MAX_TIMEOUT_S = 86400.0  # a day: gRPC deadlines far beyond that overflow its clocks


def check_timeout(timeout: Any) -> float:
    """A request timeout in seconds: a finite number in (0, one day] (else one :class:`InputError`)."""
    try:
        t = float(timeout)
    except (TypeError, ValueError):
        raise InputError(f"timeout {timeout!r} is not a number of seconds (--timeout S)") from None
    if isinstance(timeout, bool) or not math.isfinite(t) or not 0 < t <= MAX_TIMEOUT_S:
        raise InputError(f"timeout {timeout!r} must be a number of seconds in (0, {MAX_TIMEOUT_S:g}] (--timeout S)")
    return t


def _import_client() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise InputError("the Triton client is not installed; pip install gmg-deploy[serve]") from None
    return grpcclient


class TritonBackend(StepBackend):
    """Streams through a Triton forecast model; ``batch_size`` slots = that many Triton sequences.

    ``timeout`` (seconds, finite, > 0; ``gmg-infer --timeout``) bounds every request: connecting, each step
    and the END requests of :meth:`close`. A server that does not answer in time is one :class:`ServeError`
    naming it and the timeout; after that, :meth:`close` sends no END (the server frees the sequences after
    its idle timeout).
    """

    name = "triton"
    graph_kinds = ("forecast",)
    supports_snapshot = False  # the state lives in the server

    def __init__(self, url: str, *, batch_size: int = 1, device: str = "cpu", timeout: float = 60.0) -> None:
        if str(device) != "cpu":
            raise InputError("backend triton runs on the server; use device cpu on the client")
        self._set_batch_size(batch_size)
        self.address, self.model = parse_url(url)
        self.url = str(url)
        self.timeout = check_timeout(timeout)
        #: Why the END requests of :meth:`close` failed (None: they did not, or were not needed).
        self.end_error: str | None = None
        self._unanswered = False  # a request timed out: the server is stopped or overloaded
        g = _import_client()
        self._g = g
        self.client = None
        try:
            self.client = g.InferenceServerClient(self.address)
            ready = self.client.is_model_ready(self.model, client_timeout=self.timeout)
            cfg = self.client.get_model_config(self.model, as_json=True, client_timeout=self.timeout)["config"]
        except Exception as e:  # grpc raises InferenceServerException and others when unreachable
            if self.client is not None:
                self.client.close()
            if _is_deadline(e):
                raise ServeError(self._timeout_message("connecting")) from None
            raise ServeError(f"cannot reach Triton at {self.address} ({_short(e)}); start it with gmg-serve") from None
        if not ready:
            self.client.close()
            raise ServeError(f"model {self.model!r} is not ready on {self.address}; check gmg-serve's log")
        raw = cfg.get("parameters", {}).get(METADATA_PARAM, {}).get("string_value")
        if not raw:
            self.client.close()
            raise MetadataError(f"model {self.model!r} on {self.address} has no gmg-deploy metadata; "
                                "write its repository with gmg-triton")
        self._set_metadata(json.loads(raw), f"model {self.model!r} on {self.address}")
        self._set_device("cpu")
        self._allocate()  # also ``horizon`` and the ``rollout`` buffer (a forecast graph)
        self.sequence_ids = [secrets.randbits(62) + 1 for _ in range(self.batch_size)]
        self._start = [True] * self.batch_size
        self._closed = False

    def _timeout_message(self, what: str) -> str:
        return (f"Triton at {self.address} (model {self.model!r}) did not answer within the {self.timeout:g} s "
                f"timeout while {what}; the server is stopped, hung or overloaded - check gmg-serve, or raise "
                "--timeout")

    # ------------------------------------------------------------------ requests
    def _infer_all(self, frames: np.ndarray, slots: list[int], *, end: bool = False) -> list[np.ndarray]:
        """One request per slot, all in flight at once, all answered within ``timeout`` s; -> each slot's
        ``forecast`` ``(1,K,C,H,W)``."""
        g = self._g
        dtype, _ = _NP_TRITON[self.frame_in.dtype]
        results: list[Any] = [None] * len(slots)
        errors: list[Any] = []
        done = threading.Semaphore(0)
        frame_name, forecast_name = self.signature.frame_input, self.signature.frame_output
        what = "ending the streams" if end else "forecasting"

        def callback(k: int) -> Any:
            def cb(result: Any, error: Any) -> None:
                if error is not None:
                    errors.append(error)
                else:
                    results[k] = result.as_numpy(forecast_name)
                done.release()
            return cb

        t_end = time.monotonic() + self.timeout + 2.0  # the client's own deadline fires first; this is a backstop
        for k, slot in enumerate(slots):
            inp = g.InferInput(frame_name, [1, *frames.shape[1:]], dtype)
            inp.set_data_from_numpy(np.ascontiguousarray(frames[k : k + 1]))
            try:
                self.client.async_infer(self.model, [inp], callback(k), sequence_id=self.sequence_ids[slot],
                                        sequence_start=self._start[slot], sequence_end=end,
                                        client_timeout=self.timeout)
            except Exception as e:  # connection refused and the like
                errors.append(e)
                done.release()
        for _ in slots:
            if not done.acquire(timeout=max(0.0, t_end - time.monotonic())):
                self._unanswered = True
                raise ServeError(self._timeout_message(what))
        if errors:
            if any(_is_deadline(e) for e in errors):
                self._unanswered = True
                raise ServeError(self._timeout_message(what))
            msg = _short(errors[0])
            hint = ""
            if "START" in msg and "sequence" in msg:
                hint = ("; the server dropped this stream after its idle timeout (gmg-triton --idle-timeout): "
                        "reset() the stream to start it over")
            raise ServeError(f"Triton model {self.model!r} at {self.address}: {msg}{hint}")
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
        """END every started sequence (frees its state in the server early), within one ``timeout``, then close
        the connection. A failed END does not raise (the server frees idle sequences after its idle timeout;
        the reason is kept in :attr:`end_error`); after a request timed out no END is sent at all."""
        if self._closed:
            return
        self._closed = True
        started = [s for s in range(self.batch_size) if not self._start[s]]
        try:
            if started and not self._unanswered:
                zeros = np.zeros((len(started), *self.frame_in.shape[1:]), _NP_TRITON[self.frame_in.dtype][1])
                try:
                    self._infer_all(zeros, started, end=True)
                except ServeError as e:
                    self.end_error = str(e)
            elif started:
                self.end_error = self._timeout_message("forecasting") + " (no END sent)"
        finally:
            self.client.close()


def _is_deadline(e: Any) -> bool:
    """A gRPC DEADLINE_EXCEEDED (the per-request client timeout fired)."""
    status = e.status() if hasattr(e, "status") and callable(e.status) else ""
    return "DEADLINE_EXCEEDED" in str(status) or "deadline exceeded" in _short(e).lower()


def _short(e: Any) -> str:
    msg = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
    return " ".join(str(msg).split())[:200]
