"""Child processes (Verilator, make, g++, the harness, yosys) that never outlive metabnn's work.

Each child runs in its own process group, and the whole group is killed on any exception in
the waiting thread (Ctrl-C, SIGTERM turned into one, a timeout) or by ``kill_all`` from the
main thread while worker threads wait: otherwise make's g++ jobs or a harness would keep
running, orphaned, after the command has reported that it was interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from typing import Iterator, Sequence

_LIVE: set[subprocess.Popen] = set()
_LOCK = threading.Lock()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(cmd: Sequence[str], cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)``, its process group killed on any exception."""
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    with _LOCK:
        _LIVE.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    finally:
        with _LOCK:
            _LIVE.discard(proc)
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def kill_all() -> None:
    """Kill every child started by ``run`` that is still running (their waiting threads then fail)."""
    with _LOCK:
        live = list(_LIVE)
    for proc in live:
        _kill_group(proc)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (``kill PID``) takes Ctrl-C's path: children killed, stages removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
