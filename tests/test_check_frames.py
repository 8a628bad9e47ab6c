"""The one frame check (``gmg_deploy.checks.check_frames``): streaming frames and whole sequences."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gmg_deploy.checks import check_frames
from gmg_deploy.errors import InputError
from gmg_deploy.evaluate.rollout import sequence_frames


def test_stream_frames_numpy_and_torch():
    assert check_frames(np.zeros((2, 1, 4, 4), np.float32), 2, (1, 4, 4)) == 4
    assert check_frames(torch.zeros(2, 3, 1, 4, 4, dtype=torch.bfloat16), 2, (1, 4, 4)) == 5
    with pytest.raises(InputError, match=r"has shape \(3, 1, 4, 4\); expected \(B,C,H,W\) or \(B,T,C,H,W\) with B=2"):
        check_frames(np.zeros((3, 1, 4, 4), np.float32), 2, (1, 4, 4))
    x = torch.zeros(2, 1, 4, 4)
    x[1, 0, 2, 3] = float("inf")
    with pytest.raises(InputError, match=r"first at index \(1, 0, 2, 3\)"):
        check_frames(x, 2, (1, 4, 4))
    assert check_frames(x, 2, (1, 4, 4), finite=False) == 4


def test_sequences_need_five_axes_and_enough_steps():
    a = np.zeros((5, 3, 1, 4, 4), np.float64)
    assert check_frames(a, None, (1, 4, 4), "data", sequences=True, min_steps=3) == 5
    with pytest.raises(InputError, match=r"data has shape \(5, 3, 1, 4, 4\); expected \(N, T>=4, 1, 4, 4\)"):
        check_frames(a, None, (1, 4, 4), "data", sequences=True, min_steps=4)
    with pytest.raises(InputError, match=r"expected \(N, T>=1, 1, 4, 4\)"):
        check_frames(a[:, 0], None, (1, 4, 4), "data", sequences=True)
    with pytest.raises(InputError, match="has dtype int16; give floating-point frames"):
        check_frames(a.astype(np.int16), None, (1, 4, 4), "data", sequences=True)
    a[2, 1, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"data holds NaN or infinite values \(sequence 2, frame 1\)"):
        check_frames(a, None, (1, 4, 4), "data", sequences=True)


def test_sequence_frames_reads_the_graph_config():
    meta = {"config": {"in_shape": [6, 1, 4, 4], "pre_seq_length": 3}}
    out = sequence_frames(np.ones((2, 3, 1, 4, 4), np.float64), meta)
    assert out.dtype == np.float32 and out.shape == (2, 3, 1, 4, 4)
    with pytest.raises(InputError, match=r"calibration data has shape \(2, 2, 1, 4, 4\); expected \(N, T>=3"):
        sequence_frames(np.ones((2, 2, 1, 4, 4)), meta, "calibration data")
