"""One writer per deployment package: an advisory ``flock`` on ``DEPLOY_DIR/.lock``.

``metabnn learn`` holds it exclusively for its whole run (training, staging, device write,
commit, measurement); ``infer`` and ``status`` hold it shared while they read the package and
use the device. Nobody waits: a command that finds the lock taken stops at once with one line
naming the process that holds it, so a reader never sees half a commit, never reprograms a
board under an update, and never mistakes a running update's staging for a dead one. An
interrupted update (journal or staging left by a killed process) is repaired only under the
exclusive lock, which proves that its writer is gone.

The kernel drops a flock when its holder dies (SIGKILL included): there is no stale lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from metabnn.atomic import pid_alive
from metabnn.errors import MetabnnError

LOCK_FILE = ".lock"
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


class PackageLock:
    """``with PackageLock(root, "infer").shared(): ...``; ``exclusive()`` for a writer."""

    def __init__(self, root: str | Path, command: str) -> None:
        self.root, self.command = Path(root), command
        self.fd: int | None = None
        self.mode: str | None = None  # "shared", "exclusive", or "none" (read-only package without a lock file)

    def _open(self) -> int | None:
        if self.fd is not None:
            return self.fd
        path = self.root / LOCK_FILE
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            if e.errno not in _READ_ONLY:
                raise MetabnnError(f"cannot open the package lock '{path}' ({e.strerror}); remove it (it holds no "
                                   "data) and run again") from None
            try:  # a read-only package: a shared lock needs only read access
                self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None  # never locked by anyone: no writer can have touched it
            except OSError as e2:
                raise MetabnnError(f"cannot open the package lock '{path}' ({e2.strerror}); make it readable and "
                                   "run again") from None
        return self.fd

    def shared(self) -> "PackageLock":
        self._take(fcntl.LOCK_SH, "shared")
        return self

    def exclusive(self) -> "PackageLock":
        self._take(fcntl.LOCK_EX, "exclusive")
        if self.fd is not None:
            try:  # who holds it, for the message other commands print
                os.ftruncate(self.fd, 0)
                os.pwrite(self.fd, f"{os.getpid()} {self.command}\n".encode(), 0)
            except OSError:
                pass
        return self

    def try_upgrade(self) -> bool:
        """Shared -> exclusive without waiting; False (still shared) when someone else holds it too."""
        if self.mode == "exclusive":
            return True
        fd = self._open()
        if fd is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Linux drops the shared lock before a failed conversion: take it back.
            self.mode = None
            self._take(fcntl.LOCK_SH, "shared")
            return False
        self.mode = "exclusive"
        return True

    def downgrade(self) -> None:
        if self.mode == "exclusive" and self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_SH)
            self.mode = "shared"

    def _take(self, op: int, mode: str) -> None:
        fd = self._open()
        if fd is None:
            self.mode = "none"
            return
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MetabnnError(self.busy_message()) from None
        self.mode = mode

    def busy_message(self) -> str:
        holder = self.holder()
        again = f"run 'metabnn {self.command}' again when it has finished"
        if "learn" in holder:
            return f"'{self.root}' is being updated by {holder}; {again}"
        return f"'{self.root}' is in use by {holder}; {again}"

    def holder(self) -> str:
        """'metabnn learn (pid 123)' or the like, as far as this system tells."""
        pids = self._holder_pids()
        named = {}
        try:
            text = (self.root / LOCK_FILE).read_text().split()
            named[int(text[0])] = text[1]
        except (OSError, ValueError, IndexError):
            pass
        for pid in pids:
            if pid in named:
                return f"metabnn {named[pid]} (pid {pid})"
            cmd = _metabnn_command(pid)
            if cmd:
                return f"metabnn {cmd} (pid {pid})"
        if pids:
            return f"another process (pid {pids[0]})"
        for pid, cmd in named.items():  # no /proc/locks here: trust the writer's note if it still runs
            if pid_alive(pid):
                return f"metabnn {cmd} (pid {pid})"
        return "another metabnn command"

    def _holder_pids(self) -> list[int]:
        if self.fd is None:
            return []
        ino = os.fstat(self.fd).st_ino
        pids = []
        try:
            with open("/proc/locks") as f:
                for line in f:
                    # "3: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"; waiters have "->" after the number
                    parts = line.split()
                    if len(parts) < 6 or parts[1] == "->" or parts[1] != "FLOCK":
                        continue
                    if int(parts[5].rsplit(":", 1)[1]) == ino and int(parts[4]) != os.getpid():
                        pids.append(int(parts[4]))
        except (OSError, ValueError, IndexError):
            pass
        return pids

    def release(self) -> None:
        if self.fd is not None:
            if self.mode == "exclusive":
                try:
                    os.ftruncate(self.fd, 0)  # the note names the holder only while it holds the lock
                except OSError:
                    pass
            os.close(self.fd)  # closing the descriptor drops the flock
        self.fd, self.mode = None, None

    def __del__(self) -> None:
        # An Accelerator dropped without close() must not keep the package locked.
        try:
            self.release()
        except Exception:
            pass

    def __enter__(self) -> "PackageLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _metabnn_command(pid: int) -> str | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = [a.decode(errors="replace") for a in argv]
    if not any("metabnn" in w for w in words):
        return None
    for w in words:
        if w in ("learn", "infer", "status", "demo"):
            return w
    return None
