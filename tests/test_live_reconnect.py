"""ReconnectingSource and Backoff: reopen on EOF / stall / failed connects, epochs, stop while waiting."""
from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

pytest.importorskip("av")

from gmg_deploy.errors import InputError
from gmg_deploy.video.reconnect import Backoff, LiveFrame, ReconnectEvent, ReconnectingSource
from gmg_deploy.video.source import Frame, FrameSource, SourceError
from video_helpers import demo_frames, encode_clip


def test_backoff_doubles_with_jitter_bounded_and_resets():
    b = Backoff(initial=0.5, maximum=30.0, jitter=0.5, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(12)]
    bases = [min(30.0, 0.5 * 2 ** i) for i in range(12)]
    for d, base in zip(delays, bases):
        assert base * 0.5 <= d <= base
    assert max(delays) <= 30.0
    again = Backoff(initial=0.5, maximum=30.0, jitter=0.5, rng=random.Random(7))
    assert [again.next_delay() for _ in range(12)] == delays  # seeded: reproducible
    b.reset()
    assert 0.25 <= b.next_delay() <= 0.5
    exact = Backoff(initial=1, maximum=4, jitter=0)
    assert [exact.next_delay() for _ in range(5)] == [1, 2, 4, 4, 4]


@pytest.mark.parametrize("kw", [dict(initial=0), dict(initial=2, maximum=1), dict(jitter=1.0), dict(factor=0.5)])
def test_backoff_refuses_bad_settings(kw):
    with pytest.raises(InputError):
        Backoff(**kw)


def _fast_backoff() -> Backoff:
    return Backoff(initial=0.01, maximum=0.02, jitter=0.5, rng=random.Random(0))


def test_reopens_a_source_at_eof_with_new_epochs_and_events(tmp_path):
    clip = encode_clip(tmp_path / "c.mkv", demo_frames(5, 16, 16, True))
    lines: list[str] = []
    rs = ReconnectingSource(lambda: FrameSource(str(clip)), backoff=_fast_backoff(), log=lines.append,
                            max_reconnects=10)
    assert rs.is_live and rs.size == (16, 16)
    frames, events = [], []
    for item in rs:
        (events if isinstance(item, ReconnectEvent) else frames).append(item)
        if len(frames) == 15:
            rs.stop()
    assert len(frames) == 15 and all(isinstance(f, LiveFrame) for f in frames)
    assert [f.epoch for f in frames] == [0] * 5 + [1] * 5 + [2] * 5
    assert [f.index for f in frames] == list(range(15))
    assert [e.epoch for e in events] == [1, 2] and all(e.reason == "end of stream" for e in events)
    assert rs.reconnects == 2 and rs.attempts == 2 and rs.losses == 2
    assert any("reconnected (#1)" in ln and "end of stream" in ln for ln in lines)
    np.testing.assert_array_equal(frames[0].image, frames[5].image)  # the same clip again


def test_gives_up_after_max_reconnects_with_one_line(tmp_path):
    clip = encode_clip(tmp_path / "c.mkv", demo_frames(3, 16, 16, True))
    calls = []

    def factory():
        calls.append(1)
        if len(calls) > 1:
            raise SourceError("cannot connect to rtsp://127.0.0.1:9/x (Connection refused)")
        return FrameSource(str(clip))

    rs = ReconnectingSource(factory, backoff=_fast_backoff(), max_reconnects=3, yield_events=False)
    got = []
    with pytest.raises(SourceError, match=r"not back after 3 reconnect attempt\(s\) \(--max-reconnects 3\)"):
        for f in rs:
            got.append(f)
    assert len(got) == 3 and rs.attempts == 3 and len(calls) == 4


class _Stalling:
    """A source that delivers ``n`` frames, then nothing until released (a frozen camera / silent server)."""

    spec, kind, fps, size = "rtsp://127.0.0.1:9/stall", "url", 10.0, (8, 8)

    def __init__(self, n: int) -> None:
        self.n, self.release, self.closed = n, threading.Event(), threading.Event()

    def __iter__(self):
        for i in range(self.n):
            yield Frame(np.full((8, 8, 3), i, np.uint8), i, time.perf_counter())
        self.release.wait(30)

    def close(self) -> None:
        self.closed.set()


def test_a_stall_past_the_deadline_reconnects():
    made: list[_Stalling] = []

    def factory():
        made.append(_Stalling(2))
        return made[-1]

    lines: list[str] = []
    rs = ReconnectingSource(factory, stall_timeout=0.2, backoff=_fast_backoff(), log=lines.append)
    frames = []
    for item in rs:
        if isinstance(item, LiveFrame):
            frames.append(item)
        if len(frames) == 4:
            rs.stop()
    assert [f.epoch for f in frames] == [0, 0, 1, 1]
    assert rs.events[0].reason == "stall (no frame for 0.2 s)"
    assert any("source lost after 2 frame(s): stall" in ln for ln in lines)
    made[0].release.set()  # the abandoned pump ends and closes its own source
    assert made[0].closed.wait(10)


def test_stop_interrupts_the_backoff_wait_promptly(tmp_path):
    clip = encode_clip(tmp_path / "c.mkv", demo_frames(2, 16, 16, True))
    first = FrameSource(str(clip))
    waiting = threading.Event()

    def log(line: str) -> None:
        if "reconnecting in" in line:
            waiting.set()

    rs = ReconnectingSource(lambda: FrameSource(str(clip)), first=first, log=log,
                            backoff=Backoff(initial=60, maximum=60, jitter=0))
    out: list = []
    t = threading.Thread(target=lambda: out.extend(rs), daemon=True)
    t.start()
    assert waiting.wait(10)  # EOF seen, now in a 60 s backoff
    rs.close()
    t.join(10)  # far below the 60 s wait: the wait is on an Event
    assert not t.is_alive() and len(out) == 2


def test_refuses_bad_options(tmp_path):
    clip = encode_clip(tmp_path / "c.mkv", demo_frames(2, 16, 16, True))
    with pytest.raises(InputError, match="--stall-timeout"):
        ReconnectingSource(lambda: FrameSource(str(clip)), stall_timeout=0)
    with pytest.raises(InputError, match="--max-reconnects"):
        ReconnectingSource(lambda: FrameSource(str(clip)), max_reconnects=-1)


def test_reader_answers_down_at_once_while_disconnected_then_frames_again(tmp_path):
    from gmg_deploy.video.reconnect import DOWN, ReconnectingReader, reconnecting

    clip = encode_clip(tmp_path / "c.mkv", demo_frames(3, 16, 16, True))
    in_backoff, release, done = threading.Event(), threading.Event(), threading.Event()

    class _GatedBackoff(Backoff):
        calls = 0

        def next_delay(self) -> float:
            self.calls += 1
            in_backoff.set()
            (release if self.calls == 1 else done).wait(30)  # the test decides when the source comes back
            return 0.0

    rs = reconnecting(FrameSource(str(clip)), backoff=_GatedBackoff(), max_reconnects=5,
                      connect_timeout=5, stall_timeout=5)
    reader = ReconnectingReader(rs, maxsize=8)
    try:
        assert in_backoff.wait(10)  # 3 frames decoded, EOF, now waiting to reconnect
        got = reader.latest()
        assert isinstance(got, LiveFrame) and got.epoch == 0 and reader.dropped == 2
        assert reader.latest() is DOWN  # disconnected: no wait, the batch goes on
        release.set()
        deadline = time.monotonic() + 30
        while (f := reader.latest()) is DOWN or f.epoch == 0:
            assert time.monotonic() < deadline
            threading.Event().wait(0.01)
        assert f.epoch == 1 and rs.reconnects == 1
    finally:
        release.set()
        done.set()
        reader.close()
    reader._thread.join(30)
    assert not reader._thread.is_alive()


def test_reader_raises_the_give_up_error(tmp_path):
    from gmg_deploy.video.reconnect import DOWN, ReconnectingReader

    clip = encode_clip(tmp_path / "c.mkv", demo_frames(2, 16, 16, True))
    rs = ReconnectingSource(lambda: FrameSource(str(clip)), backoff=_fast_backoff(), max_reconnects=2,
                            yield_events=False)
    reader = ReconnectingReader(rs)
    try:
        deadline = time.monotonic() + 30
        with pytest.raises(SourceError, match="--max-reconnects 2"):
            while time.monotonic() < deadline:
                if reader.latest() is DOWN:
                    threading.Event().wait(0.01)
    finally:
        reader.close()
