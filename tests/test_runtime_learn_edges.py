"""learn / infer / status on a real deployment package (the shared tiny build): concurrent
commands, kills and Ctrl-C at every stage of an update, a package copied out of its build,
bad task specs. Every command runs as its own process, as a user runs it."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import run_cli
from test_runtime_edges import one_line

pytestmark = pytest.mark.slow


@pytest.fixture()
def deploy(tiny_build, tmp_path):
    shutil.copytree(tiny_build, tmp_path / "build")
    return tmp_path / "build" / "deploy"


def _env(**extra):
    return dict(os.environ, PYTHONUNBUFFERED="1", **extra)


def _snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name != ".lock"}


def test_status_and_learn_while_learn_runs_then_ctrl_c(deploy):
    """The issue's case: status during a learn used to delete the running update's staging."""
    before = _snapshot(deploy)
    learn = subprocess.Popen([sys.executable, "-m", "metabnn.cli", "learn", str(deploy), "--epochs", "400"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        for line in learn.stderr:  # live progress on stderr: wait until it trains
            if line.startswith("training pmnist-3"):
                break
        else:
            pytest.fail("learn printed no progress")
        assert (deploy / ".staging").is_dir()
        for argv in (["status", str(deploy)], ["learn", str(deploy), "--no-progress"],
                     ["infer", str(deploy), "--dataset", "task", "--limit", "10"]):
            one_line(run_cli(*argv, check_rc=2), f"is being updated by metabnn learn (pid {learn.pid})")
        assert (deploy / ".staging" / "run").is_dir() and learn.poll() is None  # untouched, still running
        learn.send_signal(signal.SIGINT)  # Ctrl-C
        err = learn.communicate(timeout=120)[1]
    finally:
        if learn.poll() is None:
            learn.kill()
    assert learn.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == ("metabnn: interrupted; the package and the device are unchanged (the "
                                            "update was not sealed; run learn again)")
    assert _snapshot(deploy) == before and not (deploy / ".staging").exists()
    out = run_cli("status", str(deploy)).stdout
    assert "repaired" not in out and "generation 0" in out


def _killed_learn(deploy, point, sig="KILL"):
    env = _env(METABNN_TEST_KILL=f"{point}:1" + (":INT" if sig == "INT" else ""))
    return subprocess.run([sys.executable, "-m", "metabnn.cli", "learn", str(deploy), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=600)


def test_every_live_update_is_in_the_learn_log(deploy):
    """SIGKILL after the device write, and during the measurement: each update is live and logged."""
    proc = _killed_learn(deploy, "before_commit")
    assert proc.returncode == -signal.SIGKILL and (deploy / "update.json").is_file()
    out = run_cli("status", str(deploy)).stdout
    assert "repaired: rolled forward interrupted update to generation 1 (learn task pmnist-3)" in out
    assert "learned on the device: pmnist-3 (live, accuracy not measured" in out
    proc = _killed_learn(deploy, "after_commit")
    assert proc.returncode == -signal.SIGKILL
    log = json.loads((deploy / "learn.json").read_text())
    assert [(u["name"], u["generation"], u["measured"]) for u in log["updates"]] == [
        ("pmnist-3", 1, False), ("pmnist-4", 2, False)]
    manifest = json.loads((deploy / "manifest.json").read_text())
    live = [t["name"] for t in manifest["tasks"] if t["live"]]
    assert live[2:] == [u["name"] for u in log["updates"]]
    out = run_cli("learn", str(deploy), "--no-progress").stdout
    assert "learned T5 (pmnist-5)" in out and "after pmnist-3        -" in out
    log = json.loads((deploy / "learn.json").read_text())
    assert [u["measured"] for u in log["updates"]] == [False, False, True] and log["acc"][2][4] is not None


def test_ctrl_c_during_the_device_write_is_finished_on_next_open(deploy):
    proc = _killed_learn(deploy, "device_write", sig="INT")
    assert proc.returncode == 130
    assert proc.stderr.strip().splitlines()[-1] == (
        f"metabnn: interrupted while writing the device; the update of T3 (pmnist-3) is sealed and is finished by "
        f"the next 'metabnn status {deploy}' (or infer/learn), which also reloads the device")
    out = run_cli("infer", str(deploy), "--task", "3", "--dataset", "task", "--limit", "20")
    assert "repaired: rolled forward" in out.stderr and out.stdout.startswith("T3 (pmnist-3) on reference")
    proc = _killed_learn(deploy, "after_commit", sig="INT")
    assert proc.returncode == 130 and "T4 (pmnist-4) is learned and live" in proc.stderr


def test_learn_progress_on_stderr(deploy):
    """learn --backend sim used to be silent for minutes: compile, epochs and each task's measurement."""
    proc = run_cli("learn", str(deploy), "--epochs", "1", "--backend", "sim")
    err = proc.stderr
    for line in ("compiling the accelerator's RTL", "simulator ready", "training pmnist-3 on the host (1 epochs)",
                 "pmnist-3 epoch 1/1", "device update:", "measuring T1 (pmnist-1) on the sim accelerator: 500 test "
                 "images", "T3 (pmnist-3): "):
        assert line in err, err
    assert "learned T3 (pmnist-3) on the sim accelerator" in proc.stdout and "epoch" not in proc.stdout
    quiet = run_cli("learn", str(deploy), "--epochs", "1", "--no-progress")
    assert quiet.stderr == "" and "learned T4 (pmnist-4)" in quiet.stdout


def test_package_copied_out_of_its_build(deploy, tmp_path):
    """A package on its own (as it goes to a board) infers and reports; sim names what it needs."""
    copy = tmp_path / "board" / "pkg"
    shutil.copytree(deploy, copy)
    assert "T1 (pmnist-1), T2 (pmnist-2)" in run_cli("status", str(copy), "--backend", "reference").stdout
    assert run_cli("infer", str(copy), "--dataset", "task", "--limit", "50").stdout.startswith("T1 (pmnist-1)")
    line = one_line(run_cli("status", str(copy), "--backend", "sim", check_rc=2),
                    f"'{copy}' is not inside it", "give --build-dir BUILD_DIR", "--backend reference")
    assert "is not a BUILD_DIR" not in line and f"'{copy.parent}'" not in line
    one_line(run_cli("status", str(copy), "--backend", "sim", "--build-dir", str(tmp_path), check_rc=2),
             f"--build-dir '{tmp_path}' is not the build")
    out = run_cli("infer", str(copy), "--backend", "sim", "--build-dir", str(deploy.parent), "--dataset", "task",
                  "--limit", "5")
    assert out.stdout.startswith("T1 (pmnist-1) on sim: 5 images") and "compiling the accelerator" in out.stderr
    # learning needs nothing outside the package either (its host/ holds the hidden weights)
    assert "learned T3 (pmnist-3)" in run_cli("learn", str(copy), "--epochs", "1", "--no-progress").stdout


@pytest.mark.parametrize("spec,needle", [
    (None, "is neither 'next' nor an existing file"),
    ("{not json", "is not a readable JSON file"),
    ("[1, 2]", "must hold one JSON object"),
    ('{"kind": "sequence", "name": "x"}', "lacks 'dataset'"),
    ('{"kind": "rotated", "dataset": "mnist", "name": "x"}', "unknown kind"),
    ('{"kind": "sequence", "dataset": "digits", "name": "digits"}', "has 64 inputs"),
    ('{"kind": "sequence", "dataset": "mnist", "name": "pmnist-1"}', "already holds a task named 'pmnist-1'")])
def test_bad_task_specs_change_nothing(deploy, tmp_path, spec, needle):
    before = _snapshot(deploy)
    path = tmp_path / "spec.json"
    if spec is not None:
        path.write_text(spec)
    one_line(run_cli("learn", str(deploy), "--task", str(path), "--no-progress", check_rc=2), needle)
    assert _snapshot(deploy) == before and not (deploy / ".staging").exists()


def test_learn_without_the_board_changes_nothing(deploy):
    before = _snapshot(deploy)
    one_line(run_cli("learn", str(deploy), "--backend", "pynq", "--no-progress", check_rc=2),
             "module 'pynq' is missing")
    assert _snapshot(deploy) == before and not (deploy / ".staging").exists()
