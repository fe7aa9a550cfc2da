import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import metabnn

REPO = Path(metabnn.__file__).resolve().parents[2]

# A network and data budget small enough that a whole continual run takes seconds.
TINY = [
    "model.widths=[784,32,32,10]",
    "data.stream.n_tasks=2",
    "train.epochs=2",
    "train.train_subset=1200",
    "train.test_subset=500",
    "train.eval_batch_size=500",
]


@pytest.fixture(scope="session")
def mnist_available():
    from metabnn.data import load_dataset
    from metabnn.errors import MetabnnError

    try:
        load_dataset("mnist")
    except MetabnnError as e:
        pytest.skip(f"MNIST unavailable: {e}")


def run_cli(*args: str, timeout: float = 600, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "metabnn.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr[-3000:]
    return proc


def run_cli_unprivileged(*args: str, timeout: float = 600, check_rc: int | None = 2) -> subprocess.CompletedProcess:
    """``run_cli`` without root's power to write into read-only (mode 0555) directories.

    CI runs as root, which ignores permission bits; a process in a fresh user namespace
    (``unshare -U``) keeps root's ownership but loses that override, as a normal user is.
    """
    import shutil

    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("unshare") is None or subprocess.run(["unshare", "-U", "true"]).returncode != 0:
            pytest.skip("running as root without 'unshare -U': read-only directories cannot be tested")
        prefix = ["unshare", "-U"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([*prefix, sys.executable, "-m", "metabnn.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr[-3000:]
    return proc


def read_only(path: Path) -> Path:
    """Make ``path`` (a directory tree) read-only for ``run_cli_unprivileged``; returns it."""
    for p in [path, *path.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    return path


def tiny_args(*extra: str) -> list[str]:
    out = ["--preset", "demo", "--no-progress"]
    for s in TINY + list(extra):
        out += ["--set", s]
    return out


def read_json(path: Path):
    return json.loads(Path(path).read_text())


# One tiny trained run, its export and its Pynq-Z2 build, shared by every test module that
# needs real artifacts. Tests that change an artifact copy it first (shutil.copytree).
@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, mnist_available) -> Path:
    base = tmp_path_factory.mktemp("tiny")
    run_cli("train", *tiny_args(), "--out", str(base / "run"))
    return base / "run"


@pytest.fixture(scope="session")
def tiny_export(tiny_run) -> Path:
    from metabnn.export import export_run

    out = tiny_run.parent / "export"
    export_run(tiny_run, out, progress=False, limit=300)
    return out


@pytest.fixture(scope="session")
def tiny_build(tiny_export) -> Path:
    """A built pynq-z2 accelerator; its deploy/ package is what the runtime opens."""
    from metabnn.hw.build import build

    out = tiny_export.parent / "build"
    build(tiny_export, out, "pynq-z2", 50000, verify_limit=300, progress=False)
    return out
