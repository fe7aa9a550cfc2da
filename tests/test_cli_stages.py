"""``metabnn export`` and ``metabnn build`` from the command line: the real chain, and bad input."""

import json

import pytest

from conftest import run_cli, tiny_args
from test_cli_errors import one_error_line


@pytest.mark.parametrize("args,match", [
    (["--board", "pynq-z2", "--target-fps", "0"], "--target-fps: 0 must be greater than zero"),
    (["--board", "pynq-z2", "--target-fps", "-3"], "--target-fps: -3 must be greater than zero"),
    (["--board", "pynq-z2", "--target-fps", "fast"], "'fast' is not a number"),
    (["--board", "pynq-z2", "--target-fps", "1000", "--clock-ns", "0"], "--clock-ns: 0 must be greater"),
    (["--target-fps", "1000"], "--board"),
])
def test_build_usage_errors_are_one_line(tmp_path, args, match):
    out = tmp_path / "build"
    proc = run_cli("build", str(tmp_path), *args, "--out", str(out), check_rc=2)
    assert match in one_error_line(proc)
    assert not out.exists()


def test_export_of_a_non_run_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not a run")
    proc = run_cli("export", str(tmp_path), "--out", str(tmp_path / "export"), check_rc=2)
    assert "RUN_DIR" in one_error_line(proc)
    assert not (tmp_path / "export").exists()


@pytest.mark.slow
def test_train_export_build_from_the_command_line(tmp_path, mnist_available):
    run_cli("train", *tiny_args(), "--out", str(tmp_path / "run"))
    proc = run_cli("export", str(tmp_path / "run"), "--out", str(tmp_path / "export"), "--limit", "200",
                   "--no-progress")
    assert proc.stdout.count("agrees with PyTorch on 200/200") == 2
    proc = run_cli("build", str(tmp_path / "export"), "--board", "kv260", "--target-fps", "20000", "--out",
                   str(tmp_path / "build"), "--verify-limit", "200", "--no-progress")
    assert "kv260" in proc.stdout and "fits: yes" in proc.stdout and "XILINX_VIVADO is not set" in proc.stdout
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    assert report["board"] == "kv260" and report["fps"] >= 20000
    assert [t["agreements"] for t in report["agreement"]] == [200, 200]
    # The same build again must not touch the first one.
    before = (tmp_path / "build" / "report.json").read_bytes()
    proc = run_cli("build", str(tmp_path / "export"), "--board", "pynq-z2", "--target-fps", "20000", "--out",
                   str(tmp_path / "build"), "--no-progress", check_rc=2)
    assert "already holds a build" in one_error_line(proc)
    assert (tmp_path / "build" / "report.json").read_bytes() == before


@pytest.mark.parametrize("args,match", [
    (["sim", "{d}"], "is not a BUILD_DIR made by 'metabnn build'"),
    (["sim", "{d}", "--task", "two"], "is not a BUILD_DIR made by 'metabnn build'"),  # names come from the build
    (["synth", "{d}"], "is not a BUILD_DIR made by 'metabnn build'"),
])
def test_sim_and_synth_refuse_what_is_not_a_build(tmp_path, args, match):
    proc = run_cli(*[a.format(d=tmp_path) for a in args], "--no-progress", check_rc=2)
    assert match in one_error_line(proc)
    assert list(tmp_path.iterdir()) == []
