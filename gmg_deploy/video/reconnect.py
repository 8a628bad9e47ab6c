"""Reconnect a live source (URL, camera): reopen on EOF, decode error or stall, with bounded backoff.

:class:`ReconnectingSource` wraps a source *factory* (``() -> FrameSource``). Iterating it yields
:class:`LiveFrame` s and, each time the source comes back after a loss, one :class:`ReconnectEvent`
(``yield_events=False``: frames only; the event is still counted, logged and kept in ``events``). Every
frame carries the connection's ``epoch``: a frame whose epoch differs from the previous one's starts a
new, unrelated piece of video, so a stream loop resets that stream's recurrent state there.

A *stall* is no frame within ``stall_timeout`` seconds (a frame-wait deadline): each connection is
decoded by its own pump thread, which closes its own source when it ends (PyAV objects are never
touched from two threads); an abandoned pump ends by itself within the source's read timeout.
Every wait (backoff, frame wait) is on a :class:`threading.Event`/condition, so :meth:`stop` ends the
iteration at once. :class:`ReconnectingReader` is the stream loop's reader for it: it answers
:data:`DOWN` at once while the source is disconnected, so the other streams go on.
"""
from __future__ import annotations

import collections
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from gmg_deploy.errors import InputError
from gmg_deploy.video.source import Frame, FrameSource, LatestFrameReader, SourceError

DEFAULT_STALL_TIMEOUT = 5.0
#: how many events :attr:`ReconnectingSource.events` keeps (the counters count all of them)
EVENTS_KEPT = 100


class Backoff:
    """Exponential backoff with jitter: ``initial`` doubling (``factor``) up to ``maximum`` seconds.

    Each delay is the current base times a random factor in ``[1 - jitter, 1]`` (``rng``: a seeded
    :class:`random.Random` makes it reproducible); :meth:`reset` after a healthy connection.
    """

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0, jitter: float = 0.5,
                 rng: random.Random | None = None) -> None:
        if not (initial > 0 and maximum >= initial and factor >= 1 and 0 <= jitter < 1):
            raise InputError(f"backoff needs 0 < initial ({initial}) <= maximum ({maximum}), factor ({factor}) "
                             f">= 1 and 0 <= jitter ({jitter}) < 1")
        self.initial, self.maximum, self.factor, self.jitter = float(initial), float(maximum), float(factor), jitter
        self.rng = rng or random.Random()
        self._base = self.initial

    def next_delay(self) -> float:
        """The next wait in seconds (never above ``maximum``, never below ``initial * (1 - jitter)``)."""
        base = self._base
        self._base = min(self.maximum, self._base * self.factor)
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self._base = self.initial


@dataclass
class LiveFrame(Frame):
    """A :class:`Frame` with the ``epoch`` of the connection it came from (0 for the first one)."""

    epoch: int = 0


@dataclass
class ReconnectEvent:
    """The source came back: why it was lost, how many attempts it took, how long it was down."""

    spec: str
    reason: str
    epoch: int          # the epoch of the frames that follow
    attempts: int       # reopen attempts during this outage
    down_s: float       # from the loss to the first frame of the new connection


class _Pump(threading.Thread):
    """Decode one connection into a small queue; closes its source when done; ``abandon()`` to drop it."""

    def __init__(self, source: Any, cv: threading.Condition, depth: int = 4) -> None:
        super().__init__(name=f"reconnect-pump:{getattr(source, 'spec', '?')}", daemon=True)
        self.source, self.cv, self.depth = source, cv, depth
        self.items: collections.deque[tuple[str, Any]] = collections.deque()
        self.abandoned = False
        self.dropped = 0

    def run(self) -> None:
        try:
            for f in self.source:
                with self.cv:
                    if self.abandoned:
                        return
                    if len(self.items) >= self.depth:  # the consumer is behind: drop the oldest
                        self.items.popleft()
                        self.dropped += 1
                    self.items.append(("frame", f))
                    self.cv.notify_all()
            self._put(("end", None))
        except BaseException as e:  # handed to the iterating thread
            self._put(("error", e))
        finally:
            try:
                self.source.close()
            except Exception:
                pass

    def _put(self, item: tuple[str, Any]) -> None:
        with self.cv:
            self.items.append(item)
            self.cv.notify_all()

    def abandon(self) -> None:
        with self.cv:
            self.abandoned = True
            self.items.clear()


class ReconnectingSource:
    """A live source that reopens itself; quacks like :class:`~gmg_deploy.video.source.FrameSource`.

    ``factory()`` opens a new connection (raising :class:`SourceError` when it cannot); ``first`` is an
    already opened one (so a bad address still fails before any work). ``max_reconnects``: ``None`` for
    unlimited, else the run's total reopen attempts after which iteration raises :class:`SourceError`.
    ``log`` receives one line per loss and per reconnect, with the reason.
    """

    def __init__(self, factory: Callable[[], Any], *, first: Any | None = None, spec: str | None = None,
                 stall_timeout: float = DEFAULT_STALL_TIMEOUT, backoff: Backoff | None = None,
                 max_reconnects: int | None = None, yield_events: bool = True,
                 log: Callable[[str], None] | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        if not stall_timeout > 0:
            raise InputError(f"--stall-timeout {stall_timeout} must be > 0 seconds")
        if max_reconnects is not None and (isinstance(max_reconnects, bool) or max_reconnects < 0):
            raise InputError(f"--max-reconnects {max_reconnects} must be >= 0")
        self.factory = factory
        self._first = first if first is not None else factory()
        self.spec = spec or str(getattr(self._first, "spec", "source"))
        self.kind = getattr(self._first, "kind", "url")
        self.fps = getattr(self._first, "fps", None)
        self.size = getattr(self._first, "size", (0, 0))
        self.stall_timeout = float(stall_timeout)
        self.backoff = backoff or Backoff()
        self.max_reconnects = max_reconnects
        self.yield_events = yield_events
        self.log = log
        self.clock = clock
        self.attempts = 0          # reopen attempts, all outages together
        self.reconnects = 0        # outages that ended with frames again
        self.losses = 0            # times the source was lost (EOF, error, stall)
        self.frames_decoded = 0
        self.disconnected_s = 0.0  # time between a loss and the next frame (not model latency)
        self.connected = False
        self.events: collections.deque[ReconnectEvent] = collections.deque(maxlen=EVENTS_KEPT)
        self._stop = threading.Event()
        self._cv = threading.Condition()
        self._pump: _Pump | None = None

    @property
    def is_live(self) -> bool:
        return True

    @property
    def dropped(self) -> int:
        return self._pump.dropped if self._pump is not None else 0

    def stop(self) -> None:
        """End the iteration now (from any thread): wakes every wait."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    def _next_item(self, pump: _Pump) -> tuple[str, Any]:
        """The pump's next item, ``("stall", None)`` past the frame-wait deadline, ``("stop", None)``."""
        deadline = self.clock() + self.stall_timeout
        with self._cv:
            while True:
                if self._stop.is_set():
                    return "stop", None
                if pump.items:
                    return pump.items.popleft()
                left = deadline - self.clock()
                if left <= 0:
                    return "stall", None
                self._cv.wait(left)

    def _open(self) -> Any | None:
        """Reopen with backoff until it works; ``None`` when stopped; raises past ``max_reconnects``."""
        while True:
            if self.max_reconnects is not None and self.attempts >= self.max_reconnects:
                raise SourceError(f"input {self.spec} lost and not back after {self.attempts} reconnect "
                                  f"attempt(s) (--max-reconnects {self.max_reconnects})")
            delay = self.backoff.next_delay()
            self._say(f"note: {self.spec}: reconnecting in {delay:.2f} s (attempt {self.attempts + 1})")
            if self._stop.wait(delay):
                return None
            self.attempts += 1
            try:
                return self.factory()
            except SourceError as e:
                self._say(f"note: {self.spec}: reconnect attempt {self.attempts} failed ({e})")
            if self._stop.is_set():
                return None

    def __iter__(self) -> Iterator[LiveFrame | ReconnectEvent]:
        src, self._first = self._first, None
        if src is None:
            raise SourceError(f"input {self.spec} is already being read")
        epoch, lost_at, lost_reason, outage_attempts = 0, None, "", 0
        try:
            while True:
                if self._stop.is_set():  # stopped before this connection was read
                    src.close()
                    return
                pump = _Pump(src, self._cv)
                self._pump = pump
                pump.start()
                got = 0
                while True:
                    kind, item = self._next_item(pump)
                    if kind == "frame":
                        if got == 0:
                            self.connected = True
                            self.backoff.reset()
                            if lost_at is not None:
                                if self.frames_decoded:
                                    epoch += 1  # unrelated to what came before: the stream's state resets
                                down = self.clock() - lost_at
                                self.disconnected_s += down
                                self.reconnects += 1
                                ev = ReconnectEvent(self.spec, lost_reason, epoch, self.attempts - outage_attempts,
                                                    down)
                                self.events.append(ev)
                                self._say(f"note: {self.spec}: reconnected (#{self.reconnects}) after "
                                          f"{down:.2f} s down; lost on {lost_reason}")
                                lost_at = None
                                if self.yield_events:
                                    yield ev
                        got += 1
                        yield LiveFrame(item.image, self.frames_decoded, item.t_arrived, epoch)
                        self.frames_decoded += 1
                        continue
                    if kind == "stop":
                        return
                    reason = {"end": "end of stream",
                              "stall": f"stall (no frame for {self.stall_timeout:g} s)"}.get(kind)
                    if reason is None:
                        reason = f"decode error ({item})"
                    break
                pump.abandon()
                self.connected = False
                self.losses += 1
                if lost_at is None:
                    lost_at, lost_reason, outage_attempts = self.clock(), reason, self.attempts
                    self._say(f"note: {self.spec}: source lost after {got} frame(s): {reason}")
                src = self._open()
                if src is None:
                    return
        finally:
            self.connected = False
            if self._pump is not None:
                self._pump.abandon()

    def close(self) -> None:
        """Stop; the pump thread closes its own source (within the source's read timeout)."""
        self.stop()
        if self._first is not None:
            try:
                self._first.close()
            except Exception:
                pass
            self._first = None


#: :meth:`ReconnectingReader.latest` while the source is down: no frame this step, the stream goes on later
DOWN = object()


class ReconnectingReader(LatestFrameReader):
    """A :class:`LatestFrameReader` over a :class:`ReconnectingSource` that never holds the batch up.

    :meth:`latest` returns :data:`DOWN` at once while the source is disconnected (and after waiting
    ``stall_timeout`` plus ``grace`` seconds for a connected one), a frame, or ``None`` at the end; the
    give-up error of ``max_reconnects`` is raised. :meth:`close` stops the source first, so a backoff
    wait ends at once.
    """

    def __init__(self, source: ReconnectingSource, *, maxsize: int = 2, grace: float = 1.0) -> None:
        super().__init__(source, maxsize=maxsize)
        self.grace = grace

    def latest(self, timeout: float | None = None) -> Any:  # type: ignore[override]
        src: ReconnectingSource = self.source  # type: ignore[assignment]
        with self._cv:
            idle = not self._q and not self._done
        if idle and not src.connected:
            return DOWN
        wait = src.stall_timeout + self.grace if timeout is None else min(timeout, src.stall_timeout + self.grace)
        try:
            return super().latest(timeout=wait)
        except SourceError:
            with self._cv:
                if self._done:
                    raise  # the source's own error (gave up), not a wait that ran out
            return DOWN

    def close(self) -> None:
        self.source.stop()  # type: ignore[attr-defined]
        super().close()


def reconnecting(source: FrameSource, *, connect_timeout: float = 10.0,
                 stall_timeout: float = DEFAULT_STALL_TIMEOUT, max_reconnects: int | None = None,
                 log: Callable[[str], None] | None = None, backoff: Backoff | None = None) -> ReconnectingSource:
    """Wrap an opened live :class:`FrameSource` so it reopens its own address (``--no-reconnect``: don't)."""
    spec = source.spec
    return ReconnectingSource(lambda: FrameSource(spec, connect_timeout=connect_timeout), first=source,
                              spec=spec, stall_timeout=stall_timeout, max_reconnects=max_reconnects, log=log,
                              backoff=backoff, yield_events=False)
