"""Triton backend: each slot is one Triton sequence of a forecast model served by ``gmg-serve`` (gRPC).

``triton://HOST:PORT/NAME`` names the server and model (a ``gmg-triton`` repository entry). The recurrent
state lives in the server; one request per slot and observed frame returns ``forecast (1,K,C,H,W)``, kept
as ``rollout`` so :meth:`Forecaster.forecast` answers ``k <= K`` without another call. A slot sends START on
its first frame and after ``reset``; ``close`` sends END (one zero frame) for every started slot.
"""
from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from gmg_deploy.errors import InputError, ServeError
from gmg_deploy.graph.metadata import METADATA_PARAM, GraphMetadata, MetadataError
from gmg_deploy.runtime.backend import StepBackend
from gmg_deploy.runtime.triton_pool import ServerPool, describe, is_failover_error

_NP_TRITON = {torch.float32: ("FP32", np.float32), torch.float16: ("FP16", np.float16)}


_USAGE = ("give triton://HOST:PORT/NAME or triton://HOST:PORT,HOST:PORT,.../NAME (gRPC ports 1..65535, model "
          "name), e.g. triton://127.0.0.1:8001,127.0.0.1:8011/gmg")
MAX_SERVERS = 64


def parse_urls(url: str) -> tuple[tuple[str, ...], str]:
    """``triton://HOST:PORT[,HOST:PORT...]/NAME`` -> ((``HOST:PORT``, ...), ``NAME``); the one parser of these
    URLs (an IPv6 host is written ``[::1]``). A malformed URL, a port outside 1..65535, a server listed twice
    or more than :data:`MAX_SERVERS` servers is one :class:`InputError`."""
    text = str(url)
    try:
        u = urlparse(text)
    except ValueError as e:  # unclosed IPv6 bracket
        raise InputError(f"{text!r} is not a valid Triton URL ({e}); {_USAGE}") from None
    name = u.path.strip("/")
    if u.scheme != "triton" or not u.netloc or not name or "/" in name or u.query or u.fragment or u.params:
        raise InputError(f"{text!r} is not a valid Triton URL; {_USAGE}")
    parts = u.netloc.split(",")
    if len(parts) > MAX_SERVERS:
        raise InputError(f"{text!r} lists {len(parts)} servers; at most {MAX_SERVERS}")
    out: list[str] = []
    for part in parts:
        try:
            one = urlparse(f"triton://{part}/{name}")
            host, port = one.hostname, one.port
        except ValueError as e:  # port out of range / not a number, unclosed IPv6 bracket
            raise InputError(f"{text!r} is not a valid Triton URL ({part!r}: {e}); {_USAGE}") from None
        if not host or not port or "@" in part:
            raise InputError(f"{text!r} is not a valid Triton URL ({part!r} is not HOST:PORT); {_USAGE}")
        addr = (f"[{host}]" if ":" in host else host) + f":{port}"
        if addr in out:
            raise InputError(f"{text!r} lists server {addr} twice; give each server once")
        out.append(addr)
    return tuple(out), name


def parse_url(url: str) -> tuple[str, str]:
    """``triton://HOST:PORT/NAME`` -> (``HOST:PORT``, ``NAME``) for a URL naming one server (see
    :func:`parse_urls`)."""
    addrs, name = parse_urls(url)
    if len(addrs) != 1:
        raise InputError(f"{url!r} names {len(addrs)} servers where one is expected")
    return addrs[0], name


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


MAX_REPLAY = 1000  # frames per stream kept for a failover replay


class TritonBackend(StepBackend):
    """Streams through a Triton forecast model; ``batch_size`` slots = that many Triton sequences.

    ``timeout`` (seconds, finite, > 0; ``gmg-infer --timeout``) bounds every request: connecting, each step
    and the END requests of :meth:`close`. With one server, a server that does not answer in time is one
    :class:`ServeError` naming it and the timeout; after that, :meth:`close` sends no END to it (the server
    frees the sequences after its idle timeout).

    Several servers (``triton://H1:P1,H2:P2/NAME``, replicas of one repository): each slot is routed to the
    least-loaded ready server (:mod:`gmg_deploy.runtime.triton_pool`) and keeps it. When its server fails
    (connection refused/reset, deadline exceeded, model not ready), the slot moves to another ready server as a
    new sequence (START) and the client replays the slot's last ``replay`` observed frames (default: the
    model's ``pre``; a bounded ring per slot, emptied by ``reset``) ending with the current one; other slots
    are not touched. Each move is one dict in :attr:`failovers`. No server left: one :class:`ServeError`.
    """

    name = "triton"
    graph_kinds = ("forecast",)
    supports_snapshot = False  # the state lives in the server

    def __init__(self, url: str, *, batch_size: int = 1, device: str = "cpu", timeout: float = 60.0,
                 replay: int | None = None) -> None:
        if str(device) != "cpu":
            raise InputError("backend triton runs on the server; use device cpu on the client")
        self._set_batch_size(batch_size)
        self.addresses, self.model = parse_urls(url)
        self.address = self.addresses[0]
        self.url = str(url)
        self.timeout = check_timeout(timeout)
        #: Why the END requests of :meth:`close` failed (None: they did not, or were not needed).
        self.end_error: str | None = None
        #: One dict per stream moved to another server: slot, from, to, reason, replayed (frames sent again
        #: before the current one), detect_s (the failed request, incl. its timeout), seconds (health check +
        #: replay until the stream answered again), step (the slot's observed frames before the failure).
        self.failovers: list[dict[str, Any]] = []
        self._unanswered: set[str] = set()  # servers whose request timed out: stopped or overloaded
        g = _import_client()
        self._g = g
        self.pool = ServerPool(self.addresses, self.model, self.timeout, g)
        self._closed = True  # until the constructor completes
        try:
            self._connect(replay)
        except BaseException:
            self.pool.close()
            raise
        self._closed = False

    def _connect(self, replay: int | None) -> None:
        raw, where, errors = None, None, []
        for a in self.addresses:  # every server health-checked; the metadata of the ready ones must agree
            why = self.pool.check(a)
            if why is None:
                try:
                    text = self.pool.metadata_text(a, METADATA_PARAM)
                except Exception as e:  # noqa: BLE001 - gone between the two requests
                    why = describe(e, self.timeout)
            if why is not None:
                self.pool.failed[a] = why
                errors.append((a, why))
                continue
            if not text:
                raise MetadataError(f"model {self.model!r} on {a} has no gmg-deploy metadata; "
                                    "write its repository with gmg-triton")
            if raw is not None and text != raw:
                raise ServeError(f"model {self.model!r} on {a} differs from the one on {where}; serve replicas of "
                                 "one gmg-triton repository")
            raw, where = raw or text, where or a
        if raw is None:
            a, why = errors[0]
            if len(self.addresses) == 1:
                if "timeout" in why:
                    raise ServeError(self._timeout_message("connecting", a))
                if "not ready" in why:
                    raise ServeError(f"model {self.model!r} is not ready on {a}; check gmg-serve's log")
                raise ServeError(f"cannot reach Triton at {a} ({why}); start it with gmg-serve")
            raise self.pool.no_server_left()
        label = f"model {self.model!r} on {where}"
        self._set_metadata(GraphMetadata.from_json(raw, label), label)
        self._set_device("cpu")
        self._allocate()  # also ``horizon`` and the ``rollout`` buffer (a forecast graph)
        window = int(self.config.pre_seq_length) if replay is None else replay
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_REPLAY:
            raise InputError(f"replay={replay!r} must be a whole number of frames in 1..{MAX_REPLAY}")
        self.replay = window
        self.rings: list[deque] = [deque(maxlen=window) for _ in range(self.batch_size)]
        self.sequence_ids = [_new_id() for _ in range(self.batch_size)]
        self._start = [True] * self.batch_size
        self._steps = [0] * self.batch_size  # frames each slot observed (failover replays do not count)
        self.server_of: list[str] = []
        for _ in range(self.batch_size):
            a = self.pool.pick(set())
            if a is None:
                raise self.pool.no_server_left()
            self.server_of.append(a)

    def _timeout_message(self, what: str, address: str | None = None) -> str:
        return (f"Triton at {address or self.address} (model {self.model!r}) did not answer within the "
                f"{self.timeout:g} s timeout while {what}; the server is stopped, hung or overloaded - check "
                "gmg-serve, or raise --timeout")

    # ------------------------------------------------------------------ requests
    def _send(self, frames: dict[int, np.ndarray], *, end: bool = False) -> tuple[dict, dict]:
        """One request per slot (``frames[slot]`` ``(C,H,W)``) to its server, all in flight at once, all
        answered (or failed) within ``timeout`` s -> ({slot: forecast (1,K,C,H,W)}, {slot: error})."""
        g = self._g
        dtype, _ = _NP_TRITON[self.frame_in.dtype]
        results: dict[int, Any] = {}
        errors: dict[int, Any] = {}
        lock = threading.Lock()
        done = threading.Semaphore(0)
        frame_name, forecast_name = self.signature.frame_input, self.signature.frame_output

        def callback(slot: int) -> Any:
            def cb(result: Any, error: Any) -> None:
                with lock:
                    if error is not None:
                        errors[slot] = error
                    else:
                        results[slot] = result.as_numpy(forecast_name)
                done.release()
            return cb

        t_end = time.monotonic() + self.timeout + 2.0  # the client's own deadline fires first; this is a backstop
        for slot, frame in frames.items():
            inp = g.InferInput(frame_name, [1, *frame.shape], dtype)
            inp.set_data_from_numpy(np.ascontiguousarray(frame[None]))
            try:
                self.pool.client(self.server_of[slot]).async_infer(
                    self.model, [inp], callback(slot), sequence_id=self.sequence_ids[slot],
                    sequence_start=self._start[slot], sequence_end=end, client_timeout=self.timeout)
            except Exception as e:  # noqa: BLE001 - connection refused and the like: this slot's error
                with lock:
                    errors[slot] = e
                done.release()
        for _ in frames:
            if not done.acquire(timeout=max(0.0, t_end - time.monotonic())):
                break
        with lock:
            for slot in frames:
                if slot not in results and slot not in errors:
                    errors[slot] = _Deadline()
            return dict(results), dict(errors)

    def _raise_request_error(self, slot: int, e: Any, what: str) -> None:
        msg = _short(e)
        hint = ""
        if "START" in msg and "sequence" in msg:
            hint = ("; the server dropped this stream after its idle timeout (gmg-triton --idle-timeout): "
                    "reset() the stream to start it over")
        raise ServeError(f"Triton model {self.model!r} at {self.server_of[slot]}: {msg}{hint}")

    def _step(self, frames: np.ndarray) -> dict[int, np.ndarray]:
        """Every slot observes its frame (``frames[slot]``); failed servers' slots fail over -> forecasts."""
        t0 = time.monotonic()
        for slot in range(self.batch_size):
            self.rings[slot].append(np.array(frames[slot], copy=True))
        results, errors = self._send({s: frames[s] for s in range(self.batch_size)})
        for s in range(self.batch_size):
            if s in results:
                self._start[s] = False
        if not errors:
            return results
        for s, e in errors.items():
            if not is_failover_error(e):
                self._raise_request_error(s, e, "forecasting")
        results.update(self._failover(errors, time.monotonic() - t0))
        return results

    def _failover(self, errors: dict[int, Any], detect_s: float) -> dict[int, np.ndarray]:
        """Move every slot of ``errors`` to a ready server (START, replay its ring) -> their forecasts."""
        out: dict[int, np.ndarray] = {}
        exclude: set[str] = set()
        pending = dict(errors)
        while pending:
            for s, e in pending.items():
                a = self.server_of[s]
                why = describe(e, self.timeout)
                self.pool.failed[a] = why
                exclude.add(a)
                if "timeout" in why:
                    self._unanswered.add(a)
            t1 = time.monotonic()
            moved: dict[int, tuple[str, str]] = {}
            for s in sorted(pending):
                old = self.server_of[s]
                new = self.pool.pick(exclude)
                if new is None:
                    if len(self.addresses) == 1:
                        e = pending[s]
                        if "timeout" in describe(e, self.timeout):
                            raise ServeError(self._timeout_message("forecasting"))
                        raise ServeError(f"Triton model {self.model!r} at {old}: {_short(e)}")
                    raise self.pool.no_server_left()
                self.pool.release(old)
                self._unanswered.discard(new)  # it passed a health check: it answers again
                self.server_of[s] = new
                self.sequence_ids[s] = _new_id()
                self._start[s] = True
                moved[s] = (old, describe(pending[s], self.timeout))
            got, failed = self._replay(list(moved))
            seconds = time.monotonic() - t1
            for s, r in sorted(got.items()):
                old, why = moved[s]
                self.failovers.append({"slot": s, "from": old, "to": self.server_of[s], "reason": why,
                                       "replayed": len(self.rings[s]) - 1, "detect_s": round(detect_s, 4),
                                       "seconds": round(seconds, 4), "step": self._steps[s]})
                out[s] = r
            for s, e in failed.items():
                if not is_failover_error(e):
                    self._raise_request_error(s, e, "replaying")
            pending = failed
        return out

    def _replay(self, slots: list[int]) -> tuple[dict, dict]:
        """Send each slot's ring (oldest first, START on its first frame) to its new server, slots side by
        side, the rings aligned to end together -> (the last frame's forecasts, errors)."""
        n = max(len(self.rings[s]) for s in slots)
        live = set(slots)
        failed: dict[int, Any] = {}
        last: dict[int, np.ndarray] = {}
        for j in range(n):
            batch = {s: self.rings[s][j - (n - len(self.rings[s]))] for s in live if j >= n - len(self.rings[s])}
            if not batch:
                continue
            got, errs = self._send(batch)
            for s in got:
                self._start[s] = False
            failed.update(errs)
            live -= set(errs)
            last.update(got)
        return {s: last[s] for s in live}, failed

    def run_impl(self, src: int, dst: int, from_pred: bool) -> None:
        if from_pred:
            raise InputError(f"a Triton stream forecasts at most K={self.horizon} frames, right after observe() (the "
                             "server's state only advances on observe; after reset() observe a frame first)")
        if self._closed:
            raise InputError("this Triton forecaster is closed; open a new one")
        frames = self.frame_in.numpy()
        outs = self._step(frames)
        for i in range(self.batch_size):
            self.rollout[i].copy_(torch.from_numpy(np.array(outs[i][0])))
            self._steps[i] += 1
        self.sets[dst].pred.copy_(self.rollout[:, 0])

    def reset_slots(self, slots: list[int]) -> None:
        """The next frame of each slot in ``slots`` starts a new sequence (START: zero state in the server)."""
        for s in slots:
            self._start[s] = True
            self.rings[s].clear()

    def close(self) -> None:
        """END every started sequence (frees its state in the server early), within one ``timeout``, then close
        the connections. A failed END does not raise (the server frees idle sequences after its idle timeout;
        the reason is kept in :attr:`end_error`); no END goes to a server whose request timed out."""
        if self._closed:
            return
        self._closed = True
        started = [s for s in range(self.batch_size) if not self._start[s]]
        try:
            skip = [s for s in started if self.server_of[s] in self._unanswered]
            send = [s for s in started if s not in skip]
            if send:
                zeros = np.zeros(tuple(self.frame_in.shape[1:]), _NP_TRITON[self.frame_in.dtype][1])
                _, errs = self._send({s: zeros for s in send}, end=True)
                if errs:
                    s, e = next(iter(errs.items()))
                    why = describe(e, self.timeout)
                    self.end_error = (self._timeout_message("ending the streams", self.server_of[s])
                                      if "timeout" in why else
                                      f"Triton model {self.model!r} at {self.server_of[s]}: {_short(e)}")
            if skip:
                self.end_error = self._timeout_message("forecasting", self.server_of[skip[0]]) + " (no END sent)"
        finally:
            self.pool.close()


class _Deadline(Exception):
    """No answer by the backstop deadline (the client's own timeout should have fired first)."""

    def status(self) -> str:
        return "StatusCode.DEADLINE_EXCEEDED"


def _new_id() -> int:
    return secrets.randbits(62) + 1


def _is_deadline(e: Any) -> bool:
    """A gRPC DEADLINE_EXCEEDED (the per-request client timeout fired)."""
    status = e.status() if hasattr(e, "status") and callable(e.status) else ""
    return "DEADLINE_EXCEEDED" in str(status) or "deadline exceeded" in _short(e).lower()


def _short(e: Any) -> str:
    msg = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
    return " ".join(str(msg).split())[:200]
