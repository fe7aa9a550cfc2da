"""Every edge a user hits with infer / learn / status on a deployment package (fast: a
synthetic package, no training or build). Each command runs as a real process, as a user
runs it: one line `metabnn: error: ...` and exit code 2 for bad input, 130 for Ctrl-C."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import read_only, run_cli, run_cli_unprivileged
from metabnn.errors import MetabnnError
from metabnn.runtime.synthetic import make_package

INTERNAL = ("write_deploy_manifest", "bitfile=", "limit=", "batch_size", "None", "Traceback", "runtime_top")


@pytest.fixture()
def pkg(tmp_path):
    make_package(tmp_path / "deploy", (64, 16, 12, 10), [(4, 8), (2, 4), (5, 2)], n_tasks=2, seed=1)
    return tmp_path / "deploy"


@pytest.fixture()
def images(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (30, 64)).astype(np.uint8)
    np.savez(tmp_path / "im.npz", images=x, labels=np.zeros(30, np.int64))
    return tmp_path / "im.npz"


def one_line(proc, *needles):
    """The error is exactly one line, names no internals, and says each of ``needles``."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("metabnn: "), line
    for n in needles:
        assert n in line, line
    for bad in INTERNAL:
        assert bad not in line, line
    return line


def hold_lock(root, mode, command="learn"):
    """A separate process holding the package lock, as a running learn (or infer) would."""
    code = (f"import sys, time; from metabnn.runtime.lock import PackageLock; "
            f"l = PackageLock({str(root)!r}, {command!r}).{mode}(); print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# ---- item 1: the package lock -------------------------------------------------------------

def test_readers_never_touch_a_running_learns_staging(pkg, images):
    """status/infer/learn while a learn holds the package: one line naming it; its staging survives."""
    staging = pkg / ".staging"
    staging.mkdir()
    (staging / "half-written.dat").write_text("00000000\n")
    writer = hold_lock(pkg, "exclusive")
    try:
        for argv in (["status", str(pkg)], ["infer", str(pkg), "--images", str(images)],
                     ["learn", str(pkg), "--no-progress"]):
            proc = run_cli(*argv, check_rc=2)
            one_line(proc, f"is being updated by metabnn learn (pid {writer.pid})", f"'metabnn {argv[0]}' again")
            assert (staging / "half-written.dat").is_file()
    finally:
        writer.kill()
        writer.wait()
    # The writer is gone (the kernel dropped its lock): its unsealed staging is now garbage.
    out = run_cli("status", str(pkg)).stdout
    assert "repaired: discarded an unsealed update" in out and not staging.exists()


def test_repair_only_when_no_one_else_holds_the_package(pkg):
    (pkg / ".staging").mkdir()
    reader = hold_lock(pkg, "shared", "infer")
    try:
        proc = run_cli("status", str(pkg), check_rc=2)
        one_line(proc, "has an interrupted update to repair", f"pid {reader.pid}", "again when it has finished")
        assert (pkg / ".staging").is_dir()
    finally:
        reader.kill()
        reader.wait()
    assert "discarded" in run_cli("status", str(pkg)).stdout


def test_readers_share_the_package(pkg, images):
    reader = hold_lock(pkg, "shared", "infer")
    try:
        run_cli("infer", str(pkg), "--images", str(images))
        run_cli("status", str(pkg), "--backend", "reference")
    finally:
        reader.kill()
        reader.wait()


# ---- item 4: unwritable places ------------------------------------------------------------

def test_infer_out_unwritable_is_refused_before_any_work(pkg, tmp_path):
    (tmp_path / "ro").mkdir()
    ro = read_only(tmp_path / "ro")
    # --images does not even exist: the --out check comes first, before anything is read.
    proc = run_cli_unprivileged("infer", str(pkg), "--images", str(tmp_path / "nope.npy"), "--out", str(ro / "o.npz"))
    one_line(proc, "--out", "read-only")
    proc = run_cli("infer", str(pkg), "--images", str(tmp_path / "nope.npy"), "--out", str(tmp_path), check_rc=2)
    one_line(proc, "--out", "is a directory")


def test_read_only_package(pkg):
    before = {p: p.read_bytes() for p in pkg.rglob("*") if p.is_file()}
    read_only(pkg)
    assert "generation 0" in run_cli_unprivileged("status", str(pkg), check_rc=0).stdout
    proc = run_cli_unprivileged("learn", str(pkg), "--no-progress")
    one_line(proc, "is read-only", "chmod -R u+w", "nothing was changed")
    assert {p: p.read_bytes() for p in pkg.rglob("*") if p.is_file()} == before


def test_read_only_package_that_needs_repair(pkg):
    (pkg / ".staging").mkdir()
    read_only(pkg)
    proc = run_cli_unprivileged("status", str(pkg))
    one_line(proc, "is read-only", "interrupted update", "chmod -R u+w")
    assert (pkg / ".staging").is_dir()


# ---- item 5: Ctrl-C -----------------------------------------------------------------------

def _interrupt(*argv, point):
    env = dict(os.environ, METABNN_TEST_KILL=f"{point}:1:INT")
    return subprocess.run([sys.executable, "-m", "metabnn.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=120)


def test_ctrl_c_in_infer_writes_nothing(pkg, images, tmp_path):
    proc = _interrupt("infer", str(pkg), "--images", str(images), "--batch-size", "10", "--out",
                      str(tmp_path / "o.npz"), point="infer_batch")
    assert proc.returncode == 130
    assert proc.stderr.strip().splitlines()[-1] == ("metabnn: interrupted; no outputs were written (--out is written "
                                                    "only once every image is done)")
    assert not (tmp_path / "o.npz").exists() and not list(tmp_path.glob(".o.npz*"))


def test_ctrl_c_in_status_repair_is_finished_next_time(pkg):
    (pkg / ".staging").mkdir()
    proc = _interrupt("status", str(pkg), point="before_repair")
    assert proc.returncode == 130 and "a repair under way finishes on the next 'metabnn status'" in proc.stderr
    assert "train" not in proc.stderr
    assert "discarded" in run_cli("status", str(pkg)).stdout


# ---- item 6: --task as printed ------------------------------------------------------------

def test_infer_task_numbers_and_names(pkg, images):
    from metabnn.runtime.package import open_package, parse_task

    tasks = open_package(pkg).tasks
    assert [parse_task(t, tasks) for t in ("1", "T2", "synthetic-2", "2")] == [0, 1, 1, 1]
    out = run_cli("infer", str(pkg), "--task", "2", "--images", str(images)).stdout
    assert out.startswith("T2 (synthetic-2) on reference: 30 images")
    assert run_cli("infer", str(pkg), "--task", "synthetic-1", "--images", str(images)).stdout.startswith("T1 (")
    for bad, why in (("0", "numbered from 1"), ("3", "not a task"), ("-1", "not a task"), ("pmnist-9", "not a task")):
        proc = run_cli("infer", str(pkg), "--task", bad, "--images", str(images), check_rc=2)
        one_line(proc, why, "1 (synthetic-1), 2 (synthetic-2)")
    assert "T1 (synthetic-1), T2 (synthetic-2)" in run_cli("status", str(pkg)).stdout


# ---- item 9: the sweep of bad inputs -------------------------------------------------------

def _write(path, kind):
    x = np.random.default_rng(1).integers(0, 256, (5, 64)).astype(np.uint8)
    if kind == "wrong-shape":
        np.save(path, x[:, :60])
    elif kind == "float":
        np.save(path, x.astype(np.float32) / 255)
    elif kind == "too-big":
        np.save(path, x.astype(np.int16) + 300)
    elif kind == "truncated-npy":
        np.save(path, x)
        path.write_bytes(path.read_bytes()[:100])
    elif kind == "text":
        path.write_text("these are not images\n")
    elif kind == "empty-file":
        path.write_bytes(b"")
    elif kind == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif kind == "no-images-npz":
        np.savez(path, pixels=x)
    elif kind == "truncated-npz":
        np.savez(path, images=x)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "bad-labels":
        np.savez(path, images=x, labels=np.zeros(3))
    elif kind == "zero-images":
        np.save(path, x[:0])
    elif kind == "directory":
        path.mkdir()
    return path


@pytest.mark.parametrize("kind,needle", [
    ("wrong-shape", "uint8 pixels [N, 64]"), ("float", "uint8 pixels"), ("too-big", "0..255"),
    ("truncated-npy", "not a readable .npy/.npz"), ("text", "not a readable"), ("empty-file", "not a readable"),
    ("pickle", "not a readable"), ("no-images-npz", "no 'images' array"), ("truncated-npz", "not a readable"),
    ("bad-labels", "'labels' must be integers [5]"), ("zero-images", "holds no images"),
    ("directory", "is a directory")])
def test_bad_images_files(pkg, tmp_path, kind, needle):
    suffix = ".npz" if "npz" in kind or kind == "bad-labels" else ".npy"
    path = _write(tmp_path / f"x{suffix}", kind)
    one_line(run_cli("infer", str(pkg), "--images", str(path), check_rc=2), needle)


@pytest.mark.parametrize("argv,needle", [
    (["--limit", "0"], "--limit 0: give a positive number"), (["--limit", "-3"], "--limit -3"),
    (["--batch-size", "0"], "--batch-size 0: give a positive number"), (["--batch-size", "-1"], "--batch-size -1"),
    (["--bitfile", "x.bit"], "--bitfile is for --backend pynq"),
    (["--build-dir", "b"], "--build-dir is for --backend sim"),
    (["--backend", "pynq"], "module 'pynq' is missing"),
    (["--dataset", "task"], "holds no definition of T1 (synthetic-1)"),
    (["--dataset", "nosuchset"], "nosuchset")])
def test_bad_infer_flags(pkg, images, argv, needle):
    extra = [] if "--dataset" in argv else ["--images", str(images)]
    one_line(run_cli("infer", str(pkg), *extra, *argv, check_rc=2), needle)


def test_bad_learn_flags_change_nothing(pkg):
    before = {p: p.read_bytes() for p in pkg.rglob("*") if p.is_file()}
    for argv, needle in ((["--epochs", "0"], "--epochs 0: give a positive number of epochs"),
                         (["--epochs", "-1"], "--epochs -1"),
                         (["--bitfile", "a.bit"], "--bitfile is for --backend pynq"),
                         ([], "holds no hidden-weight checkpoint")):  # a synthetic package has none
        one_line(run_cli("learn", str(pkg), "--no-progress", *argv, check_rc=2), needle)
    assert {p: p.read_bytes() for p in pkg.rglob("*") if p.is_file() and p.name != ".lock"} == before
    assert not (pkg / ".staging").exists()


def _manifest(pkg):
    return json.loads((pkg / "manifest.json").read_text())


@pytest.mark.parametrize("damage,needle", [
    ("missing", "has no manifest.json; give the deploy/ directory"),
    ("truncated", "unreadable manifest.json"),
    ("foreign", "is not a metabnn deployment"),
    ("older-format", "format version 0, this metabnn reads 1; rebuild"),
    ("older-fields", "lacks 'layers'"),
    ("wrong-types", "has fields this metabnn cannot read"),
    ("escaping-path", "has fields this metabnn cannot read"),
    ("flipped-byte", "is corrupt: driver/runtime_weights/"),
    ("missing-file", "lacks tasks/1/host_affine.npz"),
    ("journal-corrupt", "update.json' (the journal of an interrupted update) is damaged"),
    ("journal-fields", "update.json' (the journal of an interrupted update) is damaged"),
    ("journal-stale", "cannot be finished: tasks/9/x.dat is neither staged nor in place"),
    ("learn-log", "learn.json' (the log of device updates) is damaged (JSONDecodeError); move it away"),
    ("not-a-dir", "is not a directory; give the DEPLOY_DIR")])
def test_damaged_packages(pkg, damage, needle):
    m = pkg / "manifest.json"
    if damage == "missing":
        m.unlink()
    elif damage == "truncated":
        m.write_bytes(m.read_bytes()[:len(m.read_bytes()) // 2])
    elif damage == "foreign":
        m.write_text("[1, 2, 3]")
    elif damage == "older-format":
        m.write_text(json.dumps({**_manifest(pkg), "format_version": 0}))
    elif damage == "older-fields":
        m.write_text(json.dumps({k: v for k, v in _manifest(pkg).items() if k != "layers"}))
    elif damage == "wrong-types":
        m.write_text(json.dumps({**_manifest(pkg), "tasks": "T1"}))
    elif damage == "escaping-path":
        man = _manifest(pkg)
        man["files"]["../../etc/passwd"] = "0" * 64
        m.write_text(json.dumps(man))
    elif damage == "flipped-byte":
        f = next((pkg / "driver/runtime_weights").glob("*.dat"))
        data = bytearray(f.read_bytes())
        data[3] ^= 0x01
        f.write_bytes(bytes(data))
    elif damage == "missing-file":
        (pkg / "tasks/1/host_affine.npz").unlink()
    elif damage == "journal-corrupt":
        (pkg / "update.json").write_text('{"state": "sea')
    elif damage == "journal-fields":
        (pkg / "update.json").write_text('{"state": "sealed"}')
    elif damage == "journal-stale":
        (pkg / "update.json").write_text(json.dumps({"state": "sealed", "generation": 1, "manifest_sha256": "0",
                                                     "files": {"tasks/9/x.dat": "0" * 64}}))
    elif damage == "learn-log":
        (pkg / "learn.json").write_text('{"updates": [{"generation"')
    elif damage == "not-a-dir":
        shutil.rmtree(pkg)
        pkg.write_text("")
    for argv in (["status", str(pkg)], ["status", str(pkg), "--backend", "reference"]):
        one_line(run_cli(*argv, check_rc=2), needle)


def test_pynq_bitfile_errors(pkg, tmp_path, monkeypatch):
    import fake_pynq
    from metabnn.runtime.backends.pynq_board import PynqBackend
    from metabnn.runtime.package import open_package

    p = open_package(pkg)
    fake_pynq.install(monkeypatch, p)
    with pytest.raises(MetabnnError, match="--bitfile '.*nope.bit' does not exist"):
        PynqBackend(bitfile=tmp_path / "nope.bit").open(p)
    (tmp_path / "a.bit").write_bytes(b"bit")
    with pytest.raises(MetabnnError, match="a.hwh' is missing; PYNQ needs the .hwh beside the .bit"):
        PynqBackend(bitfile=tmp_path / "a.bit").open(p)
    with pytest.raises(MetabnnError, match="has no bitfile/\\*.bit .* give --bitfile FILE.bit"):
        PynqBackend().open(p)
    assert fake_pynq.LOG == []  # nothing was programmed


def test_lock_note_names_the_holder_only_while_held(pkg):
    from metabnn.runtime.lock import LOCK_FILE, PackageLock

    with PackageLock(pkg, "learn").exclusive():
        assert (pkg / LOCK_FILE).read_text() == f"{os.getpid()} learn\n"
    assert (pkg / LOCK_FILE).read_text() == ""
    with PackageLock(pkg, "status").shared() as a, PackageLock(pkg, "infer").shared():
        assert a.mode == "shared"
        with pytest.raises(MetabnnError, match="in use by"):
            PackageLock(pkg, "learn").exclusive()
    start = time.time()
    PackageLock(pkg, "learn").exclusive().release()  # free again at once
    assert time.time() - start < 5
