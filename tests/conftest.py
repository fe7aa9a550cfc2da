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


def tiny_args(*extra: str) -> list[str]:
    out = ["--preset", "demo", "--no-progress"]
    for s in TINY + list(extra):
        out += ["--set", s]
    return out


def read_json(path: Path):
    return json.loads(Path(path).read_text())
