"""Live ``[sim]``/``[synth]`` progress lines on stderr, with the elapsed time of long steps.

A Verilator compile or a yosys run takes from seconds to minutes with no output of its own;
``Progress.step`` says what is running and keeps counting the seconds (rewriting one line on
a terminal, a line every ``every`` seconds in a log) until it ends.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Iterator, TextIO


_CLEAR = "\r\x1b[K"  # back to the line start, erase it


class Step:
    """One running step; ``result`` is what its closing line says (default "done")."""

    def __init__(self) -> None:
        self.result = "done"
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def _fmt(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds) // 60} min {int(seconds) % 60:02d} s"


class Progress:
    def __init__(self, tag: str, enabled: bool = True, every: float = 10.0, stream: TextIO | None = None):
        self.tag, self.enabled, self.every = tag, enabled, every
        self.stream = stream
        self._lock = threading.Lock()
        self._ticking = False  # a step is rewriting the terminal's last line

    @property
    def _out(self) -> TextIO:
        return self.stream or sys.stderr

    def __call__(self, msg: str) -> None:
        if self.enabled:
            with self._lock:  # a line from another thread while a step ticks on a terminal: own line
                print(f"{_CLEAR if self._ticking else ''}[{self.tag}] {msg}", file=self._out, flush=True)

    @contextlib.contextmanager
    def step(self, msg: str) -> Iterator[Step]:
        """Announce ``msg``, tick its elapsed time while it runs, close with its result and time."""
        step = Step()
        if not self.enabled:
            yield step
            return
        out = self._out
        tty = bool(getattr(out, "isatty", lambda: False)())
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(1.0 if tty else self.every):
                with self._lock:
                    if tty:
                        print(f"{_CLEAR}[{self.tag}] {msg} ... {_fmt(step.elapsed)}", end="", file=out, flush=True)
                    else:
                        print(f"[{self.tag}] {msg}: running, {_fmt(step.elapsed)}", file=out, flush=True)

        print(f"[{self.tag}] {msg} ...", end="" if tty else "\n", file=out, flush=True)
        self._ticking = tty
        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield step
        except BaseException:
            stop.set()
            ticker.join()
            self._ticking = False
            if tty:
                print(file=out, flush=True)
            raise
        stop.set()
        ticker.join()
        self._ticking = False
        print(f"{_CLEAR if tty else ''}[{self.tag}] {msg}: {step.result} in {_fmt(step.elapsed)}",
              file=out, flush=True)
