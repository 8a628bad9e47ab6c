"""``gmg-infer`` on video sources (files, URLs, cameras): options checked, streams run, outputs and report."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import click
import numpy as np

from gmg_deploy.checks import check_timeout
from gmg_deploy.cli import signals
from gmg_deploy.cli.common import say_error
from gmg_deploy.cli.infer_options import InferOptions, VideoOptions
from gmg_deploy.errors import InputError
from gmg_deploy.io import atomic_save_npy, atomic_save_npz, check_not_input, check_output_path



def _save_preds(path: Path, arrays: list[np.ndarray]) -> None:
    """One input: a ``.npy``; several: a ``.npz`` with ``input0``, ``input1``, ..."""
    if len(arrays) == 1:
        atomic_save_npy(path, arrays[0])
    else:
        atomic_save_npz(path, {f"input{i}": a for i, a in enumerate(arrays)})


class _Progress:
    """The ``\r`` progress line on stderr (at most once a second); :meth:`end` ends it with a newline, so the
    summary or an error that follows starts on its own line."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._last = 0.0
        self._open = False

    def __call__(self, rep: Any) -> None:
        now = time.perf_counter()
        if self.quiet or now - self._last < 1.0:
            return
        self._last = now
        fps = rep.frames / rep.wall_s if rep.wall_s > 0 else 0.0
        click.echo(f"\rframes {rep.frames}  {fps:.1f} fps  dropped {rep.dropped}", err=True, nl=False)
        self._open = True

    def end(self) -> None:
        if self._open:
            click.echo("", err=True)
            self._open = False


def _write_gif(path: Path, pre_n: int, res: Any, pre: Any) -> tuple[int, tuple[int, int]]:
    """The GIF of the first source: the last frame with K frames of truth after it (else the last frame).

    ``res.observed``/``res.preds`` may hold only the most recent frames (see :func:`gif_window`); both end at
    the same, last processed frame.
    """
    from gmg_deploy.evaluate.strip_gif import write_strip_gif

    obs, preds = np.stack(res.observed), list(res.preds)
    K = preds[-1].shape[0]
    back = K if obs.shape[0] > K else 0  # frames of truth after the forecast shown
    o0, p0 = obs.shape[0] - 1 - back, len(preds) - 1 - back
    truth = pre.to_unit(obs[o0 + 1 : o0 + 1 + K]) if back else None
    return write_strip_gif(path, pre.to_unit(obs[max(0, o0 - pre_n + 1) : o0 + 1]), pre.to_unit(preds[p0]), truth)


def gif_window(pre_n: int, horizon: int) -> int:
    """Frames the GIF needs from the end of a stream: ``pre_n`` observed, the forecast, ``horizon`` of truth."""
    return pre_n + horizon + 1


def _check_outputs(inputs: list[str], video: VideoOptions, out: str | None, gif: str | None, force: bool,
                   reads: Mapping[str, str | None] | None) -> None:
    """Every output a new file (or ``--force``), none an input or another output, the right suffixes; an
    ``rtsp://`` --video-out is a stream, not a file."""
    from gmg_deploy.video.live_out import is_live_output
    from gmg_deploy.video.writer import check_video_out

    video_out = video.video_out
    file_out = video_out if video_out and not is_live_output(video_out) else None
    paths = [check_output_path(p, force=force) for p in (out, gif, file_out) if p]
    if len({p.resolve() for p in paths}) < len(paths):
        raise InputError("--out, --gif and --video-out must name different files")
    read = {**{f"--input {i + 1}" if len(inputs) > 1 else "--input": s for i, s in enumerate(inputs)}, **(reads or {})}
    for flag, p in (("--out", out), ("--gif", gif), ("--video-out", file_out)):
        check_not_input(p, read, flag)
    if out and len(inputs) > 1 and Path(out).suffix.lower() != ".npz":
        raise InputError(f"--out {out}: with {len(inputs)} inputs give a .npz (one array per input)")
    if out and len(inputs) == 1 and Path(out).suffix.lower() != ".npy":
        raise InputError(f"--out {out}: give a .npy file (frames, K, C, H, W)")
    if file_out:
        check_video_out(file_out)


def reconnects(spec: str, choice: bool | None) -> bool:
    """Does ``--input spec`` reconnect? Never a file; ``--reconnect`` any URL or camera; by default
    (``None``) rtsp:// URLs and cameras only - an http(s) URL may be a finite video whose end is the end."""
    from gmg_deploy.video.kinds import source_kind

    kind = source_kind(spec)
    if kind not in ("url", "camera") or choice is False:
        return False
    return bool(choice) or kind == "camera" or str(spec).lower().startswith(("rtsp://", "rtsps://"))


def _open_sources(fc: Any, inputs: list[str], video: VideoOptions, K: int, out: str | None,
                  connect_timeout: float, note: Any) -> list[Any]:
    """Open the sources (a file's --out budget checked); live ones reconnect unless ``--no-reconnect``."""
    from gmg_deploy.runtime.buffers import check_horizon_budget
    from gmg_deploy.video.reconnect import reconnecting
    from gmg_deploy.video.stream import open_sources

    stall = check_timeout(video.stall_timeout, "--stall-timeout")
    sources = open_sources(inputs, connect_timeout)
    try:
        if out and not any(s.is_live for s in sources):  # --out keeps every frame's K forecasts until the end
            check_horizon_budget(K, "--horizon", frame_shape=fc.frame_shape, streams=fc.batch_size,
                                 device=fc.device, kept=sum(s.expected_frames or 0 for s in sources))
        return [reconnecting(s, connect_timeout=connect_timeout, stall_timeout=stall,
                             max_reconnects=video.max_reconnects, log=note)
                if reconnects(s.spec, video.reconnect) else s for s in sources]
    except BaseException:
        for s in sources:
            s.close()
        raise


def _stream(fc: Any, inputs: list[str], video: VideoOptions, out: str | None, gif: str | None,
            progress: _Progress) -> tuple[Any, int, Any]:
    """Open the sources and run the streams -> (report, horizon, preprocessor)."""
    from gmg_deploy.runtime.buffers import check_horizon_budget
    from gmg_deploy.video.live_view import parse_serve
    from gmg_deploy.video.preprocess import Preprocessor
    from gmg_deploy.video.stream import run_streams

    connect_timeout = check_timeout(video.connect_timeout, "--connect-timeout")
    serve = parse_serve(video.serve) if video.serve is not None else None
    K = fc.config.aft_seq_length if video.horizon is None else video.horizon
    check_horizon_budget(K, "--horizon", frame_shape=fc.frame_shape, streams=fc.batch_size, device=fc.device)
    # built once, here (refusing C not in (1, 3) before any source opens), and handed to run_streams
    pre = Preprocessor(fc.frame_shape, video.fit, fc.metadata.test_mean, fc.metadata.test_std)

    def note(text: str) -> None:  # a note (e.g. a source lost) starts on its own line, after the progress line
        progress.end()
        click.echo(text, err=True)

    sources = _open_sources(fc, inputs, video, K, out, connect_timeout, note)
    window = gif_window(fc.config.pre_seq_length, K)  # --gif without --out keeps only these frames
    rep = run_streams(fc, sources, horizon=K, fit=video.fit, realtime=video.realtime, video_out=video.video_out,
                      keep_preds=True if out else (window if gif else False),
                      keep_observed=window if gif else False, progress=progress,
                      note=note, read_timeout=connect_timeout, serve=serve, preprocessor=pre)
    return rep, K, pre


def _save_outputs(fc: Any, rep: Any, K: int, pre: Any, summary: dict[str, Any], video: VideoOptions,
                  out: str | None, gif: str | None) -> None:
    """``--out`` (every stream's forecasts) and ``--gif`` (the first stream), noted in the summary."""
    if out and rep.frames:
        C, H, W = fc.frame_shape
        arrays = [np.stack(s.preds) if s.preds else np.zeros((0, K, C, H, W), np.float32) for s in rep.streams]
        if video.denormalize:
            arrays = [pre.to_unit(a) for a in arrays]
        _save_preds(Path(out), arrays)
        summary["out"] = out
    if gif and rep.streams[0].frames:
        count, size = _write_gif(Path(gif), fc.config.pre_seq_length, rep.streams[0], pre)
        summary.update(gif=gif, gif_frames=count, gif_size=list(size))


def _report_lines(fc: Any, rep: Any, K: int, summary: dict[str, Any], n_inputs: int) -> list[str]:
    """The human report on stderr."""
    lat = summary["latency_ms"]
    lines = [f"{rep.frames} frame(s) from {n_inputs} source(s), horizon {K}, {fc.backend_name} on {fc.device}"
             f"{' (realtime)' if rep.realtime else ''}: {summary['end_to_end_fps'] or 0:.1f} fps end to end, "
             f"model {summary['model_ms_per_step'] or 0:.2f} ms/step, dropped {rep.dropped}"]
    if lat["p50"] is not None:
        lines.append(f"latency decode->forecast p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, "
                     f"p99 {lat['p99']:.1f} ms")
    for s in rep.streams:
        if s.losses:
            lines.append(f"{s.spec}: lost {s.losses} time(s), {s.reconnects} reconnect(s), {s.disconnected_s:.1f} s "
                         "disconnected (its slot reset on each comeback; the time down is not in the fps)")
    if rep.video_out and rep.video_frames:
        lines.append(f"video ({rep.video_frames} frames, {rep.codec}) -> {rep.video_out}")
    if rep.partial:
        if rep.interrupted:
            why = signals.message_of(rep.interrupt or KeyboardInterrupt())  # interrupted / terminated
        else:
            why = "the engine failed" if rep.engine_error else "a source failed"
        lines.append(f"partial: {why}; the outputs hold the {rep.frames} frame(s) processed")
    return lines


def run_video(fc_open: Any, inputs: list[str], video: VideoOptions, *, out: str | None, gif: str | None,
              batch_size: int | None, as_json: bool, force: bool, reads: Mapping[str, str | None] | None = None) -> int:
    """Run the video path; returns the exit status (0; 2 when a source or the engine failed mid-stream; 130 on
    Ctrl-C, 143 on SIGTERM - the outputs then hold what was processed).

    ``fc_open(batch_size)`` opens the :class:`Forecaster` (the caller knows the model-opening options); ``reads``:
    the other files the command reads (``{option: path}``, e.g. the engine), which no output may be.
    """
    check_timeout(video.connect_timeout, "--connect-timeout")
    check_timeout(video.stall_timeout, "--stall-timeout")
    _check_outputs(inputs, video, out, gif, force, reads)
    if video.serve is not None:
        from gmg_deploy.video.live_view import parse_serve

        parse_serve(video.serve)  # a bad address fails before the model is opened
    fc = fc_open(batch_size or len(inputs))
    progress = _Progress(video.quiet)
    close_error: str | None = None
    try:  # a failure while opening the sources or streaming still closes the engine (Triton: ENDs its sequences)
        rep, K, pre = _stream(fc, inputs, video, out, gif, progress)
    finally:
        progress.end()  # an error raised from here on starts on its own line
        try:
            fc.close()
        except Exception as e:  # a failed engine (e.g. a server gone) may fail to close too: outputs first
            close_error = f"closing the {fc.backend_name} engine failed ({' '.join(str(e).split())[:160]})"
    summary = rep.summary()
    summary.update(engine_backend=fc.backend_name, device=str(fc.device), batch_size=fc.batch_size, fit=video.fit)
    _save_outputs(fc, rep, K, pre, summary, video, out, gif)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    for line in _report_lines(fc, rep, K, summary, len(inputs)):
        click.echo(line, err=True)
    if rep.interrupted:
        interrupt = rep.interrupt or KeyboardInterrupt()
        say_error(signals.message_of(interrupt))
        return signals.status_of(interrupt)
    failed = [e for e in (rep.engine_error, *(s.error for s in rep.streams), close_error) if e]
    if failed:
        say_error(failed[0])
        return 2
    return 0


def video_options(fn: Any) -> Any:
    """The ``gmg-infer`` options of the video path (passed to the command as keyword arguments)."""
    opts = [
        click.option("--horizon", type=int, default=None, metavar="K",
                     help="Video: forecast K frames ahead at every frame [model's aft_seq_length]."),
        click.option("--video-out", default=None, metavar="OUT.mp4",
                     help="Video: panel video (observed | forecast t+1 | forecast t+K | true t+K for files), "
                          "H.264 at the source's fps (.mp4 .mkv .mov .avi), or rtsp://HOST:PORT/PATH to push "
                          "it to a media server accepting RTSP RECORD."),
        click.option("--fit", type=click.Choice(["crop", "pad", "stretch"]), default="crop", show_default=True,
                     help="Video: fit frames to the model: keep the aspect ratio and centre-crop or pad, or stretch."),
        click.option("--denormalize", is_flag=True,
                     help="Video: write --out in [0,1] pixel units instead of the model's (test_mean/test_std) units."),
        click.option("--realtime/--no-realtime", default=None,
                     help="Video: decode in a background thread, forecast from the newest frame, drop stale ones "
                          "[on for cameras and URLs, off for files]."),
        click.option("--connect-timeout", type=float, default=10.0, show_default=True, metavar="S",
                     help="Video: seconds to wait for a URL to connect or deliver a frame."),
        click.option("--reconnect/--no-reconnect", default=None,
                     help="Video: reopen a live source that ends, fails or stalls (with backoff), its slot "
                          "reset when it is back [on for rtsp:// URLs and cameras; http(s) URLs only with "
                          "--reconnect; files never]."),
        click.option("--stall-timeout", type=float, default=5.0, show_default=True, metavar="S",
                     help="Video: with --reconnect, seconds without a frame after which a live source is lost."),
        click.option("--max-reconnects", type=click.IntRange(min=0), default=None, metavar="N",
                     help="Video: give a source up after N reconnect attempts in all [unlimited]."),
        click.option("--serve", default=None, metavar="HOST:PORT",
                     help="Video: serve the live panel (/) and Prometheus metrics (/metrics) over HTTP during "
                          "the run (port 0: a free one, printed)."),
        click.option("--quiet", is_flag=True, help="Video: no progress line."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


_VIDEO_ONLY = {"horizon": "--horizon", "video_out": "--video-out", "denormalize": "--denormalize",
               "realtime": "--realtime", "serve": "--serve", "max_reconnects": "--max-reconnects",
               "reconnect": "--reconnect"}


def check_array_call(inputs: tuple[str, ...], out: str | None, video: VideoOptions) -> None:
    """Array/PNG input: one --input, --out given, no video-only options."""
    if len(inputs) != 1:
        raise InputError(f"--input given {len(inputs)} times; several inputs are for video sources only "
                         "(put array sequences in one .npy)")
    if out is None:
        raise InputError("--out PREDS.npy is required for array or PNG input")
    for key, flag in _VIDEO_ONLY.items():
        if getattr(video, key) not in (None, False):
            raise InputError(f"{flag} applies to video inputs (.mp4, URL, camera); {inputs[0]} is not one")


def video_main(opts: InferOptions) -> int:
    """``gmg-infer`` with video inputs -> exit status."""
    from gmg_deploy.video.kinds import is_video_input

    inputs, video, batch_size = opts.inputs, opts.video, opts.forecaster.batch_size
    bad = [i for i in inputs if not is_video_input(i)]
    if bad:
        raise InputError(f"--input {bad[0]} is not a video source; video and array inputs cannot be mixed")
    if opts.pre is not None or opts.aft is not None:
        raise InputError("--pre/--aft apply to array inputs; for video use --horizon K")
    if opts.metrics:
        raise InputError("--metrics applies to array inputs; video output shows the true frame t+K in the panel")
    if video.horizon is not None and video.horizon < 1:
        raise InputError(f"--horizon {video.horizon} must be >= 1")
    if batch_size != 1 and batch_size > len(inputs):
        raise InputError(f"--batch-size {batch_size} is more than the {len(inputs)} video input(s)")
    slots = len(inputs) if batch_size == 1 else batch_size
    # Ctrl-C outside the streams (opening the model or a source) is the shared `error: interrupted`, exit 130
    return run_video(opts.forecaster.open, list(inputs), video, out=opts.out, gif=opts.gif, batch_size=slots,
                     as_json=opts.as_json, force=opts.force,
                     reads={"--engine": opts.forecaster.model, "--config-file": opts.forecaster.config_file})
