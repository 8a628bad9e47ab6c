"""Watchdog run beside tritonserver: when its parent goes (stdin EOF), stop the server group, remove the work folder.

``python -I janitor.py PID STARTTIME WORKDIR GRACE_S SHM_PREFIX`` (stdlib only: it runs in its own session, detached from
the parent's signals). The parent (:class:`gmg_deploy.serve.server.TritonServer`) holds the write end of its
stdin; that end closes when the parent stops the server or dies in any way, ``kill -9`` included. Then the
janitor SIGTERMs the server's process group (tritonserver and its backend stubs), SIGKILLs what is left
after ``GRACE_S`` seconds, removes ``WORKDIR`` and the server's ``/dev/shm/SHM_PREFIX*`` regions and exits. ``STARTTIME`` (field 22 of ``/proc/PID/stat``)
makes sure a reused pid is never signalled.
"""
import os
import shutil
import signal
import sys
import time


def start_time(pid: int) -> str:
    """Field 22 of ``/proc/PID/stat`` (the process's start time), '' when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]


def stop_group(pid: int, started: str, grace_s: float) -> None:
    """SIGTERM the group of ``pid`` (if ``pid`` is still the process that started at ``started``), wait up to
    ``grace_s`` for it to go, then SIGKILL the group (backend stubs left behind included)."""
    if not started or start_time(pid) != started:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    t_end = time.monotonic() + grace_s
    while start_time(pid) == started and time.monotonic() < t_end:
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def remove_shm(prefix: str) -> None:
    """Remove the shared-memory regions ``/dev/shm/PREFIX*`` of a server that is gone."""
    if not prefix or "/" in prefix:
        return
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return
    for n in names:
        if n.startswith(prefix):
            try:
                os.unlink(os.path.join("/dev/shm", n))
            except OSError:
                pass


def main(argv: list) -> int:
    pid, started, workdir, grace_s = int(argv[1]), argv[2], argv[3], float(argv[4])
    prefix = argv[5] if len(argv) > 5 else ""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)  # only the parent's going (EOF) ends this watch
    while True:
        try:
            if not os.read(0, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    stop_group(pid, started, grace_s)
    remove_shm(prefix)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
