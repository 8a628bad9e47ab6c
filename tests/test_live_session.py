"""LiveSession in a real loop: the demo model on a reconnecting source; the slot reset makes each comeback
forecast exactly like a fresh start; the live view's /metrics counts the frames and reconnects."""
from __future__ import annotations

import random
import urllib.request

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("prometheus_client")

from gmg_deploy import load_checkpoint
from gmg_deploy.data.demo import demo_checkpoint_path
from gmg_deploy.runtime import Forecaster
from gmg_deploy.video.live_session import LiveSession
from gmg_deploy.video.panel import column_labels, render_panel
from gmg_deploy.video.preprocess import Preprocessor
from gmg_deploy.video.reconnect import Backoff, LiveFrame, ReconnectingSource
from gmg_deploy.video.source import FrameSource
from video_helpers import demo_frames, encode_clip


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a shared machine: one thread is fastest
    yield
    torch.set_num_threads(before)


def test_reset_on_comeback_and_metrics(tmp_path, one_thread):
    n = 4
    clip = encode_clip(tmp_path / "c.mkv", demo_frames(n, 32, 32, False))
    fc = Forecaster.from_model(load_checkpoint(demo_checkpoint_path()), batch_size=1)
    pre = Preprocessor.for_metadata(fc.frame_shape, fc.metadata, "crop")
    K = 3
    rs = ReconnectingSource(lambda: FrameSource(str(clip)), yield_events=False, max_reconnects=5,
                            backoff=Backoff(initial=0.01, maximum=0.02, rng=random.Random(0)))
    s = LiveSession([rs.spec], serve=("127.0.0.1", 0))
    preds: dict[tuple[int, int], np.ndarray] = {}
    resets = []
    try:
        for f in rs:
            assert isinstance(f, LiveFrame)
            if s.frame(0, f):
                fc.reset(slots=[0])
                resets.append(f.epoch)
            x = pre(f.image)[None]
            fc.observe(x)
            fut = fc.forecast(K)
            s.step(0.001, [(0, 0.002)], {0: 0})
            s.panel(render_panel([[pre.to_uint8(x[0]), pre.to_uint8(fut[0, 0]), pre.to_uint8(fut[0, K - 1])]],
                                 column_labels(K, False)))
            preds[(f.epoch, f.index % n)] = np.asarray(fut[0])
            if f.epoch == 2 and f.index % n == n - 1:
                rs.stop()
        with urllib.request.urlopen(s.view.url + "metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        s.close()
        fc.close()
    assert resets == [1, 2] and s.resets == 2
    for e in (1, 2):
        for i in range(n):  # after the reset the state is a fresh start's: the same forecasts as epoch 0
            np.testing.assert_allclose(preds[(e, i)], preds[(0, i)], rtol=0, atol=1e-6)
    assert not np.allclose(preds[(0, 1)], preds[(0, 0)])  # (the frames do differ)
    assert f'gmg_frames_total{{stream="{rs.spec}"}} {3 * n}.0' in text
    assert f'gmg_reconnects_total{{stream="{rs.spec}"}} 2.0' in text
