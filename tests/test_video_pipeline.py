"""gmg_deploy.video: preprocessing against NumPy, panels, sources and writer on clips encoded here, drop policy."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from gmg_deploy.errors import InputError
from gmg_deploy.runtime import Forecaster
from gmg_deploy.video.panel import GAP, LABEL_H, column_labels, panel_geometry, render_panel
from gmg_deploy.video.preprocess import LUMA, Preprocessor
from gmg_deploy.video.source import FrameSource, LatestFrameReader, SourceError
from gmg_deploy.video.stream import open_sources, run_streams
from gmg_deploy.video.writer import VideoWriter
from video_helpers import demo_frames, encode_clip, read_clip

torch.set_num_threads(1)
RESIZE_TOL = 1.0 / 255  # Pillow resizes the 8-bit frame: results are rounded to 1/255


def _blocks(a: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Mean over fy x fx blocks of ``(h, w)``."""
    h, w = a.shape
    return a.reshape(h // fy, fy, w // fx, fx).mean(axis=(1, 3))


def test_preprocess_crop_pad_stretch_against_numpy():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)  # h=64, w=96
    u = img.astype(np.float64) / 255.0
    # crop: the centred 64x64 square, 4x4 blocks; RGB model keeps the channels
    got = Preprocessor((3, 16, 16), "crop").to_unit_planes(img)
    want = np.stack([_blocks(u[:, 16:80, c], 4, 4) for c in range(3)])
    np.testing.assert_allclose(got, want, atol=RESIZE_TOL)
    # grey model: BT.601 luma, then area average
    got = Preprocessor((1, 16, 16), "crop").to_unit_planes(img)
    np.testing.assert_allclose(got[0], _blocks((u @ LUMA.astype(np.float64))[:, 16:80], 4, 4), atol=RESIZE_TOL)
    # pad: 96x64 -> 16x(10.67 -> 11)? use 64x32 for integer factors: 16x8 centred rows 4..12
    img2 = img[:32, :64]
    got = Preprocessor((1, 16, 16), "pad").to_unit_planes(img2)
    want = np.zeros((16, 16))
    want[4:12] = _blocks(img2.astype(np.float64) @ LUMA.astype(np.float64) / 255.0, 4, 4)
    np.testing.assert_allclose(got[0], want, atol=RESIZE_TOL)
    # stretch: 2x4 blocks
    got = Preprocessor((3, 16, 16), "stretch").to_unit_planes(img2)
    want = np.stack([_blocks(img2[..., c].astype(np.float64) / 255.0, 2, 4) for c in range(3)])
    np.testing.assert_allclose(got, want, atol=RESIZE_TOL)
    # grey input to an RGB model: the grey plane three times; odd, non-square sizes, enlarging
    g = rng.integers(0, 256, (7, 5), dtype=np.uint8)
    out = Preprocessor((3, 16, 12), "crop").to_unit_planes(g)
    assert out.shape == (3, 16, 12) and np.array_equal(out[0], out[2]) and 0 <= out.min() and out.max() <= 1
    flat = Preprocessor((1, 9, 13), "pad").to_unit_planes(np.full((33, 47, 3), 200, np.uint8))
    assert flat.shape == (1, 9, 13) and np.allclose(flat[flat > 0], 200 / 255, atol=1e-5)


def test_normalisation_and_exact_inverse():
    mean = np.array([0.1, 0.2, 0.3]).reshape(1, 3, 1, 1)  # OpenSTL keeps a leading batch axis
    std = np.array([0.5, 0.25, 2.0]).reshape(1, 3, 1, 1)
    pre = Preprocessor((3, 8, 8), "stretch", mean, std)
    img = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    unit = img.transpose(2, 0, 1).astype(np.float32) / 255
    x = pre(img)
    np.testing.assert_allclose(x, (unit - mean[0]) / std[0], atol=1e-6)
    np.testing.assert_allclose(pre.to_unit(x), unit, atol=1e-6)
    np.testing.assert_array_equal(pre.to_uint8(x), img)
    seq = np.stack([x, x])[None]  # (1,2,C,H,W) broadcasts too
    np.testing.assert_allclose(pre.to_unit(seq)[0, 1], unit, atol=1e-6)
    scalar = Preprocessor((1, 4, 4), "crop", 0.5, 0.25)
    np.testing.assert_allclose(scalar.normalise(np.ones((1, 4, 4), np.float32)), 2.0)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(frame_shape=(2, 8, 8)), "1 (grey) or 3 (RGB) channels; this one has C=2"),
    (dict(frame_shape=(1, 8, 8), fit="zoom"), "--fit 'zoom' is unknown"),
    (dict(frame_shape=(1, 8, 8), std=0.0), "test_std in the model metadata holds zeros"),
    (dict(frame_shape=(3, 8, 8), mean=[0.1, 0.2]), "test_mean in the model metadata has shape (2,)"),
])
def test_preprocess_refuses(kwargs, msg):
    with pytest.raises(InputError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        Preprocessor(**kwargs)


def test_panel_geometry_cells_and_labels():
    rng = np.random.default_rng(2)
    cells = [[rng.integers(0, 256, (12, 20, 3), dtype=np.uint8) for _ in range(4)], [None, None, None, None]]
    labels = column_labels(5, True)
    assert labels == ["observed t", "forecast t+1", "forecast t+5", "true t+5"]
    geo = panel_geometry((12, 20), 4, 2)
    assert geo.scale == 14 and geo.cell == (280, 168)  # nearest-neighbour x14: at least 160 px high
    assert geo.size == (GAP + 4 * (280 + GAP), 2 * (LABEL_H + 168 + GAP) + GAP)
    assert geo.size[0] % 2 == 0 and geo.size[1] % 2 == 0
    img = render_panel(cells, labels)
    assert img.shape == (geo.size[1], geo.size[0], 3) and img.dtype == np.uint8
    for c in range(4):
        x, y = geo.cell_origin(0, c)
        np.testing.assert_array_equal(img[y : y + 168, x : x + 280], cells[0][c].repeat(14, 0).repeat(14, 1))
        for r in range(2):  # every column of every row is labelled: white text in its label bar
            x, y = geo.cell_origin(r, c)
            bar = img[y - LABEL_H : y, x : x + 280]
            assert (bar.min(axis=2) > 200).sum() > 20  # antialiased white text on the grey bar
        x, y = geo.cell_origin(1, c)
        assert img[y : y + 168, x : x + 280].max() < 64  # a missing cell stays dark
    # labels differ column to column
    bars = [img[geo.cell_origin(0, c)[1] - LABEL_H : geo.cell_origin(0, c)[1], geo.cell_origin(0, c)[0]:][:, :80]
            for c in range(4)]
    assert not np.array_equal(bars[1], bars[2])


@pytest.mark.parametrize("suffix,h,w,colour,fps", [(".mkv", 33, 47, False, 12), (".mkv", 20, 35, True, 25),
                                                   (".mp4", 64, 96, True, 30)])
def test_source_size_fps_frames(tmp_path, suffix, h, w, colour, fps):
    frames = demo_frames(23, h, w, colour)
    path = encode_clip(tmp_path / f"clip{suffix}", frames, fps)
    src = FrameSource(str(path))
    assert (src.size, src.fps, src.kind, src.is_live) == ((w, h), fps, "file", False)
    got = [f.image for f in src]
    assert len(got) == 23 and [f.shape for f in got[:1]] == [(h, w, 3)]
    if suffix == ".mkv":  # lossless: decoded frames are the source frames
        want = frames if colour else np.repeat(frames[..., None], 3, -1)
        np.testing.assert_array_equal(np.stack(got), want)


def test_empty_truncated_missing_sources(tmp_path):
    empty = encode_clip(tmp_path / "empty.mkv", np.zeros((0, 16, 16), np.uint8))
    with pytest.raises(SourceError, match="holds 0 video frames"):
        list(FrameSource(str(empty)))
    full = encode_clip(tmp_path / "full.mp4", demo_frames(20, 32, 32, True))
    (tmp_path / "cut.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(SourceError, match="cannot open .*cut.mp4 .*is it a complete, readable video"):
        FrameSource(str(tmp_path / "cut.mp4"))
    lossless = encode_clip(tmp_path / "full.mkv", demo_frames(20, 32, 32, False))
    (tmp_path / "cut.mkv").write_bytes(lossless.read_bytes()[: lossless.stat().st_size // 2])
    got = []  # a cut Matroska file decodes up to the cut, then says it was cut short (its header has the duration)
    with pytest.raises(SourceError, match=r"cut.mkv ended after \d+ frame\(s\), .* of the 2.00 s its header announces"):
        got.extend(FrameSource(str(tmp_path / "cut.mkv")))
    assert 0 < len(got) < 20
    with pytest.raises(SourceError, match="does not exist"):
        FrameSource(str(tmp_path / "nope.mp4"))
    with pytest.raises(SourceError, match="camera /dev/video97 does not exist"):
        FrameSource("/dev/video97")
    (tmp_path / "text.avi").write_text("not a video")
    with pytest.raises(SourceError, match="cannot open"):
        FrameSource(str(tmp_path / "text.avi"))


def test_writer_atomic_fps_and_frames(tmp_path):
    out = tmp_path / "w.mp4"
    w = VideoWriter(out, 12.5, (64, 48))
    for i in range(7):
        w.write(np.full((48, 64, 3), 30 * i, np.uint8))
    assert not out.exists() and len(list(tmp_path.glob(".w.mp4.*.tmp"))) == 1  # in progress: a temp file only
    w.close()
    frames, fps, size = read_clip(out)
    assert (len(frames), fps, size, w.codec) == (7, 12.5, (64, 48), "libx264")
    assert abs(int(frames[3].mean()) - 90) <= 3
    w2 = VideoWriter(tmp_path / "a.mp4", 10, (64, 48))
    w2.write(np.zeros((48, 64, 3), np.uint8))
    w2.abort()
    assert not list(tmp_path.glob("a.mp4*")) and not list(tmp_path.glob(".a.mp4*"))
    with pytest.raises(InputError, match="does not fit the 64x48 video"):
        VideoWriter(tmp_path / "b.mp4", 10, (64, 48)).write(np.zeros((48, 60, 3), np.uint8))


def _reference(video_onnx_path, clip, K: int, fit: str = "crop") -> np.ndarray:
    """Forecasts of one clip computed here with the plain Forecaster API, frame by frame."""
    fc = Forecaster.open(video_onnx_path)
    pre = Preprocessor.for_metadata(fc.frame_shape, fc.metadata, fit)
    out = []
    for f in FrameSource(str(clip)):
        fc.observe(pre(f.image)[None])
        out.append(fc.forecast(K)[0])
    return np.stack(out)


def test_round_trip_decode_forecast_encode(tmp_path, video_onnx_path):
    clip = encode_clip(tmp_path / "c.mkv", demo_frames(14, 24, 40, True), fps=12)
    fc = Forecaster.open(video_onnx_path)
    rep = run_streams(fc, open_sources([str(clip)]), horizon=3, video_out=tmp_path / "o.mp4", keep_preds=True,
                      keep_observed=True)
    s = rep.summary()
    assert (s["frames"], s["steps"], s["dropped"], s["video_frames"], s["partial"]) == (14, 14, 0, 14, False)
    preds = np.stack(rep.streams[0].preds)
    np.testing.assert_allclose(preds, _reference(video_onnx_path, clip, 3), atol=1e-6)
    frames, fps, size = read_clip(tmp_path / "o.mp4")
    geo = panel_geometry((16, 16), 4, 1)
    assert (len(frames), fps, size) == (14, 12.0, geo.size)
    pre = Preprocessor.for_metadata(fc.frame_shape, fc.metadata)
    obs = rep.streams[0].observed
    for t in (2, 9):  # columns: observed t, t+1, t+3, true t+3 (the observed frame 3 steps later)
        want = [obs[t], preds[t, 0], preds[t, 2], obs[t + 3]]
        for c, m in enumerate(want):
            x, y = geo.cell_origin(0, c)
            cell = frames[t][y : y + geo.cell[1], x : x + geo.cell[0]].astype(np.float32)
            ref = pre.to_uint8(m).repeat(geo.scale, 0).repeat(geo.scale, 1).astype(np.float32)
            assert np.abs(cell - ref).mean() < 4.0  # H.264 at crf 18
    x, y = geo.cell_origin(0, 3)
    assert frames[-1][y : y + geo.cell[1], x : x + geo.cell[0]].max() < 64  # no truth for the last K frames
    assert rep.latencies_s and s["model_ms_per_step"] > 0 and s["end_to_end_fps"] > 0


def test_two_videos_in_one_batch_equal_each_alone_and_freed_slots(tmp_path, video_onnx_path):
    a = encode_clip(tmp_path / "a.mkv", demo_frames(12, 30, 30, False, seed=3), fps=10)
    b = encode_clip(tmp_path / "b.mkv", demo_frames(7, 18, 26, True, seed=4), fps=10)
    ref_a, ref_b = _reference(video_onnx_path, a, 4), _reference(video_onnx_path, b, 4)
    rep = run_streams(Forecaster.open(video_onnx_path, batch_size=2), open_sources([str(a), str(b)]), horizon=4,
                      keep_preds=True)
    assert [s.frames for s in rep.streams] == [12, 7] and rep.steps == 12  # b ended, a went on
    np.testing.assert_allclose(np.stack(rep.streams[0].preds), ref_a, atol=1e-5)
    np.testing.assert_allclose(np.stack(rep.streams[1].preds), ref_b, atol=1e-5)
    # one slot, two sources: b waits for a's slot, which is reset for it
    rep = run_streams(Forecaster.open(video_onnx_path, batch_size=1), open_sources([str(a), str(b)]), horizon=4,
                      keep_preds=True)
    assert [s.frames for s in rep.streams] == [12, 7] and rep.steps == 19
    np.testing.assert_allclose(np.stack(rep.streams[1].preds), ref_b, atol=1e-5)


def test_drop_policy_with_a_slowed_backend(tmp_path, video_onnx_path):
    clip = encode_clip(tmp_path / "live.mkv", demo_frames(45, 32, 32, False), fps=30)
    rep = run_streams(Forecaster.open(video_onnx_path), open_sources([str(clip)]), horizon=2, realtime=True,
                      on_step=lambda step: time.sleep(0.1))  # the backend takes > 0.1 s per frame: ~3 frames
    s = rep.summary()
    assert s["realtime"] and s["frames"] + s["dropped"] == 45
    assert s["dropped"] >= 20 and 5 <= s["frames"] <= 25
    # newest frame first: a frame waits at most one slow step (plus scheduling noise), not the whole backlog
    assert s["latency_ms"]["p50"] < 400  # a backlog of 45 frames at 0.1 s each would reach seconds
    # without --realtime the same file is read frame by frame: nothing dropped
    rep = run_streams(Forecaster.open(video_onnx_path), open_sources([str(clip)]), horizon=2)
    assert (rep.frames, rep.dropped) == (45, 0)


def test_reader_queue_is_bounded(tmp_path):
    clip = encode_clip(tmp_path / "q.mkv", demo_frames(40, 16, 16, False), fps=30)
    r = LatestFrameReader(FrameSource(str(clip)), maxsize=3)  # unpaced: decoding outruns the consumer
    time.sleep(0.5)
    f = r.latest()
    assert r.max_queued <= 3 and f is not None
    seen = 1
    while r.latest() is not None:
        seen += 1
    assert seen + r.dropped == 40 and r.dropped > 0
    r.close()


def test_interrupt_keeps_what_was_processed(tmp_path, video_onnx_path):
    clip = encode_clip(tmp_path / "c.mkv", demo_frames(20, 16, 16, False), fps=10)

    def stop_at_6(step):
        if step == 5:
            raise KeyboardInterrupt

    out = tmp_path / "part.mp4"
    rep = run_streams(Forecaster.open(video_onnx_path), open_sources([str(clip)]), horizon=2, video_out=out,
                      on_step=stop_at_6)
    assert rep.interrupted and rep.partial and rep.video_frames == 5 == rep.frames
    assert len(read_clip(out)[0]) == 5 and not list(tmp_path.glob(".*.tmp"))


def test_writer_respects_the_umask_and_keeps_the_previous_file_on_abort(tmp_path):
    """The panel video is published like every other output (io.atomic_path): 0666 minus the umask, and an
    abandoned write leaves the previous file untouched and no temp file."""
    import os
    import stat

    out = tmp_path / "v.mp4"
    old = os.umask(0o022)
    try:
        with VideoWriter(out, 10, (64, 48)) as w:
            w.write(np.zeros((48, 64, 3), np.uint8))
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        before = out.read_bytes()
        w2 = VideoWriter(out, 10, (64, 48))
        w2.write(np.full((48, 64, 3), 200, np.uint8))
        w2.abort()
    finally:
        os.umask(old)
    assert out.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))
