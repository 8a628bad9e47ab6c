"""``gmg-serve REPO``: run tritonserver on a model repository until Ctrl-C / SIGTERM (children included).

The server comes from PATH or from the ``nvidia-pytriton`` wheel (``pip install gmg-deploy[serve]``), whose
bundled tritonserver has the Python backend only (serve ``gmg-triton --flavour python`` entries with it).
"""
from __future__ import annotations

import signal
import sys
import time

import click

from gmg_deploy.cli.common import OneLineCommand, one_line_errors


def _port(ctx, param, value):  # click callback
    if value is not None and not 1 <= value <= 65535:
        raise click.BadParameter(f"{value} is not a TCP port (1..65535)")
    return value


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("repo", type=click.Path(file_okay=False))
@click.option("--grpc-port", type=int, default=8001, show_default=True, callback=_port)
@click.option("--http-port", type=int, default=8000, show_default=True, callback=_port)
@click.option("--metrics-port", type=int, default=8002, show_default=True, callback=_port)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the server listens on (0.0.0.0: every interface, for clients on other machines).")
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the server to be ready.")
@click.option("--log", "log_file", type=click.Path(dir_okay=False), default=None,
              help="Append the server's log to this file (default: a temporary file, removed on exit).")
@one_line_errors
def main(repo, grpc_port, http_port, metrics_port, host, timeout_s, log_file) -> None:
    """Serve the Triton model repository REPO (written by gmg-triton) on --host (127.0.0.1 by default)."""
    from gmg_deploy.errors import InputError, ServeError
    from gmg_deploy.serve.server import TritonServer

    import math

    if not (math.isfinite(timeout_s) and 0 < timeout_s <= 3600):
        raise InputError(f"--timeout {timeout_s:g} must be a number of seconds in (0, 3600]")
    if len({grpc_port, http_port, metrics_port}) != 3:
        raise InputError("--grpc-port, --http-port and --metrics-port must differ")
    server = TritonServer(repo, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port,
                          log_file=log_file, host=host)
    stop = {"sig": None}

    def on_signal(signum, frame):
        stop["sig"] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        server.start(timeout_s)
        u = server.urls
        click.echo(f"serving {server.repo}: grpc {u['grpc']} (triton://{u['grpc']}/NAME), http {u['http']}, "
                   f"metrics {u['metrics']}; Ctrl-C stops", err=False)
        sys.stdout.flush()
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(0.5)
        code = server.proc.returncode if server.proc is not None else 1
        cause = server.failure_cause()
        server.stop()
        raise ServeError(f"tritonserver exited with status {code}: {cause}")
    except KeyboardInterrupt:
        _ignore_signals()  # a second Ctrl-C (or a supervisor's repeated signal) must not cut the shutdown short
        server.stop()
        click.echo("stopped", err=True)
        sys.exit(0 if stop["sig"] == signal.SIGTERM else 130)
    finally:
        if server.proc is not None:  # any other way out: never leave the server (and its stubs) running
            _ignore_signals()
            server.stop()


def _ignore_signals() -> None:
    """From here on SIGINT/SIGTERM no longer interrupt: the server's process group is being stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":  # pragma: no cover
    main()
