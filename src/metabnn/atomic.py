"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); artifacts get the usual mode, as open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # A crash here must not leave a stray temp file that looks like output.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks (artifacts can be hundreds of MB)."""
    import hashlib

    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


# A staged directory's owner writes its pid here; a later run removes stages whose owner is gone
# (a SIGKILL leaves them behind, and nothing else would ever delete them).
_OWNER_FILE = ".metabnn-owner"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_stages(out_dir: Path) -> list[Path]:
    """Delete ``.NAME.*.tmp`` stages of ``out_dir`` left by a killed process; returns them."""
    import shutil

    removed = []
    try:
        candidates = list(out_dir.parent.glob(f".{out_dir.name}.*.tmp"))
    except OSError:
        return removed
    for stage in candidates:
        if not stage.is_dir():
            continue
        try:
            pid = int((stage / _OWNER_FILE).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        if pid is not None and pid != os.getpid() and pid_alive(pid):
            continue  # another live process is building there right now
        shutil.rmtree(stage, ignore_errors=True)
        removed.append(stage)
    return removed


def live_stage_owner(out_dir: Path) -> int | None:
    """The pid of a live process that is staging ``out_dir`` right now, or None.

    Stages of dead owners are removed first: they hold nothing of use.
    """
    remove_stale_stages(out_dir)
    for stage in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):
        try:
            pid = int((stage / _OWNER_FILE).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if pid != os.getpid() and pid_alive(pid):
            return pid
    return None


class StagedDir:
    """A directory written beside ``out_dir`` and renamed into place only when complete.

    ``with StagedDir(out) as tmp: ...`` writes into ``tmp``; on success ``tmp`` becomes ``out``
    (which must be absent or empty), on any exception it is removed, unless ``keep_on_error``
    names a directory to move it to (so that the logs a failing tool points at survive).
    """

    def __init__(self, out_dir: str | Path, what: str = "output") -> None:
        self.out_dir = Path(out_dir)
        self.what = what
        self.path: Path | None = None
        self.keep_on_error: Path | None = None

    def __enter__(self) -> Path:
        import tempfile

        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_stages(self.out_dir)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", suffix=".tmp", dir=self.out_dir.parent))
        (self.path / _OWNER_FILE).write_text(f"{os.getpid()}\n")
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        import shutil

        from metabnn.errors import MetabnnError

        assert self.path is not None
        if exc_type is not None:
            if self.keep_on_error is not None and exc_type is not KeyboardInterrupt:
                shutil.rmtree(self.keep_on_error, ignore_errors=True)
                try:
                    (self.path / _OWNER_FILE).unlink(missing_ok=True)
                    os.chmod(self.path, 0o777 & ~_umask())
                    os.rename(self.path, self.keep_on_error)
                    return
                except OSError:
                    pass
            shutil.rmtree(self.path, ignore_errors=True)
            return
        try:
            (self.path / _OWNER_FILE).unlink(missing_ok=True)
            # mkdtemp made it private (0700); the result is an ordinary directory.
            os.chmod(self.path, 0o777 & ~_umask())
            if self.out_dir.is_dir() and not any(self.out_dir.iterdir()):
                self.out_dir.rmdir()  # empty: give way to the finished directory
            os.rename(self.path, self.out_dir)
        except OSError as e:
            shutil.rmtree(self.path, ignore_errors=True)
            raise MetabnnError(f"could not move the finished {self.what} to '{self.out_dir}' ({e.strerror}); "
                               "something else wrote there meanwhile: choose another --out") from None


def ensure_writable(path: str | Path, flag: str) -> None:
    """Refuse, before any work is done, an output location this process cannot write.

    ``path`` is the file or directory to be created; its nearest existing ancestor must accept
    a new file. ``flag`` names the option in the message (e.g. "--out").
    """
    import errno
    import tempfile

    from metabnn.errors import MetabnnError

    path = Path(path)
    probe = path if path.is_dir() else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise MetabnnError(f"{flag} '{path}': '{probe}' is a file, not a directory; choose another location")
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".metabnn-probe-"):
            pass
    except OSError as e:
        reason = "read-only" if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else (e.strerror or str(e))
        raise MetabnnError(f"{flag} '{path}': cannot write into '{probe}' ({reason}); choose a writable "
                           "location") from None
