"""Several Triton servers behind one ``triton://`` URL: health checks, sticky least-loaded routing, failure kinds.

Routing is *least-loaded*, counted over every Triton stream this process has open on each server (ties go to
the server after the one picked last, so many single-stream forecasters alternate). A stream keeps its server
for its life; only a failure moves it. Least-loaded rather than consistent hashing: a client owns its streams
and their count per server, so it can balance them exactly (hashing 16 streams over 2 servers can give 11/5),
and a failover moves only the failed server's streams either way.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any

from gmg_deploy.errors import ServeError

_LOCK = threading.Lock()
_LOAD: dict[str, int] = {}  # address -> streams of this process assigned to it
_LAST = [0]  # rotating tie-break


def is_failover_error(e: Any) -> bool:
    """A request error that means the *server* is gone or unusable (refused/reset connection, deadline exceeded,
    model not ready or unknown) - the stream moves; any other error is the request's own."""
    status = str(e.status()) if hasattr(e, "status") and callable(e.status) else ""
    msg = (e.message() if hasattr(e, "message") and callable(e.message) else str(e)) or ""
    low = str(msg).lower()
    if any(s in status for s in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")):
        return True
    return any(s in low for s in ("deadline exceeded", "unavailable", "connection reset", "socket closed",
                                  "failed to connect", "connection refused", "unknown model", "is not ready",
                                  "no available versions", "not found"))


class ServerPool:
    """The servers of one URL (``addresses``) serving ``model``; one gRPC client per server, opened lazily."""

    def __init__(self, addresses: tuple[str, ...], model: str, timeout: float, grpcclient: Any) -> None:
        self.addresses = tuple(addresses)
        self.model = model
        self.timeout = timeout
        self._g = grpcclient
        self._clients: dict[str, Any] = {}
        #: address -> why it was last found unusable (kept until it passes a health check again)
        self.failed: dict[str, str] = {}
        self._mine: dict[str, int] = {a: 0 for a in self.addresses}  # this pool's share of _LOAD

    def client(self, address: str) -> Any:
        c = self._clients.get(address)
        if c is None:
            c = self._clients[address] = self._g.InferenceServerClient(address)
        return c

    def check(self, address: str) -> str | None:
        """Health check (server ready, model ready) within the timeout -> None if usable, else why not."""
        try:
            c = self.client(address)
            if not c.is_server_ready(client_timeout=self.timeout):
                return "server not ready"
            if not c.is_model_ready(self.model, client_timeout=self.timeout):
                return f"model {self.model!r} not ready"
        except Exception as e:  # noqa: BLE001 - grpc raises InferenceServerException and others when unreachable
            return describe(e, self.timeout)
        self.failed.pop(address, None)
        return None

    def metadata_text(self, address: str, key: str) -> str | None:
        cfg = self.client(address).get_model_config(self.model, as_json=True, client_timeout=self.timeout)["config"]
        return cfg.get("parameters", {}).get(key, {}).get("string_value")

    def pick(self, exclude: set[str]) -> str | None:
        """The least-loaded server not in ``exclude`` that passes a health check (each one that does not is
        added to ``exclude`` and :attr:`failed`), assigned one more stream; None when none is left."""
        while True:
            with _LOCK:
                cands = [a for a in self.addresses if a not in exclude]
                if not cands:
                    return None
                n = len(self.addresses)
                order = sorted(cands, key=lambda a: (_LOAD.get(a, 0), (self.addresses.index(a) - _LAST[0]) % n))
                best = order[0]
                _LOAD[best] = _LOAD.get(best, 0) + 1  # reserved now: streams opening at once spread out
                _LAST[0] = self.addresses.index(best) + 1
            why = self.check(best)
            if why is None:
                self._mine[best] += 1
                return best
            with _LOCK:
                _LOAD[best] = max(0, _LOAD.get(best, 0) - 1)
            self.failed[best] = why
            exclude.add(best)

    def release(self, address: str) -> None:
        """One stream no longer runs on ``address``."""
        if self._mine.get(address, 0) > 0:
            self._mine[address] -= 1
            with _LOCK:
                _LOAD[address] = max(0, _LOAD.get(address, 0) - 1)

    def close(self) -> None:
        for a, n in self._mine.items():
            with _LOCK:
                _LOAD[a] = max(0, _LOAD.get(a, 0) - n)
            self._mine[a] = 0
        for c in self._clients.values():
            with contextlib.suppress(Exception):  # closing a channel to a dead server
                c.close()
        self._clients.clear()

    def no_server_left(self) -> ServeError:
        why = "; ".join(f"{a}: {self.failed.get(a, 'unusable')}" for a in self.addresses)
        return ServeError(f"no Triton server left for model {self.model!r} ({why}); start gmg-serve again "
                          "or check its log")


def describe(e: Any, timeout: float) -> str:
    """A short reason for a request/health-check failure."""
    status = str(e.status()) if hasattr(e, "status") and callable(e.status) else ""
    msg = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
    msg = " ".join(str(msg).split())[:160]
    if "DEADLINE_EXCEEDED" in status or "deadline exceeded" in msg.lower():
        return f"did not answer within the {timeout:g} s timeout"
    return msg or type(e).__name__
