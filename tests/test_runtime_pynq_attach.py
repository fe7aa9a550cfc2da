"""The pynq backend keeps the accelerator programmed: it attaches to a loaded bitstream that is
the package's (PYNQ's record of the loaded .bit: its sha1), reads the live memories back and
writes only the words that differ, sets the build's clock, and times out as told."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fake_pynq
from metabnn.errors import MetabnnError
from metabnn.runtime import Accelerator, open_package
from metabnn.runtime.accelerator import changed_runs
from metabnn.runtime.synthetic import make_package

TESTS = Path(__file__).parent


@pytest.fixture()
def pkg(tmp_path):
    root = tmp_path / "deploy"
    make_package(root, (16, 16, 8, 10), [(2, 4), (1, 8), (2, 2)], n_tasks=2, seed=3)
    (root / "bitfile").mkdir()
    (root / "bitfile" / "top.bit").write_bytes(b"bit of this build")
    (root / "bitfile" / "top.hwh").write_text("<hwh/>")
    return open_package(root)


def kinds(log, *names):
    return [e for e in log if e[0] in names]


def test_second_open_attaches_and_writes_nothing(pkg, monkeypatch):
    log = fake_pynq.install(monkeypatch, pkg)
    x = np.random.default_rng(1).integers(0, 256, (5, 16)).astype(np.uint8)
    with Accelerator.open(pkg.root, backend="pynq", task=1) as acc:  # first process: downloads
        first = acc.infer(x)
        assert acc.status()["backend"]["bitstream"] == "downloaded"
    assert kinds(log, "download")
    log.clear()
    lines = []
    with Accelerator.open(pkg.root, backend="pynq", task=1, log=lines.append) as acc:  # a later process
        assert kinds(log, "Overlay") == [("Overlay", str(pkg.root / "bitfile" / "top.bit"), False)]
        assert kinds(log, "download", "write_mm") == []  # not reprogrammed; task 1 is already there
        assert acc.last_sync == {l["name"]: 0 for l in pkg.layers}
        assert acc.status()["backend"]["bitstream"] == "attached"
        assert np.array_equal(acc.infer(x).raw, first.raw)
    assert any("attached" in s for s in lines), lines


def test_live_words_are_read_back_and_only_differing_ones_rewritten(pkg, monkeypatch):
    """The device holds what the last process left (not the build-time image): only the words
    that differ from the selected task are written, read from the live memories."""
    log = fake_pynq.install(monkeypatch, pkg)
    Accelerator.open(pkg.root, backend="pynq", task=1).close()
    th = next(l for l in pkg.layers if l["kind"] == "thresholding")
    live = fake_pynq.memories(pkg)[th["index"]]
    want = pkg.image(0)[th["index"]]
    live[:] = want  # another process left task 0 there ...
    live[2] ^= 5  # ... and two words that are neither task's (a half-written update)
    live[12] ^= 9
    bad = live.copy()
    log.clear()
    with Accelerator.open(pkg.root, backend="pynq", task=0) as acc:
        writes = kinds(log, "write_mm", "download")
        ip = th["memory"]["ip"]
        th_writes = [e for e in writes if e[1] == ip]
        assert th_writes == [("write_mm", ip, 8, want[2:3].tobytes()), ("write_mm", ip, 48, want[12:13].tobytes())]
        assert acc.last_sync[th["name"]] == 2 and not np.array_equal(bad, want)
        for l, mem, img in zip(pkg.layers, fake_pynq.memories(pkg), pkg.image(0)):
            assert np.array_equal(mem, img), l["name"]
        # the other memories held task 1 (live, not the build image): only task 0's differing runs
        for l, a, b in zip(pkg.layers, pkg.image(1), pkg.image(0)):
            if l is not th:
                assert acc.last_sync[l["name"]] == sum(e - s for s, e in changed_runs(a, b)), l["name"]


def test_foreign_bitstream_is_replaced_and_memories_written(pkg, monkeypatch):
    log = fake_pynq.install(monkeypatch, pkg)
    fake_pynq.load_foreign()
    lines = []
    with Accelerator.open(pkg.root, backend="pynq", task=0, log=lines.append) as acc:
        assert kinds(log, "Overlay")[0][2] is True and kinds(log, "download")
        info = acc.status()["backend"]
        assert info["bitstream"] == "downloaded" and info["replaced"].endswith("base.bit")
        for mem, img in zip(fake_pynq.memories(pkg), pkg.image(0)):
            assert np.array_equal(mem, img)
    assert any("another bitstream" in s for s in lines), lines


def test_a_rebuilt_bitstream_at_the_same_path_is_downloaded(pkg, monkeypatch):
    """Identity is the bitstream's content (sha1), not its path."""
    log = fake_pynq.install(monkeypatch, pkg)
    Accelerator.open(pkg.root, backend="pynq").close()
    (pkg.root / "bitfile" / "top.bit").write_bytes(b"bit of a rebuild")
    log.clear()
    Accelerator.open(pkg.root, backend="pynq").close()
    assert kinds(log, "download")


def test_download_on_request_and_never_when_refused(pkg, monkeypatch):
    log = fake_pynq.install(monkeypatch, pkg)
    Accelerator.open(pkg.root, backend="pynq").close()
    log.clear()
    Accelerator.open(pkg.root, backend="pynq", download=True).close()
    assert kinds(log, "download")
    fake_pynq.load_foreign()
    log.clear()
    with pytest.raises(MetabnnError, match="PL holds '.*base.bit'.*--download"):
        Accelerator.open(pkg.root, backend="pynq", download=False)
    assert kinds(log, "Overlay", "download", "write_mm", "write") == []


def test_clock_is_set_from_the_package(pkg, monkeypatch):
    log = fake_pynq.install(monkeypatch, pkg)
    Accelerator.open(pkg.root, backend="pynq").close()  # downloading sets the .hwh's 100 MHz
    assert fake_pynq.BOARD["fclk0"] == 100.0
    fake_pynq.Clocks.fclk0_mhz = 50.0  # another program changed FCLK0 meanwhile
    log.clear()
    with Accelerator.open(pkg.root, backend="pynq") as acc:
        assert kinds(log, "set_fclk0_mhz") == [("set_fclk0_mhz", 100.0)]  # pkg clock_ns = 10
        assert acc.status()["backend"]["clock_mhz"] == 100.0
    log.clear()
    Accelerator.open(pkg.root, backend="pynq").close()
    assert kinds(log, "set_fclk0_mhz") == []  # already right: left alone


def test_timeout_is_configurable(pkg, monkeypatch):
    fake_pynq.install(monkeypatch, pkg)
    Accelerator.open(pkg.root, backend="pynq").close()
    fake_pynq.BOARD["hang"] = True  # the accelerator never signals done
    t = time.monotonic()
    with pytest.raises(MetabnnError, match=r"did not finish 1 image in 0\.2 s.*--timeout"):
        Accelerator.open(pkg.root, backend="pynq", timeout_s=0.2)
    assert time.monotonic() - t < 5
    with pytest.raises(MetabnnError, match="--timeout 0"):
        Accelerator.open(pkg.root, backend="pynq", timeout_s=0)


def _metabnn(board: Path, deploy: Path, *args: str, rc: int = 0) -> subprocess.CompletedProcess:
    """One `metabnn` process on the fake board kept in ``board``."""
    code = ("import sys, fake_pynq\n"
            f"fake_pynq.install_process({str(board)!r}, {str(deploy)!r})\n"
            "from metabnn.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == rc, p.stderr
    return p


def test_cli_processes_attach_to_the_programmed_board(pkg, tmp_path):
    board = tmp_path / "board"
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(2).integers(0, 256, (9, 16)).astype(np.uint8))
    root = pkg.root
    first = _metabnn(board, root, "infer", str(root), "--backend", "pynq", "--images", str(x), "--task", "2")
    assert "pynq: downloading top.bit: no bitstream is loaded" in first.stderr
    assert "images/s" in first.stdout
    second = _metabnn(board, root, "infer", str(root), "--backend", "pynq", "--images", str(x), "--task", "2",
                      "--timeout", "30")
    assert "attached" in second.stderr and "downloading" not in second.stderr
    assert second.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]  # same classes
    st = _metabnn(board, root, "status", str(root), "--backend", "pynq")
    assert "T2 (synthetic-2) loaded, memories consistent: True, words rewritten on open: 0" in st.stdout, st.stdout
    assert "bitstream: attached" in st.stdout and "clock 100 MHz; timeout 10 s" in st.stdout
    forced = _metabnn(board, root, "status", str(root), "--backend", "pynq", "--download")
    assert "downloading top.bit: as asked (--download)" in forced.stderr
    assert "bitstream: downloaded" in forced.stdout


@pytest.mark.parametrize("args, line", [
    (["--backend", "reference", "--download"], "--download is for --backend pynq (the board); add --backend pynq"),
    (["--backend", "sim", "--timeout", "5"], "--timeout is for --backend pynq (the board)"),
    (["--backend", "pynq", "--timeout", "0"], "0: give a number of seconds greater than zero"),
    (["--backend", "pynq", "--timeout", "soon"], "'soon' is not a number of seconds"),
])
def test_cli_refuses_misused_board_flags(pkg, tmp_path, args, line):
    p = _metabnn(tmp_path / "board", pkg.root, "status", str(pkg.root), *args, rc=2)
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("metabnn: error: ") and line in p.stderr, p.stderr


def test_a_damaged_pynq_record_means_download_not_a_traceback(pkg, monkeypatch):
    log = fake_pynq.install(monkeypatch, pkg)
    Accelerator.open(pkg.root, backend="pynq").close()

    def damaged():
        raise ValueError("1 validation error for GlobalState")  # what pydantic raises on a bad file

    monkeypatch.setattr(sys.modules["pynq.pl_server.global_state"], "load_global_state", damaged)
    log.clear()
    Accelerator.open(pkg.root, backend="pynq").close()
    assert kinds(log, "download")


@pytest.mark.parametrize("where, error, line", [
    ("Overlay", RuntimeError("Unable to parse metadata"), "PYNQ could not download .*Unable to parse metadata"),
    ("MMIO", PermissionError("Root permissions required."), "cannot map IP .*run metabnn as root"),
    ("allocate", RuntimeError("Overlay is not downloaded"), "cannot allocate DMA buffers .*--download"),
])
def test_pynq_failures_are_one_line(pkg, monkeypatch, where, error, line):
    fake_pynq.install(monkeypatch, pkg)

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(sys.modules["pynq"], where, fail)
    with pytest.raises(MetabnnError, match=line):
        Accelerator.open(pkg.root, backend="pynq")


def test_a_bitstream_without_the_package_ips_is_refused(pkg, monkeypatch):
    fake_pynq.install(monkeypatch, pkg)
    real = fake_pynq.ip_dict
    monkeypatch.setattr(fake_pynq, "ip_dict", lambda p: {k: v for k, v in real(p).items() if k != "odma0"})
    with pytest.raises(MetabnnError, match="has no IP 'odma0'.*not this build's"):
        Accelerator.open(pkg.root, backend="pynq")
