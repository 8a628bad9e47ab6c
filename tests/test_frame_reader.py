"""The one frame reader (gmg_deploy.frames): every command's input rules, on real files."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gmg_deploy.cli.common import load_sequences
from gmg_deploy.errors import InputError
from gmg_deploy.evaluate.rollout import load_frames_npy
from gmg_deploy.frames import count_sequences, read_frames
from gmg_deploy.runtime.inputs import load_frames
from gmg_deploy.video.preprocess import Preprocessor
from video_helpers import demo_frames, encode_clip, read_clip

RNG = np.random.default_rng(3)


def _model(in_shape, **norm):
    """Real metadata of a graph taking ``in_shape`` frames (what the commands pass the reader)."""
    from conftest import fixture_hparams
    from gmg_deploy.graph.metadata import GraphMetadata
    from gmg_deploy.model.config import ModelConfig

    cfg = ModelConfig.from_dict({**ModelConfig.from_hparams(fixture_hparams("gmg_tiny")).to_dict(), "in_shape": in_shape})
    return GraphMetadata.build(cfg, graph="step", warp="gridsample", batch_mode="invariant", batch=None, **norm)


MODEL = _model([4, 1, 16, 16], test_mean=0.1, test_std=0.5)


@pytest.fixture(scope="module")
def grey_clip(tmp_path_factory):
    return encode_clip(tmp_path_factory.mktemp("clips") / "grey.mkv", demo_frames(9, 33, 47, False), fps=10)


def test_float32_npy_is_memory_mapped_not_copied(tmp_path):
    a = RNG.random((2, 5, 1, 16, 16), dtype=np.float32)
    np.save(tmp_path / "a.npy", a)
    for got in (read_frames(tmp_path / "a.npy", (1, 16, 16)), load_frames_npy(tmp_path / "a.npy"),
                load_sequences(str(tmp_path / "a.npy"), None, 1)):
        assert isinstance(got, np.memmap) and not got.flags.writeable and got.dtype == np.float32
        np.testing.assert_array_equal(got, a)


def test_uint8_and_uint16_are_scaled_for_every_command(tmp_path):
    u8 = (RNG.random((2, 5, 1, 8, 8)) * 255).astype(np.uint8)
    np.save(tmp_path / "u8.npy", u8)
    want = u8.astype(np.float32) * np.float32(1 / 255)
    # gmg-infer's reader, gmg-calibrate/gmg-compare's --data (refused before: "give floating-point frames")
    for got in (load_frames(tmp_path / "u8.npy", (1, 8, 8)), load_sequences(str(tmp_path / "u8.npy"), None, 1),
                load_frames_npy(tmp_path / "u8.npy")):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert load_sequences(str(tmp_path / "u8.npy"), 1, 1).shape == (1, 5, 1, 8, 8)  # --max-sequences
    u16 = (RNG.random((1, 3, 1, 8, 8)) * 65535).astype(np.uint16)
    np.save(tmp_path / "u16.npy", u16)
    np.testing.assert_allclose(read_frames(tmp_path / "u16.npy"), u16 / np.float32(65535), rtol=1e-6)
    np.save(tmp_path / "f64.npy", u16 / 65535.0)
    assert read_frames(tmp_path / "f64.npy").dtype == np.float32
    np.save(tmp_path / "i32.npy", u16.astype(np.int32))
    with pytest.raises(InputError, match=r"^--data i32\.npy has dtype int32; give float frames"):
        read_frames(tmp_path / "i32.npy", what="--data")


def test_npz_named_unnamed_and_ambiguous(tmp_path):
    a = RNG.random((2, 4, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "named.npz", frames=a, other=a[:1])
    np.savez(tmp_path / "one.npz", x=a)
    np.savez(tmp_path / "two.npz", a=a, b=a)
    np.testing.assert_array_equal(read_frames(tmp_path / "named.npz"), a)
    np.testing.assert_array_equal(read_frames(tmp_path / "one.npz"), a)
    assert count_sequences(tmp_path / "named.npz") == 2 and count_sequences(tmp_path / "two.npz") is None
    for read in (lambda p: read_frames(p), load_frames_npy, lambda p: load_sequences(str(p), None, 1)):
        with pytest.raises(InputError, match=r"two\.npz holds arrays \['a', 'b'\]; keep one, or name the frames"):
            read(tmp_path / "two.npz")


def test_four_d_arrays(tmp_path):
    nthw = RNG.random((3, 5, 8, 8), dtype=np.float32)
    np.save(tmp_path / "nthw.npy", nthw)
    got = read_frames(tmp_path / "nthw.npy", (1, 8, 8))  # one-channel model: N sequences of one channel
    assert got.shape == (3, 5, 1, 8, 8) and count_sequences(tmp_path / "nthw.npy", (1, 8, 8)) == 3
    np.testing.assert_array_equal(got[:, :, 0], nthw)
    # the model asked lazily (gmg-calibrate/gmg-compare --data): the same reading
    assert load_sequences(str(tmp_path / "nthw.npy"), None, 1, model=lambda: _model([5, 1, 8, 8])
                          ).shape == (3, 5, 1, 8, 8)
    tchw = RNG.random((6, 3, 8, 8), dtype=np.float32)
    np.save(tmp_path / "tchw.npy", tchw)
    assert read_frames(tmp_path / "tchw.npy", (3, 8, 8)).shape == (1, 6, 3, 8, 8)  # one sequence
    assert count_sequences(tmp_path / "tchw.npy", (3, 8, 8)) == 1
    t1hw = RNG.random((6, 1, 8, 8), dtype=np.float32)  # both readings fit: its last axes are the frame -> one sequence
    np.save(tmp_path / "t1hw.npy", t1hw)
    assert read_frames(tmp_path / "t1hw.npy", (1, 8, 8)).shape == (1, 6, 1, 8, 8)
    # without a model the last three axes are the frame: one sequence (gmg-calibrate's reading before)
    assert read_frames(tmp_path / "tchw.npy").shape == (1, 6, 3, 8, 8)
    assert load_frames_npy(tmp_path / "nthw.npy").shape == (1, 3, 5, 8, 8)
    with pytest.raises(InputError, match=r"^input nthw\.npy has shape \(3, 5, 8, 8\), one channel per frame "
                                         r"\(N,T,H,W\), but the model takes C=3 channels; give \(N,T,3,H,W\) frames, "
                                         r"or \(T,3,8,8\) for one sequence$"):
        read_frames(tmp_path / "nthw.npy", (3, 8, 8))
    with pytest.raises(InputError, match=r"has frames \(C,H,W\)=\(1, 5, 8\); the model takes \(1, 8, 8\)"):
        read_frames(_save(tmp_path / "odd.npy", nthw[..., :5, :]), (1, 8, 8))


def _save(path, a):
    np.save(path, a)
    return path


def test_png_folder_is_one_sequence(tmp_path):
    d = tmp_path / "pngs"
    d.mkdir()
    seq = (RNG.random((4, 8, 8)) * 255).astype(np.uint8)
    for t in range(4):
        Image.fromarray(seq[t]).save(d / f"f{t:02d}.png")
    got = read_frames(d, (1, 8, 8))
    assert got.shape == (1, 4, 1, 8, 8) and count_sequences(d) == 1
    np.testing.assert_allclose(got[0, :, 0], seq / np.float32(255), atol=1e-7)
    rgb = load_sequences(str(d), None, 1, model=_model([4, 3, 8, 8]))  # an RGB model: converted
    assert rgb.shape == (1, 4, 3, 8, 8)
    np.testing.assert_allclose(rgb[0, :, 1], seq / np.float32(255), atol=1e-7)


def test_video_file_is_one_sequence_fitted_to_the_model(grey_clip):
    raw, _, _ = read_clip(grey_clip)
    got = read_frames(grey_clip, (1, 16, 16))
    assert got.shape == (1, 9, 1, 16, 16) and got.dtype == np.float32 and count_sequences(grey_clip) == 1
    pre = Preprocessor((1, 16, 16))
    np.testing.assert_allclose(got[0], np.stack([pre(f) for f in raw]), atol=1e-6)
    # with the model's metadata (as gmg-calibrate/gmg-compare pass it): its units, as gmg-infer feeds video
    normed = load_sequences(str(grey_clip), None, 1, model=MODEL)
    np.testing.assert_allclose(normed, (got - 0.1) / 0.5, atol=1e-5)
    assert read_frames(grey_clip, (3, 8, 12), fit="pad").shape == (1, 9, 3, 8, 12)
    with pytest.raises(InputError, match=r"^--data grey\.mkv is a video: its frames are fitted to the model's "
                                         r"\(C,H,W\), which is not known here"):
        read_frames(grey_clip, what="--data")


def test_video_over_the_memory_budget_is_refused(grey_clip, monkeypatch):
    monkeypatch.setenv("GMG_MEMORY_BUDGET_MB", "0.5")  # 9 frames of 3x64x64 float32 (48 KiB), twice: 0.84 MiB
    with pytest.raises(InputError, match=r"^--data grey\.mkv holds 9 video frames; as 3x64x64 float32 frames they "
                                         r"need 0\.8 MiB, over the memory budget of 0\.5 MiB \(\$GMG_MEMORY_BUDGET_MB"):
        read_frames(grey_clip, (3, 64, 64), what="--data")
    from gmg_deploy.video.source import FrameSource

    monkeypatch.setattr(FrameSource, "expected_frames", property(lambda self: None))  # no count in the header
    with pytest.raises(InputError, match=r"holds at least 6 video frames; as 3x64x64 float32 frames they need at "
                                         r"least 0\.6 MiB, over the memory budget of 0\.5 MiB"):
        read_frames(grey_clip, (3, 64, 64), what="--data")


def test_bad_values_and_files_are_one_line(tmp_path):
    a = RNG.random((2, 5, 1, 8, 8), dtype=np.float32)
    a[1, 3, 0, 2, 2] = np.nan
    np.save(tmp_path / "nan.npy", a)
    with pytest.raises(InputError, match=r"^--data nan\.npy holds NaN or infinite values \(sequence 1, frame 3\)"):
        load_sequences(str(tmp_path / "nan.npy"), None, 1)
    np.save(tmp_path / "px.npy", np.round(RNG.random((1, 3, 1, 8, 8)) * 255).astype(np.float32))
    with pytest.raises(InputError, match="look like 8-bit pixels"):
        read_frames(tmp_path / "px.npy")
    (tmp_path / "text.npy").write_text("1,2,3\n")
    with pytest.raises(InputError, match=r"text\.npy is not a NumPy \.npy/\.npz file \(it holds text\)"):
        read_frames(tmp_path / "text.npy")
    with pytest.raises(InputError, match=r"^--data .*none\.npy does not exist$"):
        load_sequences(str(tmp_path / "none.npy"), None, 1)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match=r"give a \.npy/\.npz array \(N,T,C,H,W\) or a folder of PNG frames"):
        read_frames(tmp_path / "x.txt")
    with pytest.raises(InputError, match="is a live source; give a video file"):
        read_frames("rtsp://127.0.0.1:1/cam", (1, 8, 8))
    np.save(tmp_path / "flat.npy", np.zeros((4, 8), np.float32))
    with pytest.raises(InputError, match=r"has shape \(4, 8\); expected \(N,T,C,H,W\) or \(N,T,H,W\)"):
        read_frames(tmp_path / "flat.npy")


def test_calibrate_and_compare_read_a_video(tmp_path, video_onnx_path):
    """``gmg-calibrate --data clip.mkv`` and ``gmg-compare --data clip.mkv``: the clip at the graph's frame size."""
    from gmg_deploy.cli import calibrate_cmd, compare_cmd

    clip = encode_clip(tmp_path / "c.mkv", demo_frames(10, 24, 20, False), fps=10)
    r = CliRunner().invoke(calibrate_cmd.main, [str(video_onnx_path), "--data", str(clip), "-o",
                                                str(tmp_path / "r.json"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["sequences"] == 1
    r = CliRunner().invoke(compare_cmd.main, [str(video_onnx_path), str(video_onnx_path), "--data", str(clip),
                                              "--json", "--check"])
    assert r.exit_code == 0, r.output
    u8 = demo_frames(16, 16, 16, False).reshape(2, 8, 16, 16)  # (N,T,H,W) uint8 for the one-channel graph
    np.save(tmp_path / "u8.npy", u8)
    r = CliRunner().invoke(compare_cmd.main, [str(video_onnx_path), str(video_onnx_path), "--data",
                                              str(tmp_path / "u8.npy"), "--json"])
    assert r.exit_code == 0, r.output
