"""Keeping FINN's chatter out of the user's console: it goes to the build's log file.

FINN prints as it works ("inputDataType changing for ...", floorplan notes) and Vivado, run
as a subprocess, writes pages of its own. ``capture_output`` sends both Python's streams and
the process's file descriptors 1 and 2 (which subprocesses inherit) into a log file, and
hands back a stream to the real console for metabnn's own progress lines.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator, TextIO


def _flush(*streams: TextIO) -> None:
    for s in streams:
        try:
            s.flush()
        except (OSError, ValueError):
            pass


@contextlib.contextmanager
def capture_output(log_path: Path) -> Iterator[TextIO]:
    """Inside, everything written to stdout/stderr lands in ``log_path``; yields the console."""
    _flush(sys.stdout, sys.stderr)
    log = open(log_path, "a", buffering=1, encoding="utf-8", errors="replace")
    streams = (sys.stdout, sys.stderr)
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no file descriptors 1/2 (an embedding host): Python's streams only
        saved = None
    console: TextIO = (os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
                       if saved else streams[1])
    try:
        if saved:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        yield console
    finally:
        sys.stdout, sys.stderr = streams
        _flush(log, console)
        if saved:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            console.close()
        log.close()
