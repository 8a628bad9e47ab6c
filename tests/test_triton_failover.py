"""Issue 22: several gmg-serve replicas behind one triton:// URL - sticky routing, failover by replay (exact vs a
local reset+replay), and Triton's own sequence-batcher QA cases (L0_sequence_batcher) ported to the python flavour."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import threading

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import write_lightning_ckpt

pytest.importorskip("tritonclient.grpc", reason="tritonclient not installed (pip install gmg-deploy[serve])")
HAVE_SERVER = importlib.util.find_spec("pytriton") is not None
live = pytest.mark.skipif(not HAVE_SERVER, reason="needs nvidia-pytriton (pip install gmg-deploy[serve])")
TOL = 1e-5


# ---------------------------------------------------------------- the one triton:// parser, now with lists
def test_url_lists_parse():
    from gmg_deploy.runtime.triton_backend import parse_url, parse_urls

    assert parse_urls("triton://127.0.0.1:8001,127.0.0.1:8011/gmg") == (("127.0.0.1:8001", "127.0.0.1:8011"), "gmg")
    assert parse_urls("triton://[::1]:8001,h:1/m") == (("[::1]:8001", "h:1"), "m")
    assert parse_url("triton://h:8001/gmg") == ("h:8001", "gmg")


@pytest.mark.parametrize("url,needle", [
    ("triton://h:1,h:1/gmg", "twice"), ("triton://h:1,/gmg", "not HOST:PORT"), ("triton://h:1,h:99999/gmg", "valid"),
    ("triton://h:1,h/gmg", "not HOST:PORT"), ("triton://h:1,h:2/", "valid"),
    ("triton://" + ",".join(f"h:{p}" for p in range(1, 70)) + "/gmg", "at most 64"),
])
def test_bad_url_lists_are_one_error(url, needle, tmp_path):
    from gmg_deploy.cli.infer_cmd import main as infer
    from gmg_deploy.errors import InputError
    from gmg_deploy.runtime.forecaster import Forecaster

    with pytest.raises(InputError, match=needle):
        Forecaster.open(url)
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((1, 4, 1, 16, 16), np.float32))
    r = CliRunner().invoke(infer, ["--engine", url, "--input", str(data), "--out", str(tmp_path / "o.npy")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and r.output.startswith("error: "), r.output


def test_gmg_triton_prints_how_to_run_replicas(tmp_path):
    from gmg_deploy.cli.triton_cmd import main as triton
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint

    model = load_checkpoint(write_lightning_ckpt("gmg_tiny", tmp_path / "g.ckpt"))
    onnx.save(build_proto(model, graph="forecast"), tmp_path / "fc.onnx")
    r = CliRunner().invoke(triton, ["--model", str(tmp_path / "fc.onnx"), "-o", str(tmp_path / "repo"), "--name", "m"])
    assert r.exit_code == 0, r.output
    line = r.output.strip().splitlines()[-1]
    assert line.count("gmg-serve ") == 2 and "--grpc-port 8011" in line
    assert line.endswith("--engine triton://127.0.0.1:8001,127.0.0.1:8011/m")


# ================================================================ live
@pytest.fixture(scope="module")
def fo_repo(tmp_path_factory):
    """``gmg`` (idle 30 s) and ``gmg2`` (oldest strategy with 2 candidate slots: a backlog beyond them)."""
    from gmg_deploy.cli.triton_cmd import main as triton
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint

    d = tmp_path_factory.mktemp("fo")
    model = load_checkpoint(write_lightning_ckpt("gmg_tiny", d / "g.ckpt"))
    fc = d / "fc.onnx"
    onnx.save(build_proto(model, graph="forecast"), fc)
    for name, streams in (("gmg", "16"), ("gmg2", "2")):
        r = CliRunner().invoke(triton, ["--model", str(fc), "-o", str(d / "repo"), "--flavour", "python", "--name",
                                        name, "--max-batch", "8", "--max-streams", streams, "--idle-timeout", "30"])
        assert r.exit_code == 0, r.output
    return fc, d / "repo"


def _stop_all(*servers) -> None:
    from test_triton_live import assert_exited, descendants

    kids = set()
    for s in servers:
        kids |= descendants(s.proc.pid)
        s.kill()
    assert_exited(kids, "processes left after the test's servers stopped")


def _local(fc_path, n: int = 1):
    from gmg_deploy.runtime.forecaster import Forecaster

    return Forecaster.open(fc_path, batch_size=n, threads=1)


@live
def test_failover_replays_and_equals_a_local_reset_replay(fo_repo, tmp_path):
    """Two replicas, two slots (one on each: least-loaded). A SIGSTOPped server (deadline exceeded under
    ``timeout``) moves its slot; later the other server is SIGKILLed (connection refused/reset) and both slots
    move back. Each moved slot's forecasts equal a local forecaster that resets that slot and replays the same
    ring of frames at the same point; an untouched slot equals a stream never interrupted. No server left:
    one ServeError, and gmg-infer says so in one line."""
    from test_hardening_triton import _server_pids
    from test_triton_live import Served

    from gmg_deploy.errors import ServeError
    from gmg_deploy.runtime.forecaster import Forecaster

    fc_path, repo = fo_repo
    a, b = Served(repo), Served(repo)
    try:
        url = f"triton://127.0.0.1:{a.grpc},127.0.0.1:{b.grpc}/gmg"
        W = 3
        frames = np.random.default_rng(5).random((2, 12, 1, 16, 16), dtype=np.float32)
        remote = Forecaster.open(url, batch_size=2, timeout=3, replay=W)
        be = remote.backend
        assert sorted(be.server_of) == sorted([f"127.0.0.1:{a.grpc}", f"127.0.0.1:{b.grpc}"])  # one stream each
        on_a = be.server_of.index(f"127.0.0.1:{a.grpc}")
        refs = [_local(fc_path), _local(fc_path)]  # per slot, reset + replay at each failover
        errs: list[float] = []

        def step(t: int) -> None:
            got, fut = remote.observe(frames[:, t]), remote.forecast(4)
            for s in (0, 1):
                errs.append(float(np.abs(got[s] - refs[s].observe(frames[s : s + 1, t])[0]).max()))
                errs.append(float(np.abs(fut[s] - refs[s].forecast(4)[0]).max()))

        def replay_locally(s: int, t: int) -> None:  # the slot's last W frames, ending before frame t
            refs[s].reset()
            refs[s].observe(frames[s : s + 1, max(0, t - W + 1) : t])

        for t in range(4):
            step(t)
        triton_a, _ = _server_pids(a)
        os.kill(triton_a, signal.SIGSTOP)
        try:
            replay_locally(on_a, 4)
            step(4)
        finally:
            os.kill(triton_a, signal.SIGCONT)
        assert len(be.failovers) == 1, be.failovers
        f = be.failovers[0]
        assert f["slot"] == on_a and f["to"] == f"127.0.0.1:{b.grpc}" and f["replayed"] == W - 1 and f["step"] == 4
        assert "timeout" in f["reason"] and f["detect_s"] >= 3 and be.server_of == [f"127.0.0.1:{b.grpc}"] * 2
        for t in range(5, 8):
            step(t)
        b.kill()
        replay_locally(0, 8)
        replay_locally(1, 8)
        step(8)
        assert [x["slot"] for x in be.failovers[1:]] == [0, 1] and be.server_of == [f"127.0.0.1:{a.grpc}"] * 2
        for t in range(9, 11):
            step(t)
        assert max(errs) < TOL, max(errs)
        a.kill()
        with pytest.raises(ServeError, match="no Triton server left"):
            remote.observe(frames[:, 11])
        remote.close()
        from gmg_deploy.cli.infer_cmd import main as infer

        data = tmp_path / "x.npy"
        np.save(data, frames[:1])
        r = CliRunner().invoke(infer, ["--engine", url, "--input", str(data), "--out", str(tmp_path / "o.npy")])
        assert r.exit_code == 2 and r.output.startswith("error: no Triton server left"), r.output
        assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "o.npy").exists()
    finally:
        _stop_all(a, b)


@pytest.fixture(scope="module")
def one_server(fo_repo):
    from test_triton_live import Served

    served = Served(fo_repo[1])
    try:
        yield served
    finally:
        _stop_all(served)


@live
def test_a_dead_replica_at_open_is_skipped_and_infer_counts_failovers(fo_repo, one_server, tmp_path):
    """A listed server that is down when the stream opens gets no stream; gmg-infer --json reports failovers."""
    from gmg_deploy.cli.infer_cmd import main as infer
    from gmg_deploy.runtime.forecaster import Forecaster
    from gmg_deploy.serve.server import free_local_ports

    dead = free_local_ports(1)[0]
    url = f"triton://127.0.0.1:{dead},127.0.0.1:{one_server.grpc}/gmg"
    with Forecaster.open(url, batch_size=3) as fc:
        assert fc.backend.server_of == [f"127.0.0.1:{one_server.grpc}"] * 3
        assert f"127.0.0.1:{dead}" in fc.backend.pool.failed
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(2).random((2, 8, 1, 16, 16), dtype=np.float32))
    r = CliRunner().invoke(infer, ["--engine", url, "--input", str(data), "--out", str(tmp_path / "o.npy"),
                                   "--batch-size", "2", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["failovers"] == []


def _request(port: int, model: str, cid: int, frame: np.ndarray, *, start: bool = False, end: bool = False):
    from test_hardening_triton import _request as req

    return req(port, model, cid, frame, start=start, end=end)


@live
def test_start_on_a_live_id_resets_and_end_frees(one_server):
    """L0_sequence_batcher (test_simple_sequence / test_no_sequence_start / test_no_sequence_end): START on a
    live CORRID zeroes its state; after END the id is free: a request without START is refused by the
    batcher, naming START."""
    import tritonclient.grpc as g

    frame = np.random.default_rng(4).random((1, 1, 16, 16), dtype=np.float32)
    port = one_server.grpc
    first = _request(port, "gmg", 501, frame, start=True)
    second = _request(port, "gmg", 501, frame)
    assert np.abs(second - first).max() > 1e-4
    again = _request(port, "gmg", 501, frame, start=True)  # START on the live id
    assert np.abs(again - first).max() < 1e-6
    _request(port, "gmg", 501, frame, end=True)
    with pytest.raises(g.InferenceServerException, match="START"):
        _request(port, "gmg", 501, frame)  # freed by END: needs a START again
    with pytest.raises(g.InferenceServerException, match="START"):
        _request(port, "gmg", 777_777, frame)  # missing START on a new id


@live
def test_backlog_beyond_the_candidate_slots_is_served_in_turn_and_clients_stay_apart(fo_repo, one_server):
    """L0_sequence_batcher (test_backlog / test_backlog_fill / test_multi_sequence, concurrent sequences):
    ``gmg2`` batches 2 candidate sequences; four single-stream clients at once: two are served, the other two
    wait in Triton's backlog until an END (``close``) frees a slot, then are served in turn. Every stream equals
    its own local run - no client sees another's state, each sequence's requests are applied in order.
    (A backlogged stream whose slots never END waits until the batcher's idle timeout frees one.)"""
    from gmg_deploy.runtime.forecaster import Forecaster

    fc_path, _ = fo_repo
    url = f"{one_server.url}/gmg2"
    n = 4
    frames = np.random.default_rng(6).random((n, 4, 1, 16, 16), dtype=np.float32)
    outs: list = [None] * n
    failures: list = []

    def client(i: int) -> None:
        try:
            with Forecaster.open(url, batch_size=1, timeout=120) as fc:
                outs[i] = [(fc.observe(frames[i : i + 1, t]), fc.forecast(4)) for t in range(4)]
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    assert not failures and all(o is not None for o in outs), failures
    for i in range(n):
        with _local(fc_path) as loc:
            for t in range(4):
                p, f = outs[i][t]
                assert np.abs(p - loc.observe(frames[i : i + 1, t])).max() < TOL
                assert np.abs(f - loc.forecast(4)).max() < TOL
