"""``metabnn serve DEPLOY_DIR --backend B``: the board's accelerator for a workstation that learns.

The board runs no training and imports no torch: tornado (which PYNQ images ship with
Jupyter) serves three calls, each authenticated with the package's token
(``Authorization: Bearer``, compared in constant time; no token, no access):

  GET  /v1/status   package identity and state, the device's status, the server's limits
  POST /v1/infer    images of one task -> raw outputs and logits (the host affine is applied here)
  POST /v1/update   one learned task: changed words + the new task's small files -> the same
                    journaled update a local ``metabnn learn`` makes (stage, seal, write only the
                    changed words, read back, flush, commit) -> words written per layer

Safety: it listens on 127.0.0.1 unless ``--host`` says otherwise; it holds the package lock
exclusively while it runs (it alone drives the device, a local command on the same package
is refused); one device request at a time (a second update is refused at once with 409, an
inference waits up to a minute for the device); a request body over ``--max-request-mb``
gets 413 without being kept in memory; a request from a package that is not this one
(another build, register map or bitstream: 412; another state of it: 412) changes nothing.
Every answer is JSON; a refusal is ``{"error": "<problem>; <fix>"}``, one line.

After a remote update the board's package has no hidden weights (they live, current, on the
workstation): its manifest lists no host/ files and the stale copies are removed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from metabnn.errors import MetabnnError
from metabnn.runtime import protocol as P

INFER_WAIT_S = 60.0
MAX_BATCH = 100_000


class Refusal(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _needs_tornado() -> Any:
    try:
        import tornado.web
    except ImportError:
        raise MetabnnError("'metabnn serve' needs tornado, which this Python lacks; install it (pip install "
                           "tornado; PYNQ images ship it with Jupyter)") from None
    return tornado


class Board:
    """The package, its lock and its accelerator, and what the requests do with them."""

    def __init__(self, root: Path, backend: str, options: dict[str, Any], token: str, max_request: int,
                 log: Callable[[str], None], progress: Callable[[str], None] | None = None):
        from metabnn.runtime.accelerator import Accelerator
        from metabnn.runtime.lock import PackageLock
        from metabnn.runtime.package import open_package

        self.root, self.token, self.max_request, self.log = root, token.encode(), int(max_request), log
        self.lock = PackageLock(root, "serve").exclusive()
        try:
            self.pkg = open_package(root, lock=self.lock, command="serve")
            if self.pkg.repaired:
                log(f"repaired: {self.pkg.repaired}")
            self.acc = Accelerator.open(self.pkg, backend, lock=self.lock, log=progress or log, **options)
        except BaseException:
            self.lock.release()
            raise
        self.device = threading.Lock()  # one device request at a time
        self.current: dict[str, Any] | None = None
        self.in_flight = 0  # requests being answered (the IO loop's thread only)

    def close(self) -> None:
        try:
            self.acc.close()
        finally:
            self.lock.release()

    # ---- checks ---------------------------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        import hmac

        given = (header or "").encode()
        # compare whole headers, so neither a prefix nor a length check leaks timing
        return hmac.compare_digest(given, b"Bearer " + self.token)

    def busy_line(self) -> str:
        c = self.current or {}
        return (f"the board is busy with {c.get('what', 'another request')} from {c.get('peer', '?')} (started "
                f"{time.time() - c.get('t0', time.time()):.1f} s ago)")

    def check_package(self, body: dict[str, Any]) -> None:
        why = P.identity_mismatch(P.identity(self.pkg.manifest), body.get("identity") or {})
        if why:
            raise Refusal(412, f"the workstation's package is of {why} than this board's '{self.root}' (which "
                               "matches the loaded bitstream); learn from the package of the build this board runs, "
                               "or serve that build's package here")
        mine, theirs = P.state(self.pkg.manifest), body.get("state")
        if theirs != mine:
            desc = P.describe_state(theirs) if isinstance(theirs, dict) and "generation" in theirs else "unknown"
            raise Refusal(412, f"the workstation's package ({desc}) is not in step with this board's "
                               f"'{self.root}' ({P.describe_state(mine)}); learn from the package that made the "
                               "board's state, or copy the workstation's package to the board again and restart "
                               "'metabnn serve'")

    # ---- calls ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"server": "metabnn serve", "deploy_dir": str(self.root), "identity": P.identity(self.pkg.manifest),
                "state": P.state(self.pkg.manifest), "tasks": self.pkg.tasks, "device": self.acc.status(),
                "max_request_bytes": self.max_request, "busy": self.busy_line() if self.current else None}

    def infer(self, body: dict[str, Any]) -> dict[str, Any]:
        self.check_package(body)
        task = body.get("task")
        if not isinstance(task, int) or isinstance(task, bool) or task not in self.pkg.live_tasks:
            raise Refusal(400, f"'task' must be a live task's index (0-based), one of {self.pkg.live_tasks}")
        bs = body.get("batch_size", 1000)
        if not isinstance(bs, int) or isinstance(bs, bool) or not 1 <= bs <= MAX_BATCH:
            raise Refusal(400, f"'batch_size' must be an integer from 1 to {MAX_BATCH}")
        d = int(self.pkg.manifest["network"]["widths"][0])
        try:
            x = P.decode_array(body.get("images"), "'images'", max_items=self.max_request)
        except ValueError as e:
            raise Refusal(400, f"{e}; send uint8 images [N, {d}]") from None
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != d:
            raise Refusal(400, f"'images' must be uint8 [N, {d}], got {x.dtype} {list(x.shape)}")
        if not self.device.acquire(timeout=INFER_WAIT_S):
            raise Refusal(409, f"{self.busy_line()}; try again when it has finished")
        try:
            self.current = {"what": "an inference", "peer": body.get("_peer"), "t0": time.time()}
            if self.acc.task != task:
                self.acc.select_task(task)
            res = self.acc.infer(x, batch_size=bs)
        finally:
            self.current = None
            self.device.release()
        return {"raw": P.encode_array(res.raw.astype("<i8")), "logits": P.encode_array(res.logits.astype("<f4")),
                "stats": res.stats}

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        """One learned task, applied as a local learn applies it (the caller holds ``self.device``)."""
        from metabnn.runtime import journal
        from metabnn.runtime.learn import (
            next_manifest,
            stage_files,
            staged_image,
            write_device,
        )
        from metabnn.runtime.package import HOST, open_package

        t0 = time.perf_counter()
        self.check_package(body)
        upd = body.get("update")
        if not isinstance(upd, dict):
            raise Refusal(400, "the body has no 'update' object; send what 'metabnn learn --remote' sends")
        entries, files, task = self._validate(upd)
        label = f"T{task + 1} ({entries[task]['name']})"
        self.current = {**(self.current or {}), "what": f"the update of {label}"}
        _test_delay()
        data, words = self._rebuild(files)
        # A fresh accelerator holds the first live task: a local learn diffs against that, so does this.
        self.acc.select_task(self.pkg.live_tasks[0])
        staging = journal.begin(self.root)
        try:
            stage_files(self.root, staging, data)
            manifest = next_manifest(self.pkg, staging, entries)
            manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith(f"{HOST}/")}
            manifest["host"] = {"hidden_weights": "on the workstation that learns through 'metabnn serve' "
                                                  "(metabnn learn --remote)"}
            if P.state(manifest) != upd.get("state_after"):
                raise Refusal(412, "the update rebuilt here differs from the workstation's (another metabnn "
                                   "version?); run the same metabnn on both sides")
            journal.seal(self.root, manifest, {"what": f"learn task {entries[task]['name']} (remote)", "task": task})
        except BaseException:
            journal.abort(self.root)
            raise
        try:
            written, device_s = write_device(self.root, self.acc, staged_image(self.root, manifest, task),
                                             lambda s: None)
        except MetabnnError as e:
            raise Refusal(500, f"{e} (the update was dropped and the old words put back)") from None
        self.pkg = open_package(self.root, repair=False, lock=self.lock, command="serve")
        self.acc.pkg = self.pkg
        self.acc.task, self.acc._affine = task, self.pkg.host_affine(task)
        for p in sorted((self.root / HOST).rglob("*")) if (self.root / HOST).is_dir() else []:
            if p.is_file() and p.relative_to(self.root).as_posix() not in self.pkg.manifest["files"]:
                p.unlink()  # stale hidden weights: the workstation holds the current ones
        return {"generation": self.pkg.manifest["generation"], "task": task, "name": entries[task]["name"],
                "words_written": written, "device_write_s": device_s, "words_received": words,
                "update_s": time.perf_counter() - t0}

    def _validate(self, upd: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
        old = self.pkg.tasks
        gen = int(self.pkg.manifest["generation"])
        if upd.get("generation") != gen + 1:
            raise Refusal(412, f"the update is for generation {upd.get('generation')}, this board is at {gen}; "
                               "copy the workstation's package to the board again and restart 'metabnn serve'")
        entries, files, task = upd.get("tasks"), upd.get("files"), upd.get("task")
        n = len(old) + 1
        if not (isinstance(entries, list) and len(entries) == n and isinstance(files, dict) and task == n - 1):
            raise Refusal(400, f"an update adds exactly one task: 'tasks' must list {n} tasks, 'task' be {n - 1} "
                               "and 'files' be an object")
        mem_files = {l["memory"]["file"] for l in self.pkg.layers}
        names = set()
        for k, e in enumerate(entries):
            ok = (isinstance(e, dict) and e.get("task") == k and isinstance(e.get("name"), str) and e["name"]
                  and e.get("dir") == f"tasks/{k}" and e.get("live") is True
                  and e.get("host_affine") == f"tasks/{k}/host_affine.npz" and isinstance(e.get("files"), list)
                  and all(isinstance(f, str) and f.startswith("runtime_weights/") and f[16:] in mem_files
                          for f in e["files"]))
            if not ok or e["name"] in names or (k < len(old) and (e["name"], e["dir"]) != (old[k]["name"],
                                                                                          old[k]["dir"])):
                raise Refusal(400, f"task entry {k} of the update is not a task of this package's form")
            names.add(e["name"])
        for rel in files:
            if not isinstance(rel, str) or not _allowed(rel, mem_files, n) or not isinstance(files[rel], dict):
                raise Refusal(400, f"the update names a file this server does not write ({str(rel)[:80]!r}); "
                                   "only memory images, host_affine.npz and task.json of tasks travel")
        return entries, files, n - 1

    def _rebuild(self, files: dict[str, Any]) -> tuple[dict[str, bytes], int]:
        """{relative path: bytes} of the update's files, each checked against its sha256."""
        from metabnn.runtime.package import read_dat
        from metabnn.runtime.words import dat_text

        size = {l["memory"]["file"]: int(l["memory"]["words"]) for l in self.pkg.layers}
        out, words = {}, 0
        for rel, f in files.items():
            try:
                if rel.endswith(".dat"):
                    name = rel.rsplit("/", 1)[1]
                    base_rel = f.get("base")
                    if base_rel is None:
                        base = np.zeros(size[name], np.uint32)
                    elif (isinstance(base_rel, str) and base_rel.rsplit("/", 1)[-1] == name
                          and _allowed(base_rel, set(size), len(self.pkg.tasks)) and (self.root / base_rel).is_file()):
                        base = read_dat(self.root / base_rel)
                    else:
                        raise Refusal(412, f"the update builds {rel} on {str(base_rel)[:80]!r}, which this board "
                                           "does not hold; copy the workstation's package to the board again")
                    if base.size != size[name]:
                        raise Refusal(412, f"this board's {base_rel} does not hold {size[name]} words; copy the "
                                           "workstation's package to the board again")
                    new, n = P.apply_runs(base, f.get("runs"), rel)
                    if n > size[name]:
                        raise ValueError(f"{rel}: {n} words sent for a memory of {size[name]}")
                    words += n
                    data = dat_text(new).encode()
                else:
                    data = base64.b64decode(f.get("data") or "", validate=True)
            except (ValueError, TypeError) as e:
                raise Refusal(400, f"{str(e)[:200]}; send what 'metabnn learn --remote' sends") from None
            if hashlib.sha256(data).hexdigest() != f.get("sha256"):
                raise Refusal(412, f"{rel} rebuilt on this board differs from the workstation's (sha256); the two "
                                   "packages are not in step: copy the workstation's package to the board again")
            out[rel] = data
        return out, words


_FILE = re.compile(r"^(driver/runtime_weights/([^/]+\.dat)|tasks/(\d+)/(runtime_weights/([^/]+\.dat)|host_affine\.npz"
                   r"|task\.json))$")


def _allowed(rel: str, mem_files: set[str], n_tasks: int) -> bool:
    m = _FILE.match(rel)
    if not m:
        return False
    if m.group(2) is not None:
        return m.group(2) in mem_files
    k = m.group(3)
    if str(int(k)) != k or int(k) >= n_tasks:
        return False
    return m.group(5) is None or m.group(5) in mem_files


# ---- HTTP ---------------------------------------------------------------------------------

def make_app(board: Board, executor: ThreadPoolExecutor, log: Callable[[str], None]) -> Any:
    _needs_tornado()
    import tornado.ioloop
    from tornado.web import Application, RequestHandler, stream_request_body

    @stream_request_body
    class Handler(RequestHandler):
        def prepare(self) -> None:
            self._chunks: list[bytes] = []
            self._size, self._refusal, self._what = 0, None, ""
            if not board.authorized(self.request.headers.get("Authorization")):
                self._refusal = Refusal(401, "no token or a wrong one; send 'Authorization: Bearer TOKEN' with "
                                             "the package's server-token (metabnn ... --remote uses "
                                             "DEPLOY_DIR/server-token, or --token-file F)")
                return
            length = self.request.headers.get("Content-Length", "0")
            if length.isdigit() and int(length) > board.max_request:
                self._too_big(int(length))

        def _too_big(self, n: int) -> None:
            fix = ("an update is one piece: start serve with a larger --max-request-mb"
                   if self.request.path.endswith("/update") else
                   "send fewer images per request, or start serve with a larger --max-request-mb")
            self._refusal = Refusal(413, f"the request body has {n:,} bytes, this server takes at most "
                                         f"{board.max_request:,} (metabnn serve --max-request-mb); {fix}")
            self._chunks = []

        def data_received(self, chunk: bytes) -> None:
            self._size += len(chunk)
            if self._refusal is None and self._size > board.max_request:
                self._too_big(self._size)
            if self._refusal is None:
                self._chunks.append(chunk)

        def json_body(self) -> dict[str, Any]:
            try:
                body = json.loads(b"".join(self._chunks))
            except (ValueError, UnicodeDecodeError) as e:
                raise Refusal(400, f"the request body is not JSON ({type(e).__name__}); send what 'metabnn ... "
                                   "--remote' sends") from None
            if not isinstance(body, dict):
                raise Refusal(400, "the request body is not a JSON object; send what 'metabnn ... --remote' sends")
            body["_peer"] = self.request.remote_ip
            return body

        def answer(self, code: int, obj: dict[str, Any]) -> None:
            self.set_status(code)
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps(obj, separators=(",", ":")))

        async def run(self, fn: Callable[[], dict[str, Any]]) -> None:
            board.in_flight += 1
            try:
                if self._refusal is not None:
                    raise self._refusal
                out = await tornado.ioloop.IOLoop.current().run_in_executor(executor, fn)
            except Refusal as r:
                self._what = r.message
                self.answer(r.code, {"error": r.message})
                return
            except MetabnnError as e:
                self._what = str(e)
                self.answer(400, {"error": str(e)})
                return
            except Exception as e:  # noqa: BLE001 - a bug: one line to the client, the server goes on
                self._what = f"internal error: {type(e).__name__}: {e}"
                self.answer(500, {"error": f"internal error on the board: {type(e).__name__}: "
                                           f"{str(e).splitlines()[0] if str(e) else ''} (a bug in metabnn: "
                                           "please report it)"})
                return
            finally:
                board.in_flight -= 1
            self.answer(200, out)

        def write_error(self, status_code: int, **kwargs: Any) -> None:
            r = getattr(self, "_refusal", None)
            if r is not None and r.code == 401:
                self.answer(401, {"error": r.message})
                return
            self.answer(status_code, {"error": f"{self._reason}; the API is GET {P.API}/status, POST "
                                               f"{P.API}/infer and POST {P.API}/update"})

    class Status(Handler):
        async def get(self) -> None:
            await self.run(board.status)

    class Infer(Handler):
        async def post(self) -> None:
            await self.run(lambda: board.infer(self.json_body()))

    class Update(Handler):
        async def post(self) -> None:
            if self._refusal is None and not board.device.acquire(blocking=False):
                self._refusal = Refusal(409, f"{board.busy_line()}; one update at a time: the board then holds "
                                             "that update, so learn next from the package that sent it")
                await self.run(dict)
                return
            if self._refusal is not None:
                await self.run(dict)
                return
            board.current = {"what": "an update", "peer": self.request.remote_ip, "t0": time.time()}

            def work() -> dict[str, Any]:
                try:
                    out = board.update(self.json_body())
                    self._what = f"learned {out['name']}: {sum(out['words_written'].values())} words written"
                    return out
                finally:
                    board.current = None
                    board.device.release()
            await self.run(work)

    class NotFound(Handler):
        async def get(self) -> None:
            await self.run(self._missing)

        async def post(self) -> None:
            await self.run(self._missing)

        def _missing(self) -> dict[str, Any]:
            raise Refusal(404, f"no such call {self.request.path[:80]!r}; the API is GET {P.API}/status, POST "
                               f"{P.API}/infer and POST {P.API}/update")

    def log_request(handler: Any) -> None:
        r = handler.request
        what = f": {handler._what}" if getattr(handler, "_what", "") else ""
        log(f"{r.remote_ip} {r.method} {r.path} {handler.get_status()} ({1e3 * r.request_time():.0f} ms){what}")

    return Application([(rf"{P.API}/status", Status), (rf"{P.API}/infer", Infer), (rf"{P.API}/update", Update)],
                       default_handler_class=NotFound, log_function=log_request, compress_response=False)


def _run_until_signal(http: Any, board: Board, say: Callable[[str], None], phase: Callable[[str], None],
                      root: Path) -> None:
    """Serve until SIGINT/SIGTERM; then stop listening, answer the requests in progress, and
    raise KeyboardInterrupt. A second signal stops at once (a sealed update is finished by the
    next open of the package)."""
    import asyncio
    import signal

    import tornado.ioloop

    loop = tornado.ioloop.IOLoop.current()
    aloop = loop.asyncio_loop  # type: ignore[attr-defined]
    signals: list[int] = []

    async def drain() -> None:
        http.stop()
        if board.in_flight:
            say(f"stopping: answering the {board.in_flight} request(s) in progress first (Ctrl-C again stops now)")
        while board.in_flight:
            await asyncio.sleep(0.05)
        await http.close_all_connections()
        loop.stop()

    def on_signal() -> None:
        if signals:
            phase(f"serve stopped (second Ctrl-C) without answering the request in progress; an update it had "
                  f"sealed is finished by the next open of '{root}' (metabnn status or serve)")
            raise KeyboardInterrupt
        signals.append(1)
        loop.add_callback(drain)

    for sig in (signal.SIGINT, signal.SIGTERM):
        aloop.add_signal_handler(sig, on_signal)
    try:
        loop.start()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            aloop.remove_signal_handler(sig)
    raise KeyboardInterrupt


def _test_delay() -> None:
    """Tests of concurrent updates: METABNN_TEST_SERVE_DELAY=seconds holds each update that long."""
    import os

    delay = os.environ.get("METABNN_TEST_SERVE_DELAY")
    if delay:
        time.sleep(float(delay))


def _quiet_tornado() -> None:
    """tornado's own log lines (a malformed request, a dropped connection) as single lines."""
    import logging

    class OneLine(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            print(f"metabnn serve: {record.getMessage().splitlines()[0]}", file=sys.stderr, flush=True)

    for name in ("tornado.access", "tornado.application", "tornado.general"):
        lg = logging.getLogger(name)
        lg.handlers, lg.propagate = [OneLine()], False
        lg.setLevel(logging.WARNING)


def serve(deploy_dir: str | Path, backend: str, host: str = "127.0.0.1", port: int = P.DEFAULT_PORT,
          token_file: str | None = None, max_request: int = P.DEFAULT_MAX_REQUEST,
          log: Callable[[str], None] | None = None, progress: Callable[[str], None] | None = None,
          on_phase: Callable[[str], None] | None = None, **options: Any) -> None:
    """Serve until Ctrl-C (or SIGTERM): then finish the request in progress, release the device
    and the package, and raise ``KeyboardInterrupt`` for the CLI's one line."""
    import socket

    from metabnn.runtime.package import resolve_deploy_dir

    _needs_tornado()
    import tornado.httpserver
    import tornado.ioloop
    import tornado.netutil

    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    phase = on_phase or (lambda s: None)
    root = resolve_deploy_dir(deploy_dir)
    if not root.is_dir():
        raise MetabnnError(f"'{root}' is not a directory; give the DEPLOY_DIR (BUILD_DIR/deploy) of a metabnn build")
    tpath = Path(token_file) if token_file else root / P.TOKEN_FILE
    token = P.read_token(tpath, f"create one with 'metabnn serve {root} --new-token' (then copy "
                                f"{root}/{P.TOKEN_FILE} to the workstation's package too), or give --token-file F")
    if not P.token_is_private(tpath):
        say(f"warning: the token file '{tpath}' is readable by other users; chmod 600 it")
    try:
        sockets = tornado.netutil.bind_sockets(port, address=host)
    except socket.gaierror:
        raise MetabnnError(f"--host {host}: not an address of this machine; give one of its addresses, 127.0.0.1 "
                           "(the default) or 0.0.0.0 (every interface)") from None
    except OSError as e:
        raise MetabnnError(f"cannot listen on {host}:{port} ({e.strerror or e}); give another --port (0 picks a "
                           "free one)") from None
    board = executor = http = None
    try:
        board = Board(root, backend, options, token, max_request, say, progress)
        executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="metabnn-serve")
        _quiet_tornado()
        http = tornado.httpserver.HTTPServer(
            make_app(board, executor, say), max_body_size=4 * max_request + (1 << 20), max_buffer_size=4 << 20,
            idle_connection_timeout=300, body_timeout=300)
        http.add_sockets(sockets)
        bound = sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        pkg = board.pkg
        say(f"metabnn serve: '{root}' (generation {pkg.manifest['generation']}, tasks "
            f"{', '.join(pkg.label(t) for t in pkg.live_tasks)}) on the {board.acc.backend.name} accelerator at "
            f"http://{shown}:{bound[1]} (token: {tpath}); Ctrl-C stops it")
        if host not in ("127.0.0.1", "localhost", "::1"):
            say(f"warning: listening on {host}: anyone who reaches this port with the token can change the "
                "device, and plain HTTP carries the token in clear: prefer the default 127.0.0.1 and an SSH tunnel")
        phase(f"serve stopped (Ctrl-C); '{root}' and the device hold the last update that was answered")
        _run_until_signal(http, board, say, phase, root)
    finally:
        if http is not None:
            http.stop()
        for s in sockets:
            s.close()
        if executor is not None:
            executor.shutdown(wait=True)
        if board is not None:
            board.close()
