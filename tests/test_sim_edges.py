"""Every edge of `metabnn sim` and `metabnn synth`: bad input gets one line and exit 2, an
interrupt leaves sim.json, report.json and rtl/ whole and no simulator or compiler running."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metabnn.errors import MetabnnError

NAMES = ["pmnist-1", "pmnist-2"]


def one_line(proc_or_err: subprocess.CompletedProcess | str, rc: int | None = 2) -> str:
    """The single 'metabnn: error:' line of a refused command (and nothing else on stderr)."""
    err = proc_or_err if isinstance(proc_or_err, str) else proc_or_err.stderr
    if rc is not None and not isinstance(proc_or_err, str):
        assert proc_or_err.returncode == rc, proc_or_err.stderr[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metabnn: error: "), err[-2000:]
    assert "Traceback" not in err
    return lines[0]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    from metabnn.cli import main

    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def fake_build(path: Path, **report_changes) -> Path:
    """The JSON files of a 2-task build (no RTL): enough for every check made before any work."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(json.dumps(
        {"artifact": "metabnn-build", "metabnn_version": "0.1.0",
         "source": {"export_dir": str(path.parent / "export"), "export_manifest_sha256": "0" * 64}}))
    report = {"clock_ns": 10.0, "tasks": 2, "layers": [],
              "agreement": [{"task": k, "name": n} for k, n in enumerate(NAMES)], **report_changes}
    (path / "report.json").write_text(json.dumps(report))
    return path


# --- fast: no artifacts --------------------------------------------------------------------------


@pytest.mark.parametrize("spec, index", [("1", 0), ("2", 1), ("pmnist-2", 1), ("PMNIST-1", 0), ("T2", 1),
                                         (" 2 ", 1)])
def test_task_numbered_from_one_or_named(tmp_path, spec, index):
    from metabnn.sim.builddir import parse_task, task_label

    assert parse_task(fake_build(tmp_path / "b"), spec) == index
    assert task_label(index, NAMES) == f"T{index + 1} ({NAMES[index]})"


@pytest.mark.parametrize("spec, why", [("0", "numbered from 1"), ("3", "has 2 tasks"), ("99", "has 2 tasks"),
                                       ("-1", "has 2 tasks"), ("abc", "no task of that name")])
def test_bad_task_lists_the_valid_ones(tmp_path, capsys, spec, why):
    rc, out, err = cli(capsys, "sim", str(fake_build(tmp_path / "b")), "--task", spec)
    line = one_line(err)
    assert rc == 2 and why in line and "valid tasks: 1 (pmnist-1), 2 (pmnist-2), or all" in line, line
    assert not (tmp_path / "b" / "rtl").exists()


@pytest.mark.parametrize("flag, value, why", [("--n", "0", "give 1 or more"), ("--n", "-1", "give 1 or more"),
                                              ("--n", "abc", "not a whole number"),
                                              ("--jobs", "0", "give 1 or more"), ("--jobs", "-1", "give 1 or more"),
                                              ("--jobs", "x", "not a whole number")])
def test_bad_counts(tmp_path, capsys, flag, value, why):
    rc, out, err = cli(capsys, "sim", str(fake_build(tmp_path / "b")), "--task", "all", f"{flag}={value}")
    assert rc == 2 and why in one_line(err) and flag in err


def test_jobs_with_one_task_is_refused(tmp_path, capsys):
    rc, out, err = cli(capsys, "sim", str(fake_build(tmp_path / "b")), "--task", "2", "--jobs", "2")
    assert rc == 2 and "--jobs runs several tasks at once" in one_line(err)


def _not_a_build(tmp_path: Path, kind: str) -> Path:
    d = tmp_path / kind
    if kind == "missing":
        return d
    if kind == "file":
        d.write_text("x")
        return d
    d.mkdir()
    artifact = {"export": "metabnn-export", "run": "metabnn-run", "deploy": "metabnn-deploy",
                "foreign": "someone-else", "list": None}.get(kind)
    if kind in ("export", "run", "deploy", "foreign"):
        (d / "manifest.json").write_text(json.dumps({"artifact": artifact}))
    elif kind == "list":
        (d / "manifest.json").write_text("[1, 2]")
    elif kind == "truncated-report":
        fake_build(d)
        (d / "report.json").write_text((d / "report.json").read_text()[:40])
    elif kind == "old-report":  # no clock: a report another metabnn wrote
        fake_build(d)
        r = json.loads((d / "report.json").read_text())
        del r["clock_ns"]
        (d / "report.json").write_text(json.dumps(r))
    elif kind == "no-deploy":  # made before the runtime existed: no deploy/, no partition
        fake_build(d)
    elif kind == "truncated-deploy":
        fake_build(d)
        (d / "deploy").mkdir()
        (d / "deploy" / "manifest.json").write_text('{"artifact": "metabnn-deploy", "generation": 2, "tas')
    return d


@pytest.mark.parametrize("kind, says", [
    ("missing", "does not exist"), ("file", "is a file, not a directory"),
    ("export", "is an EXPORT_DIR"), ("run", "is a RUN_DIR"), ("deploy", "give the BUILD_DIR that holds it"),
    ("foreign", "its manifest.json is foreign"), ("list", "its manifest.json is foreign"),
    ("truncated-report", "report.json' is missing or damaged"), ("old-report", "lacks the build's clock"),
    ("no-deploy", "lacks intermediate_models/dataflow_partition.onnx"),
    ("truncated-deploy", "deploy/manifest.json' is damaged")])
@pytest.mark.parametrize("command", ["sim", "synth"])
def test_not_a_usable_build_dir(tmp_path, capsys, kind, says, command):
    d = _not_a_build(tmp_path, kind)
    if command == "synth" and kind == "truncated-deploy":
        says = "lacks intermediate_models"  # synth reads no deploy/
    rc, out, err = cli(capsys, command, str(d), "--no-progress")
    assert rc == 2 and says in one_line(err), err


def test_missing_build_tools_named_with_the_install(tmp_path, monkeypatch):
    """make and g++ on PATH but no perl (Verilator's driver is a perl script): one line, not exit 127."""
    from metabnn.sim import verilator

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "g++"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(MetabnnError, match=r"needs perl, not found on PATH; install it \(.*apt-get install"):
        verilator.verilator_root()
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    with pytest.raises(MetabnnError, match="needs make, g\\+\\+ and perl, not found on PATH"):
        verilator.verilator_root()


def test_process_group_killed_on_timeout_and_interrupt(tmp_path):
    """A child and its own children (make -> g++) all end when metabnn stops waiting."""
    from metabnn.sim import procs

    marker = tmp_path / "alive"
    script = f"(sleep 30; touch {marker}) & sleep 30"
    with pytest.raises(subprocess.TimeoutExpired):
        procs.run(["sh", "-c", script], timeout=0.5)
    time.sleep(0.3)
    leftover = subprocess.run(["pgrep", "-f", str(marker)], capture_output=True, text=True).stdout.split()
    assert leftover == [] and not procs._LIVE


def test_progress_counts_seconds_of_a_step():
    import io

    from metabnn.sim.progress import Progress

    buf = io.StringIO()
    log = Progress("synth", every=0.2, stream=buf)
    with log.step("layer 1/2 L0: yosys synth_xilinx") as step:
        time.sleep(0.5)
        step.result = "LUT 5"
    lines = buf.getvalue().splitlines()
    assert lines[0] == "[synth] layer 1/2 L0: yosys synth_xilinx ..."
    assert any(l.startswith("[synth] layer 1/2 L0: yosys synth_xilinx: running, 0.") for l in lines)
    assert lines[-1].startswith("[synth] layer 1/2 L0: yosys synth_xilinx: LUT 5 in 0.")
    quiet = io.StringIO()
    with Progress("synth", enabled=False, stream=quiet).step("x"):
        pass
    assert quiet.getvalue() == ""


# --- slow: a copy of the shared tiny build ---------------------------------------------------------

def _env(cache: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", METABNN_CACHE_DIR=str(cache))


def _ours(cache: Path) -> list[str]:
    """Processes still running with this test's cache in their environment (compilers, harness, yosys)."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            if f"METABNN_CACHE_DIR={cache}".encode() in (p / "environ").read_bytes().split(b"\0"):
                found.append((p / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
        except OSError:
            pass
    return found


def _interrupt(args: list[str], cache: Path, cwd: Path, when: str, sig: int, delay: float,
               timeout: float = 400) -> tuple[int, str]:
    """Run the CLI, send ``sig`` ``delay`` s after ``when`` shows on stderr; (rc, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "metabnn.cli", *args], cwd=cwd, env=_env(cache),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = []
    t0 = time.monotonic()
    for line in proc.stderr:
        err.append(line)
        if when in line:
            break
        assert time.monotonic() - t0 < timeout, "".join(err)
    else:
        proc.wait()
        pytest.fail(f"'{when}' never came: {''.join(err)}")
    time.sleep(delay)
    proc.send_signal(sig)
    rest = proc.communicate(timeout=60)[1]
    return proc.returncode, "".join(err) + rest


@pytest.fixture(scope="module")
def build_copy(tmp_path_factory, tiny_build) -> Path:
    out = tmp_path_factory.mktemp("simedge") / "b"
    shutil.copytree(tiny_build, out)
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("simcache")


def _leftovers(build: Path) -> list[str]:
    return sorted(p.name for p in build.parent.iterdir() if p.name.startswith("."))


@pytest.mark.slow
def test_interrupt_during_compile_keeps_everything(build_copy, tmp_path):
    """Ctrl-C while Verilator compiles: the training message is not what sim prints; sim.json as
    it was, rtl/ whole, no half-built model in the cache and no compiler left running."""
    cache = tmp_path / "cache"  # empty: this run must compile
    (build_copy / "sim.json").write_text('{"marker": 1}\n')
    rc, err = _interrupt(["sim", str(build_copy), "--n", "20"], cache, tmp_path,
                         "compiling the accelerator with Verilator", signal.SIGINT, 3.0)
    assert rc == 130, err
    assert err.strip().splitlines()[-1].startswith("metabnn: sim interrupted; BUILD_DIR/sim.json is as it was")
    assert "resume" not in err and "Traceback" not in err
    assert (build_copy / "sim.json").read_text() == '{"marker": 1}\n'
    amap = json.loads((build_copy / "rtl" / "address_map.json").read_text())
    assert all(Path(s).is_file() for s in amap["sources"])
    assert not [p for p in build_copy.iterdir() if p.name.startswith(".")], list(build_copy.iterdir())
    time.sleep(0.5)
    assert _ours(cache) == []
    staged = list((cache / "verilator").iterdir()) if (cache / "verilator").exists() else []
    assert staged == []


@pytest.mark.slow
def test_relative_build_dir_from_another_cwd_prints_tasks_and_percent(build_copy, cache):
    """The documented `metabnn sim demo-run/build-pynq-z2 --n 100`: a relative BUILD_DIR."""
    proc = subprocess.run([sys.executable, "-m", "metabnn.cli", "sim", build_copy.name, "--n", "20", "--task", "2"],
                          cwd=build_copy.parent, env=_env(cache), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sim = json.loads((build_copy / "sim.json").read_text())
    assert sim["task"] == 1 and sim["name"] == "pmnist-2" and sim["images"] == sim["agree"] == 20
    assert 50 < sim["accuracy"] <= 100 and round(sim["accuracy"] * 20 / 100, 6) % 1 == 0  # percent of 20 images
    assert proc.stdout.startswith(f"T2 (pmnist-2): 20/20 images agree with PyTorch, accuracy {sim['accuracy']:.2f}%")
    assert "[sim] T2 (pmnist-2): simulating 20 images" in proc.stderr


@pytest.mark.slow
def test_sigterm_during_simulation_leaves_no_harness(build_copy, cache, tmp_path):
    """kill PID while every task's harness runs (--task all, all 10,000 images): the harnesses end too."""
    before = (build_copy / "sim.json").read_bytes()
    rc, err = _interrupt(["sim", str(build_copy), "--task", "all", "--jobs", "2"], cache, tmp_path,
                         "simulating 2 tasks, 2 at a time", signal.SIGTERM, 2.0)
    assert rc == 130 and "metabnn: sim interrupted" in err and "Traceback" not in err, err
    assert (build_copy / "sim.json").read_bytes() == before
    time.sleep(0.5)
    assert _ours(cache) == []
    assert not [p for p in build_copy.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_layer_attributes_the_top_cannot_take(build_copy, tmp_path):
    """mem_mode (and the other attributes the top relies on) are checked: one line naming them."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from metabnn.hw.finn_env import finn_session
    from metabnn.sim import top

    b = tmp_path / "b"
    shutil.copytree(build_copy, b)
    with finn_session(tmp_path / "fw"):
        top.generate(b)
        rtl_before = {p.name: p.read_bytes() for p in (b / "rtl").iterdir()}
        for attr, value, says in [("mem_mode", "internal_embedded", "mem_mode = 'internal_embedded'"),
                                  ("numInputVectors", [4], "numInputVectors = [4]"),
                                  ("runtime_writeable_weights", 0, "runtime_writeable_weights = 0")]:
            path = next(p for p in sorted((b / "dataflow_partition").glob("*.onnx"))
                        if any(n.op_type.startswith("MVAU") for n in ModelWrapper(str(p)).graph.node))
            model = ModelWrapper(str(path))
            node = next(n for n in model.graph.node if n.op_type.startswith("MVAU"))
            saved = getCustomOp(node).get_nodeattr(attr)
            getCustomOp(node).set_nodeattr(attr, value)
            model.save(str(path))
            with pytest.raises(MetabnnError) as e:
                top.generate(b)
            assert str(e.value).startswith(f"layer {node.name}: {says} is not what metabnn's RTL top takes")
            assert "\n" not in str(e.value)
            getCustomOp(node).set_nodeattr(attr, saved)
            model.save(str(path))
    assert {p.name: p.read_bytes() for p in (b / "rtl").iterdir()} == rtl_before


@pytest.mark.slow
def test_read_only_build_refused_before_any_work(build_copy, tmp_path):
    from conftest import read_only, run_cli_unprivileged

    b = tmp_path / "ro"
    shutil.copytree(build_copy, b)
    read_only(b)
    try:
        for cmd in ("sim", "synth"):
            line = one_line(run_cli_unprivileged(cmd, str(b), "--no-progress", timeout=120))
            assert f"BUILD_DIR '{b}' is not writable" in line and "copy the build" in line
    finally:
        for p in [b, *b.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.mark.slow
def test_synth_shows_each_layer_with_time_and_interrupt_keeps_report(build_copy, tmp_path):
    from conftest import run_cli

    out = run_cli("synth", str(build_copy), timeout=900)
    lines = out.stderr.splitlines()
    mvau = [l for l in lines if l.startswith("[synth] layer 1/") and ": yosys synth_xilinx" in l]
    assert mvau[0].endswith("yosys synth_xilinx ...") and " s" in mvau[-1].split(" in ")[-1], lines
    assert any(l.startswith("[synth] AXI-lite decoder") for l in lines)
    quiet = run_cli("synth", str(build_copy), "--no-progress", timeout=900)
    assert quiet.stderr == "" and quiet.stdout == out.stdout

    report = (build_copy / "report.json").read_bytes()
    cache = tmp_path / "cache"  # empty: yosys really runs
    rc, err = _interrupt(["synth", str(build_copy)], cache, tmp_path, "[synth] layer 1/", signal.SIGINT, 2.0)
    assert rc == 130 and err.strip().splitlines()[-1].startswith(
        "metabnn: synth interrupted; BUILD_DIR/report.json is as it was"), err
    assert (build_copy / "report.json").read_bytes() == report
    time.sleep(0.5)
    assert _ours(cache) == []
