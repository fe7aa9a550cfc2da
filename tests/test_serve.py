"""``metabnn serve`` on loopback and ``learn | infer | status --remote`` against it.

Fast tests use a synthetic package (numpy only) and a hand-made update staged the way
``metabnn learn`` stages one; the slow ones learn a real task of the tiny build through
``serve`` (reference and sim backends) and compare with a local learn on another copy.
Every server is a real ``metabnn serve`` process on 127.0.0.1, stopped by the test.
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_runtime_edges import one_line

from metabnn.errors import MetabnnError
from metabnn.runtime.synthetic import make_package


class Serve:
    """``metabnn serve ARGS --port 0`` as a subprocess; its URL read from its first stderr line."""

    def __init__(self, *args: str, env: dict | None = None, expect_start: bool = True):
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "metabnn.cli", "serve", *args, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))
        self.url = None
        started = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                if " at http://" in line:
                    self.url = line.split(" at ", 1)[1].split()[0]
                    started.set()
            started.set()

        threading.Thread(target=read, daemon=True).start()
        if expect_start:
            started.wait(timeout=600)
            assert self.url, "\n".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        time.sleep(0.1)  # the reader thread takes the last lines
        return self.proc.returncode

    def __enter__(self) -> "Serve":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def raw(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict]:
    """One HTTP request by hand (what a client other than metabnn's may send)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest(method, path)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    if body:
        conn.send(body)
    r = conn.getresponse()
    out = r.status, json.loads(r.read())
    conn.close()
    return out


def token(deploy: Path) -> dict:
    return {"Authorization": f"Bearer {(deploy / 'server-token').read_text().strip()}"}


@pytest.fixture()
def board(tmp_path):
    """A synthetic package with a token (the board's copy) and the workstation's copy of it."""
    make_package(tmp_path / "board", (64, 16, 12, 10), [(4, 8), (2, 4), (5, 2)], n_tasks=2, seed=1)
    run_cli("serve", str(tmp_path / "board"), "--new-token")
    shutil.copytree(tmp_path / "board", tmp_path / "ws")
    return tmp_path / "board"


@pytest.fixture()
def images(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (2500, 64)).astype(np.uint8)
    np.savez(tmp_path / "im.npz", images=x, labels=np.zeros(len(x), np.int64))
    return tmp_path / "im.npz"


def stage_update(root: Path):
    """Stage and seal, as ``metabnn learn`` does, a new task plus flipped weight words; returns
    (package before, sealed manifest, new task index)."""
    from metabnn.runtime import journal
    from metabnn.runtime.learn import next_manifest, stage_files
    from metabnn.runtime.package import open_package, read_dat
    from metabnn.runtime.words import dat_text

    pkg = open_package(root)
    k = len(pkg.tasks)
    files = {}
    for l in pkg.layers:
        f = l["memory"]["file"]
        if l["kind"] == "mvau":
            w = read_dat(root / "driver/runtime_weights" / f)
            w[[0, 1, 2, w.size - 1]] ^= 0b1011
            files[f"driver/runtime_weights/{f}"] = dat_text(w).encode()
        else:
            t = read_dat(root / f"tasks/{k - 1}/runtime_weights/{f}")
            t[:3] += 1
            files[f"tasks/{k}/runtime_weights/{f}"] = dat_text(t).encode()
    files[f"tasks/{k}/host_affine.npz"] = (root / f"tasks/{k - 1}/host_affine.npz").read_bytes()
    listed = [f"runtime_weights/{l['memory']['file']}" for l in pkg.layers if l["kind"] == "thresholding"]
    files[f"tasks/{k}/task.json"] = json.dumps({"task": k, "name": "extra", "files": listed}).encode()
    entries = pkg.tasks + [{"task": k, "name": "extra", "dir": f"tasks/{k}", "live": True, "files": listed,
                            "host_affine": f"tasks/{k}/host_affine.npz"}]
    staging = journal.begin(root)
    stage_files(root, staging, files)
    manifest = next_manifest(pkg, staging, entries)
    journal.seal(root, manifest, {"what": "test update", "task": k})
    return pkg, manifest, k


def device_files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] in ("driver", "tasks")}


def remote_acc(ws: Path, url: str):
    from metabnn.runtime.package import open_package
    from metabnn.runtime.remote import RemoteAccelerator

    return RemoteAccelerator.open(url, (ws / "server-token").read_text().strip(), open_package(ws))


def test_status_and_infer_remote_equal_local(board, images, tmp_path):
    ws = tmp_path / "ws"
    with Serve(str(board), "--backend", "reference") as srv:
        assert srv.url.startswith("http://127.0.0.1:")  # localhost unless --host says otherwise
        out = run_cli("status", str(ws), "--remote", srv.url).stdout
        assert "on the reference accelerator, generation 0" in out and "in step with it: yes" in out
        # --max-request-mb 16: 2,500 images fit one request; the answer equals a local inference
        run_cli("infer", str(ws), "--remote", srv.url, "--images", str(images), "--task", "2", "--batch-size", "300",
                "--out", str(tmp_path / "remote.npz"))
        run_cli("infer", str(ws), "--images", str(images), "--task", "2", "--out", str(tmp_path / "local.npz"))
        with np.load(tmp_path / "remote.npz") as r, np.load(tmp_path / "local.npz") as lo:
            for key in ("classes", "raw", "logits"):
                assert np.array_equal(r[key], lo[key]), key
        status = json.loads(run_cli("status", str(ws), "--remote", srv.url, "--json").stdout)
        assert status["in_step"] and status["device"]["images_inferred"] == 2500 and status["device"]["task"] == 1
    assert srv.proc.returncode == 130
    assert srv.lines[-1] == (f"metabnn: serve stopped (Ctrl-C); '{board}' and the device hold the last update that "
                             "was answered")
    assert "generation 0" in run_cli("status", str(board)).stdout  # the lock went with the server


def test_infer_requests_split_to_fit_the_server_limit(board, images, tmp_path):
    ws = tmp_path / "ws"
    with Serve(str(board), "--backend", "reference", "--max-request-mb", "0.1") as srv:
        run_cli("infer", str(ws), "--remote", srv.url, "--images", str(images), "--out", str(tmp_path / "r.npz"))
        assert sum("POST /v1/infer 200" in line for line in srv.lines) >= 2
    run_cli("infer", str(ws), "--images", str(images), "--out", str(tmp_path / "l.npz"))
    with np.load(tmp_path / "r.npz") as r, np.load(tmp_path / "l.npz") as lo:
        assert np.array_equal(r["raw"], lo["raw"])


def test_update_applied_by_the_journal_like_a_local_one(board, tmp_path):
    """Only changed words travel; the board's package ends byte-identical (device side) to the
    workstation's, and the device holds what a local update writes, word for word."""
    from metabnn.runtime import Accelerator
    from metabnn.runtime.learn import staged_image, write_device

    ws, local = tmp_path / "ws", tmp_path / "local"
    shutil.copytree(ws, local)
    with Serve(str(board), "--backend", "reference") as srv:
        acc = remote_acc(ws, srv.url)  # opened before the update is sealed, as learn opens its device
        _, manifest, k = stage_update(ws)
        written, _ = acc.apply_update(ws, manifest, k, lambda s: None)
        assert not (ws / "update.json").exists() and not (ws / ".staging").exists()  # committed here too
        assert acc.last_update["words_sent"] < 50 and acc.last_update["bytes_sent"] < 6000
        # the same update applied locally on a third copy writes the same words
        lpkg, lman, _ = stage_update(local)
        with Accelerator.open(lpkg) as lacc:
            lwritten, _ = write_device(local, lacc, staged_image(local, lman, k), lambda s: None)
        assert written == lwritten and sum(written.values()) > 0
        assert device_files(board) == device_files(ws)
        bman = json.loads((board / "manifest.json").read_text())
        assert bman["generation"] == 1 and [t["name"] for t in bman["tasks"]][-1] == "extra"
        assert not any(r.startswith("host/") for r in bman["files"]) and "hidden_weights" in bman["host"]
        out = run_cli("status", str(ws), "--remote", srv.url).stdout
        assert "generation 1" in out and "T3 (extra)" in out and "in step with it: yes" in out
    assert srv.proc.returncode == 130


def test_out_of_step_and_foreign_packages_are_refused(board, tmp_path, images):
    ws = tmp_path / "ws"
    with Serve(str(board), "--backend", "reference") as srv:
        acc = remote_acc(ws, srv.url)
        _, manifest, k = stage_update(ws)
        acc.apply_update(ws, manifest, k, lambda s: None)
        stale = tmp_path / "stale"
        make_package(stale, (64, 16, 12, 10), [(4, 8), (2, 4), (5, 2)], n_tasks=2, seed=1)
        shutil.copy(board / "server-token", stale)
        line = one_line(run_cli("infer", str(stale), "--remote", srv.url, "--images", str(images), check_rc=2),
                        "holds another state")
        assert "generation 1, tasks synthetic-1, synthetic-2, extra" in line and "copy this one to the board again" in line
        assert "in step with it: NO" in run_cli("status", str(stale), "--remote", srv.url).stdout
        # the server refuses by itself too (a client that skipped the check): 412, nothing changed
        from metabnn.runtime.package import open_package
        from metabnn.runtime.remote import Client, RemoteAccelerator

        acc = RemoteAccelerator(Client(srv.url, (stale / "server-token").read_text().strip()), open_package(stale),
                                {"device": {"backend": {"backend": "reference"}}})
        _, man2, k2 = stage_update(stale)
        with pytest.raises(MetabnnError, match=r"refused the update \(412\): the workstation's package \(generation 0"):
            acc.apply_update(stale, man2, k2, lambda s: None)
        assert not (stale / "update.json").exists() and json.loads((stale / "manifest.json").read_text())[
            "generation"] == 0  # refused there: dropped here
        foreign = tmp_path / "foreign"
        make_package(foreign, (64, 16, 12, 10), [(2, 8), (2, 4), (5, 2)], n_tasks=2, seed=1)
        shutil.copy(board / "server-token", foreign)
        one_line(run_cli("status", str(foreign), "--remote", srv.url, check_rc=2),
                 "serves a different register map than", "give --remote the board that runs this build's bitstream")


def test_refusals_one_line(board, tmp_path, images):
    """Wrong or missing token, malformed JSON, oversized body, unknown call, bad URL: one line each."""
    ws = tmp_path / "ws"
    (tmp_path / "wrong").write_text("x" * 43 + "\n")
    with Serve(str(board), "--backend", "reference", "--max-request-mb", "0.01") as srv:
        line = one_line(run_cli("status", str(ws), "--remote", srv.url, "--token-file", str(tmp_path / "wrong"),
                                check_rc=2), "refused the status request (401): no token or a wrong one")
        print(line)
        assert raw(srv.url, "GET", "/v1/status")[0] == 401
        assert raw(srv.url, "GET", "/v1/status", headers={"Authorization": "Bearer "})[0] == 401
        code, body = raw(srv.url, "POST", "/v1/infer", b"{not json", headers=token(board))
        assert code == 400 and body["error"].startswith("the request body is not JSON")
        code, body = raw(srv.url, "POST", "/v1/infer", b"[1, 2]", headers=token(board))
        assert code == 400 and "not a JSON object" in body["error"]
        # a body over the limit is refused from its Content-Length, and from its bytes when it has none
        code, body = raw(srv.url, "POST", "/v1/update", b"{" + b" " * 20000 + b"}", headers=token(board))
        assert code == 413 and "the request body has 20,002 bytes, this server takes at most 10,485" in body["error"]
        u = urllib.parse.urlsplit(srv.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        conn.request("POST", "/v1/infer", body=iter([b"{", b" " * 12000, b"}"]), headers=token(board),
                     encode_chunked=True)
        r = conn.getresponse()
        assert r.status == 413 and "this server takes at most" in json.loads(r.read())["error"]
        conn.close()
        code, body = raw(srv.url, "GET", "/v1/nope", headers=token(board))
        assert code == 404 and "the API is GET /v1/status" in body["error"]
        code, body = raw(srv.url, "POST", "/v1/infer", json.dumps({"identity": {}, "state": {}}).encode(),
                         headers=token(board))
        assert code == 412 and "of a different build" not in body["error"]
        # the server answers every one of them, one line each in its log, and keeps serving
        assert "in step with it: yes" in run_cli("status", str(ws), "--remote", srv.url).stdout
    assert srv.proc.returncode == 130
    assert not any("Traceback" in s for s in srv.lines)
    (ws / "server-token").unlink()
    one_line(run_cli("status", str(ws), "--remote", "http://127.0.0.1:9", check_rc=2),
             f"no token: '{ws}/server-token' does not exist", "--token-file F")
    for url, needle in (("https://x:1", "speaks plain HTTP"), ("ftp://x", "give the address"),
                        ("http://x:99999", "give the address")):
        one_line(run_cli("status", str(ws), "--remote", url, check_rc=2), needle)
    one_line(run_cli("infer", str(ws), "--remote", "http://127.0.0.1:9", "--token-file", str(tmp_path / "wrong"),
                     "--images", str(images), check_rc=2), "cannot reach http://127.0.0.1:9 (connection refused)")
    one_line(run_cli("infer", str(ws), "--remote", "http://127.0.0.1:9", "--backend", "sim", check_rc=2),
             "--backend is the board's choice with --remote")
    one_line(run_cli("infer", str(ws), "--token-file", "x", "--images", str(images), check_rc=2),
             "--token-file is for --remote URL")


def test_oversized_update_is_refused_and_dropped_on_both_sides(board, tmp_path):
    ws = tmp_path / "ws"
    before = device_files(board)
    with Serve(str(board), "--backend", "reference", "--max-request-mb", "0.001") as srv:
        acc = remote_acc(ws, srv.url)
        _, manifest, k = stage_update(ws)
        with pytest.raises(MetabnnError, match=r"refused the update \(413\): the request body has [\d,]+ bytes, this "
                                               r"server takes at most 1,048 \(metabnn serve --max-request-mb\)"):
            acc.apply_update(ws, manifest, k, lambda s: None)
    assert device_files(board) == before == device_files(ws) and not (ws / "update.json").exists()
    assert json.loads((ws / "manifest.json").read_text())["generation"] == 0


def test_second_concurrent_update_is_refused(board, tmp_path):
    ws, other = tmp_path / "ws", tmp_path / "other"
    shutil.copytree(ws, other)
    with Serve(str(board), "--backend", "reference", env={"METABNN_TEST_SERVE_DELAY": "6"}) as srv:
        acc = remote_acc(ws, srv.url)  # opened before the update is sealed, as learn opens its device
        _, manifest, k = stage_update(ws)
        result = {}
        t = threading.Thread(target=lambda: result.update(w=acc.apply_update(ws, manifest, k, lambda s: None)))
        t.start()
        for _ in range(300):  # until the board is applying it (bounded: 30 s)
            busy = raw(srv.url, "GET", "/v1/status", headers=token(board))[1]["busy"]
            if busy and "the update of T3 (extra)" in busy:
                break
            time.sleep(0.1)
        acc2 = remote_acc(other, srv.url)
        _, man2, k2 = stage_update(other)
        with pytest.raises(MetabnnError) as e:
            acc2.apply_update(other, man2, k2, lambda s: None)
        assert "refused the update (409): the board is busy with the update of T3 (extra) from 127.0.0.1" in str(e.value)
        assert "one update at a time: the board then holds that update" in str(e.value) and "\n" not in str(e.value)
        print(e.value)
        srv.proc.send_signal(signal.SIGINT)  # Ctrl-C while the first is applied: it is answered first
        t.join(timeout=60)
        assert "w" in result  # the first one went through
        assert srv.proc.wait(timeout=60) == 130
        assert "stopping: answering the 1 request(s) in progress first (Ctrl-C again stops now)" in srv.lines
        assert not (other / "update.json").exists() and json.loads((other / "manifest.json").read_text())[
            "generation"] == 0  # the refused one was dropped on its workstation
        assert device_files(board) == device_files(ws)


def test_board_lost_during_an_update(board, tmp_path):
    """The answer never comes: the workstation asks the board which state it holds and says so."""
    ws = tmp_path / "ws"
    with Serve(str(board), "--backend", "reference", env={"METABNN_TEST_SERVE_DELAY": "5"}) as srv:
        acc = remote_acc(ws, srv.url)
        _, manifest, k = stage_update(ws)
        threading.Timer(1.5, srv.proc.kill).start()  # the board dies before it seals the update
        with pytest.raises(MetabnnError) as e:
            acc.apply_update(ws, manifest, k, lambda s: None)
    line = str(e.value)
    assert line.startswith(f"cannot reach {srv.url} (") and "for the update" in line and "\n" not in line
    assert "this package holds T3 (extra) (generation 1), the board may not" in line
    assert json.loads((ws / "manifest.json").read_text())["generation"] == 1  # kept: the hidden weights learned it
    with Serve(str(board), "--backend", "reference") as srv:
        out = run_cli("status", str(ws), "--remote", srv.url).stdout
        assert "in step with it: NO" in out and "(generation 0, tasks synthetic-1, synthetic-2)" in out


def test_serve_start_refusals(board, tmp_path):
    one_line(run_cli("serve", str(board), "--new-token", check_rc=2), "already exists; delete it first")
    with Serve(str(board), "--backend", "reference") as srv:
        port = srv.url.rsplit(":", 1)[1]
        one_line(run_cli("serve", str(tmp_path / "ws"), "--backend", "reference", "--port", port, check_rc=2),
                 f"cannot listen on 127.0.0.1:{port}", "give another --port")
        one_line(run_cli("serve", str(board), "--backend", "reference", "--port", "0", check_rc=2),
                 f"'{board}' is in use by metabnn serve (pid {srv.proc.pid})")
        one_line(run_cli("status", str(board), check_rc=2), "metabnn serve")
    (board / "server-token").unlink()
    one_line(run_cli("serve", str(board), "--backend", "reference", check_rc=2),
             f"no token: '{board}/server-token' does not exist", f"metabnn serve {board} --new-token")
    run_cli("serve", str(board), "--new-token")
    assert (board / "server-token").stat().st_mode & 0o777 == 0o600
    assert "server-token" not in json.loads((board / "manifest.json").read_text())["files"]
    for args, needle in ((["--port", "70000"], "--port 70000"), (["--host", "no.such.host.invalid"], "--host"),
                         (["--max-request-mb", "0"], "--max-request-mb 0"), (["--bitfile", "x"], "--bitfile is for")):
        one_line(run_cli("serve", str(board), "--backend", "reference", *args, check_rc=2), needle)


# ---- a real task learned through serve (the tiny build) -----------------------------------

def _learn_log(deploy: Path) -> dict:
    return json.loads((deploy / "learn.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["reference", "sim"])
def test_learn_remote_equals_local(tiny_build, tmp_path, backend):
    """Board: a copy of the build serving with BACKEND; workstation: a copy of the package alone
    (it keeps the hidden weights); local: a third copy learning with BACKEND directly."""
    shutil.copytree(tiny_build, tmp_path / "board")
    shutil.copytree(tiny_build / "deploy", tmp_path / "ws")
    shutil.copytree(tiny_build, tmp_path / "local")
    board, ws, local = tmp_path / "board" / "deploy", tmp_path / "ws", tmp_path / "local" / "deploy"
    assert (ws / "server-token").stat().st_mode & 0o777 == 0o600
    run_cli("learn", str(local), "--backend", backend, "--epochs", "1", "--no-progress")
    with Serve(str(board), "--backend", backend) as srv:
        out = run_cli("learn", str(ws), "--remote", srv.url, "--epochs", "1", "--no-progress").stdout
        assert f"learned T3 (pmnist-3) on the {backend} accelerator" in out and f"sent to {srv.url}: " in out
        print(out)
        rlog, llog = _learn_log(ws), _learn_log(local)
        assert rlog["acc"] == llog["acc"] and rlog["torch_acc"] == llog["torch_acc"]
        r, lo = rlog["updates"][-1], llog["updates"][-1]
        assert r["words_written"] == lo["words_written"] and r["bits_flipped"] == lo["bits_flipped"]
        assert r["remote"] == srv.url and 0 < r["bytes_sent"] < 200_000
        assert device_files(board) == device_files(ws) == device_files(local)
        assert not (board / "host" / "checkpoint.pt").exists() and (ws / "host" / "checkpoint.pt").is_file()
        # infer --remote with the task's own test set (built on the workstation), as a local infer
        args = ("--task", "3", "--dataset", "task", "--limit", "2000")
        out = run_cli("infer", str(ws), "--remote", srv.url, *args).stdout.splitlines()
        lout = run_cli("infer", str(local), "--backend", backend, *args).stdout.splitlines()
        assert out[0].startswith(f"T3 (pmnist-3) on {backend}: 2000 images") and out[1:] == lout[1:]
    assert srv.proc.returncode == 130
    assert "generation 1" in run_cli("status", str(ws)).stdout
