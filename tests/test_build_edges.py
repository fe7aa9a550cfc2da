"""``metabnn build`` at its edges: bad flags, bad EXPORT/BUILD dirs, failing tools, Ctrl-C, kills."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import read_only, run_cli, run_cli_unprivileged
from metabnn.errors import MetabnnError
from test_cli_errors import one_error_line


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``metabnn ARGS`` in this process: (exit code, stdout, stderr)."""
    from metabnn.cli import main

    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def build_args(export: Path, out: Path, *extra: str) -> list[str]:
    return ["build", str(export), "--board", "pynq-z2", "--target-fps", "50000", "--out", str(out), *extra]


def leftovers(parent: Path, name: str) -> list[str]:
    """Anything a build of ``parent/name`` left: the dir itself, its stages, a kept failure."""
    return sorted(p.name for p in parent.iterdir() if p.name == name or p.name.startswith(f".{name}.")
                  or p.name == f"{name}.failed")


# -- flags and dirs, refused before any work (no artifacts needed) ------------------------------

@pytest.mark.parametrize("flags,named", [
    (["--target-fps", "0"], "--target-fps: 0 must be greater than zero"),
    (["--target-fps", "-1"], "--target-fps: -1 must be greater than zero"),
    (["--target-fps", "nan"], "--target-fps: 'nan' is not a finite number"),
    (["--target-fps", "inf"], "--target-fps: 'inf' is not a finite number"),
    (["--target-fps", "abc"], "--target-fps: 'abc' is not a number"),
    (["--clock-ns", "0"], "--clock-ns: 0 must be greater than zero"),
    (["--clock-ns", "nan"], "--clock-ns: 'nan' is not a finite number"),
    (["--clock-ns", "0.01"], "--clock-ns 0.01: these boards' fabric does not run above 1000 MHz"),
    (["--verify-limit", "0"], "--verify-limit 0: give a positive number of test images"),
    (["--verify-limit", "-1"], "--verify-limit -1: give a positive number of test images"),
    (["--verify-limit", "abc"], "--verify-limit: invalid int value"),
    (["--board", "pynq-z9"], "unknown board 'pynq-z9'; use one of: pynq-z1, pynq-z2"),
])
def test_bad_flag_values_are_one_line_naming_the_flag(flags, named, tmp_path, capsys):
    rc, out, err = cli(capsys, *build_args(tmp_path / "export", tmp_path / "b"), *flags)
    assert rc == 2 and named in one_error_line(subprocess.CompletedProcess([], rc, out, err))
    # flags, not the Python names behind them
    assert "verify_limit" not in err and "None" not in err and "target_fps" not in err
    assert list(tmp_path.iterdir()) == []


def test_out_that_cannot_take_a_build_is_refused_first(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    for out, named in ((tmp_path / "file", "is a file, not a BUILD_DIR; choose a new --out"),
                       (tmp_path / "full", "exists and is not an empty directory"),
                       (tmp_path / "file" / "b", "is a file, not a directory")):
        rc, _, err = cli(capsys, *build_args(tmp_path / "no-export", out))
        assert rc == 2 and named in err and err.count("\n") == 1, err
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]


def test_read_only_parent_is_refused_before_work(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(ro)
    proc = run_cli_unprivileged(*build_args(tmp_path / "no-export", ro / "b"))
    line = one_error_line(proc)
    assert "--out" in line and "read-only" in line and "choose a writable location" in line
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("make,named", [
    (lambda p: p / "missing", "is not a directory; give an EXPORT_DIR made by 'metabnn export'"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "holds no manifest.json"),
    (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "is not a directory"),
])
def test_what_is_not_an_export_is_one_line(make, named, tmp_path, capsys):
    export = make(tmp_path)
    rc, _, err = cli(capsys, *build_args(export, tmp_path / "b"))
    assert rc == 2 and named in err and err.count("\n") == 1, err
    assert not (tmp_path / "b").exists()


def test_report_png_draws_target_budgets_board_and_fit():
    from metabnn.hw.report import figure

    layers = [{"name": "MVAUBinary_rtl_0", "cycles": 900, "lut": 30000, "bram": 10},
              {"name": "Thresholding_rtl_0", "cycles": 50, "lut": 20, "bram": 0}]
    report = {"layers": layers, "clock_ns": 10.0, "target_fps": 100000, "fps": 111111.0, "board": "pynq-z2",
              "part": "xc7z020clg400-1", "fits": True, "resources": {"LUT": 30020, "BRAM_18K": 10},
              "capacity": {"LUT": 53200, "BRAM_18K": 280}, "budget": {"LUT": 37240.0, "BRAM_18K": 224.0},
              "utilization_limits": {"LUT": 0.7, "BRAM_18K": 0.8}}
    fig = figure(report)
    title = fig._suptitle.get_text()
    assert "pynq-z2" in title and "target 100,000" in title and "fits: yes" in title
    cycles, lut, bram = fig.axes
    hlines = lambda ax: {round(l.get_ydata()[0], 1) for l in ax.get_lines()}
    assert 1000.0 in hlines(cycles)  # 100 MHz / 100,000 images/s
    assert {37240.0, 53200.0} <= hlines(lut) and {224.0, 280.0} <= hlines(bram)
    labels = [t.get_text() for t in lut.get_legend().get_texts()]
    assert any("70% of 53,200" in t for t in labels)
    assert [t.get_text() for t in lut.get_xticklabels()][-1] == "total"


# -- with a real export -------------------------------------------------------------------------

def copy_export(tiny_export: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_export, tmp_path / "export"))


@pytest.mark.slow
@pytest.mark.parametrize("damage,named", [
    ("truncate_model", "model.onnx' is missing or changed since the export"),
    ("flip_byte", "parameters.npz' is missing or changed since the export"),
    ("foreign_manifest", "is not a metabnn export"),
    ("manifest_not_json", "manifest.json' is unreadable"),
    ("no_tasks", "tasks.json' is missing or changed"),
])
def test_damaged_export_is_one_line_and_writes_nothing(damage, named, tiny_export, tmp_path, capsys):
    export = copy_export(tiny_export, tmp_path)
    if damage == "truncate_model":
        data = (export / "model.onnx").read_bytes()
        (export / "model.onnx").write_bytes(data[:len(data) // 2])
    elif damage == "flip_byte":
        data = bytearray((export / "parameters.npz").read_bytes())
        data[len(data) // 2] ^= 0x01
        (export / "parameters.npz").write_bytes(bytes(data))
    elif damage == "foreign_manifest":
        (export / "manifest.json").write_text(json.dumps({"artifact": "metabnn-build"}))
    elif damage == "manifest_not_json":
        (export / "manifest.json").write_text("{ half")
    else:
        (export / "tasks.json").unlink()
    rc, _, err = cli(capsys, *build_args(export, tmp_path / "b"))
    assert rc == 2 and named in err and err.count("\n") == 1, err
    assert leftovers(tmp_path, "b") == []


@pytest.mark.slow
def test_stale_or_missing_run_is_refused_before_any_step(tiny_run, tiny_export, tmp_path, monkeypatch):
    """The deploy package ships the exported checkpoint: a run that trained on (or vanished) is
    refused up front, not after the whole build."""
    from metabnn.hw import steps
    from metabnn.hw.build import build

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    export = copy_export(tiny_export, tmp_path)
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["source"]["run_dir"] = str(run)
    (export / "manifest.json").write_text(json.dumps(manifest))

    def no_step(ctx):
        raise AssertionError("a build step ran")

    monkeypatch.setattr(steps, "STEPS", [("qonnx_to_finn", no_step)])
    with open(run / "checkpoint.pt", "ab") as f:
        f.write(b"one more epoch")
    with pytest.raises(MetabnnError, match="has changed since this export"):
        build(export, tmp_path / "b", "pynq-z2", 50000, progress=False)
    (run / "checkpoint.pt").unlink()
    with pytest.raises(MetabnnError, match="is gone"):
        build(export, tmp_path / "b", "pynq-z2", 50000, progress=False)
    assert leftovers(tmp_path, "b") == []


@pytest.mark.slow
def test_stages_of_killed_builds_are_removed_live_ones_kept(tiny_export, tmp_path, monkeypatch):
    """SIGKILL leaves a hidden stage; the next build of the same BUILD_DIR removes it. A stage whose
    owner still runs is a concurrent build: kept, and the new build refuses to start beside it."""
    from metabnn.hw import steps
    from metabnn.hw.build import build

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    def stop(ctx):
        raise MetabnnError("stop here")

    monkeypatch.setattr(steps, "STEPS", [("qonnx_to_finn", stop)])
    try:
        for name, pid in ((".b.killed.tmp", dead.pid), (".b.running.tmp", live.pid)):
            (tmp_path / name / "deploy").mkdir(parents=True)
            (tmp_path / name / ".metabnn-owner").write_text(f"{pid}\n")
        with pytest.raises(MetabnnError, match=f"another metabnn build \\(process {live.pid}\\) is writing"):
            build(tiny_export, tmp_path / "b", "pynq-z2", 50000, progress=False)
        assert leftovers(tmp_path, "b") == [".b.running.tmp"]
    finally:
        live.kill()
        live.wait()
    with pytest.raises(MetabnnError, match="stop here"):  # its owner gone, the stage goes too
        build(tiny_export, tmp_path / "b", "pynq-z2", 50000, progress=False)
    assert leftovers(tmp_path, "b") == []


@pytest.mark.slow
def test_failing_finn_step_keeps_the_work_dir_and_says_where(tiny_export, tmp_path, monkeypatch):
    """A FINN step that fails (not an input error): one line naming the step, the error and the logs;
    the work dir with its logs kept in BUILD_DIR.failed/ (replacing an older one), no BUILD_DIR.
    The Vivado steps run on the finished BUILD_DIR instead: tests/test_vivado_tail.py."""
    from metabnn.hw import steps
    from metabnn.hw.build import build

    def broken(ctx):
        print("inputDataType changing for the last layer")  # a FINN-style print: build.log only
        raise RuntimeError("FINN broke\nsecond line")

    monkeypatch.setattr(steps, "STEPS", [*steps.STEPS[:8], ("dataflow_partition", broken)])
    (tmp_path / "b.failed").mkdir()
    (tmp_path / "b.failed" / "from-an-older-failure").write_text("")
    with pytest.raises(MetabnnError) as e:
        build(tiny_export, tmp_path / "b", "pynq-z2", 50000, progress=False, verify_limit=50)
    line, kept = str(e.value), tmp_path / "b.failed"
    assert line.startswith("build step 'dataflow_partition' failed (RuntimeError: FINN broke)") and "\n" not in line
    assert f"'{kept / 'build.log'}'" in line and "fix the cause" in line and ".tmp" not in line
    assert leftovers(tmp_path, "b") == ["b.failed"]
    assert not (kept / "from-an-older-failure").exists()
    log = (kept / "build.log").read_text()
    assert "[build] dataflow_partition" in log and "Traceback" in log and "inputDataType changing" in log
    assert (kept / "finn_work").is_dir() and (kept / "hw_codegen").is_dir()


@pytest.mark.slow
def test_cli_build_outputs(tiny_export, tmp_path):
    """Ordinary directory modes, WEIGHT_INIT inside BUILD_DIR, FINN's prints in build.log only,
    agreement accuracy in percent."""
    out = tmp_path / "b"
    proc = run_cli(*build_args(tiny_export, out, "--verify-limit", "300"))
    console = [l for l in proc.stderr.replace("\r", "\n").splitlines() if l.strip()]
    assert all(l.startswith("[build] ") or l.lstrip().startswith("agreement") for l in console), console
    log = (out / "build.log").read_text()
    assert "inputDataType changing" in log and "[build] package" in log
    assert "inputDataType changing" not in proc.stdout
    mask = os.umask(0)
    os.umask(mask)
    dirs = [out, *(p for p in out.rglob("*") if p.is_dir())]
    assert (out / "deploy" / "driver") in dirs
    assert {p.relative_to(out).as_posix(): oct(p.stat().st_mode & 0o777) for p in dirs
            if p.stat().st_mode & 0o777 != 0o777 & ~mask} == {}
    inits = []
    for v in out.glob("hw_codegen/*/MVAUBinary_rtl_*.v"):
        init = v.read_text().split('.WEIGHT_INIT("')[1].split('"')[0]
        assert Path(init) == out.resolve() / "hw_codegen" / v.parent.name / "memblock.dat" and Path(init).is_file()
        inits.append(init)
    assert len(inits) == 3
    assert not [p for p in out.rglob("*.onnx") if b".tmp/" in p.read_bytes() and b"/hw_codegen" in p.read_bytes()]
    report = json.loads((out / "report.json").read_text())
    for t in report["agreement"]:
        assert 1.0 < t["accuracy"] <= 100.0  # percent, as in metrics.json
    assert leftovers(tmp_path, "b") == ["b"]


@pytest.mark.slow
def test_ctrl_c_removes_the_partial_build(tiny_export, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "metabnn.cli", *build_args(tiny_export, tmp_path / "b")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("[build] hw_codegen"):
            assert any(p.name.startswith(".b.") for p in tmp_path.iterdir())  # mid-build: staged
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 130, "".join(seen) + rest
    assert rest.strip().splitlines()[-1] == ("metabnn: interrupted; nothing was written: the partial build was "
                                             "removed (run the same command again)")
    assert "Traceback" not in rest and leftovers(tmp_path, "b") == []
