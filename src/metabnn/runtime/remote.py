"""The workstation's side of ``metabnn serve``: ``learn | infer | status --remote URL``.

Standard library (``urllib``) and numpy only: the workstation needs nothing new.
``RemoteAccelerator`` has the calls ``metabnn learn`` and ``infer`` use on a local
``Accelerator`` (``select_task``, ``infer``, ``status``, ``close``), plus ``apply_update``:
the workstation trains, stages and seals the update in its own package as a local learn
does, then sends only what the board lacks (changed words as runs against files the board
holds, plus the new task's small files), and commits its own package once the board has
committed. Every request carries the package's identity and state, and the board refuses
a request from a package that does not match its own (see ``protocol``).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from metabnn.errors import MetabnnError
from metabnn.runtime import protocol as P

TIMEOUT_S = 900.0  # a sim-backend update or a large batch on the simulated RTL takes minutes


def parse_url(url: str) -> str:
    """``http://HOST:PORT`` (port defaults to serve's); anything else is one line."""
    u = urllib.parse.urlsplit(url.strip())
    if u.scheme == "https":
        raise MetabnnError(f"--remote {url}: metabnn serve speaks plain HTTP; give http://HOST:PORT (across a "
                           "network, tunnel it: ssh -L 8737:localhost:8737 BOARD, then --remote "
                           "http://localhost:8737)")
    try:
        port = u.port
    except ValueError:
        port = -1
    if u.scheme != "http" or not u.hostname or port == -1 or u.path not in ("", "/") or u.query:
        raise MetabnnError(f"--remote {url}: give the address 'metabnn serve' printed, http://HOST:PORT "
                           f"(e.g. http://localhost:{P.DEFAULT_PORT})")
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return f"http://{host}:{port or P.DEFAULT_PORT}"


def token_for(deploy: Path, token_file: str | None) -> str:
    if token_file:
        return P.read_token(Path(token_file), "give --token-file the board's DEPLOY_DIR/server-token (a copy of it)")
    return P.read_token(deploy / P.TOKEN_FILE,
                        "copy it from the board's package (the build wrote it beside manifest.json), or give "
                        "--token-file F; a package built before tokens needs one: run 'metabnn serve DEPLOY_DIR "
                        "--new-token' and copy DEPLOY_DIR/server-token to both sides")


class _Unanswered(MetabnnError):
    """The request may or may not have reached the board (connection lost, time-out)."""


class Client:
    def __init__(self, url: str, token: str, timeout: float = TIMEOUT_S):
        self.url, self.token, self.timeout = parse_url(url), token, timeout
        self.bytes_sent = 0

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, what: str = "request",
                data: bytes | None = None) -> dict[str, Any]:
        """The JSON answer; a refusal, a lost connection or a foreign server is one line."""
        if data is None and body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + P.API + path, data=data, headers=headers, method=method)
        self.bytes_sent += len(data or b"")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
                code = r.status
        except urllib.error.HTTPError as e:
            raw, code = e.read(), e.code
            try:
                msg = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                raise MetabnnError(f"{self.url} answered HTTP {code} without a metabnn error; is it 'metabnn serve'? "
                                   "check --remote") from None
            raise MetabnnError(f"{self.url} refused the {what} ({code}): {msg}") from None
        except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as e:
            reason = getattr(e, "reason", None) or e
            if isinstance(reason, (socket.timeout, TimeoutError)):
                why = f"no answer within {self.timeout:.0f} s"
            elif isinstance(reason, ConnectionRefusedError):
                why = "connection refused"
            else:
                why = str(getattr(reason, "strerror", None) or reason or type(e).__name__).splitlines()[0]
            fix = ("start 'metabnn serve DEPLOY_DIR --backend B' on the board (with --host 0.0.0.0 to listen "
                   "beyond its localhost), or check --remote") if "refused" in why else "check the board and the network"
            raise _Unanswered(f"cannot reach {self.url} ({why}) for the {what}; {fix}") from None
        try:
            out = json.loads(raw)
            assert isinstance(out, dict) and code == 200
        except (ValueError, AssertionError):
            raise MetabnnError(f"{self.url} is not a metabnn server (its answer is not metabnn's JSON); check "
                               "--remote") from None
        return out


class _RemoteBackend:
    def __init__(self, info: dict[str, Any]):
        self.name = str(info.get("backend", "?"))
        self._info = info

    def info(self) -> dict[str, Any]:
        return dict(self._info)


class RemoteAccelerator:
    """The board's accelerator behind ``metabnn serve``, for a workstation holding the same package."""

    def __init__(self, client: Client, pkg: Any, server: dict[str, Any]):
        self.client, self.pkg, self.server = client, pkg, server
        self.backend = _RemoteBackend(server["device"]["backend"])
        self.task: int | None = None
        self._affine: Any = None
        self.last_update: dict[str, Any] = {}
        self.max_request = int(server.get("max_request_bytes", P.DEFAULT_MAX_REQUEST))

    @classmethod
    def open(cls, url: str, token: str, pkg: Any, task: int | None = None) -> RemoteAccelerator:
        """Reach the server and check that its package is this one (identity and state)."""
        client = Client(url, token)
        server = client.request("GET", "/status", what="status request")
        acc = cls(client, pkg, server)
        acc.check(server)
        acc.task = pkg.live_tasks[0] if task is None else int(task)
        return acc

    def check(self, server: dict[str, Any], states: bool = True) -> None:
        why = P.identity_mismatch(P.identity(self.pkg.manifest), server.get("identity", {}))
        if why:
            raise MetabnnError(f"{self.client.url} serves {why} than '{self.pkg.root}' ({server.get('deploy_dir')}); "
                               "give --remote the board that runs this build's bitstream, or serve this package there")
        if states:
            mine, theirs = P.state(self.pkg.manifest), server.get("state", {})
            if mine != theirs:
                raise MetabnnError(out_of_step(self.client.url, self.pkg.root, mine, theirs))

    def _body(self, **fields: Any) -> dict[str, Any]:
        return {"identity": P.identity(self.pkg.manifest), "state": P.state(self.pkg.manifest), **fields}

    def select_task(self, task: int) -> None:
        self.pkg.task_entry(task)  # refuses a task that is not live here
        self.task = int(task)

    def infer(self, images: np.ndarray, batch_size: int = 1000) -> Any:
        from metabnn.runtime.accelerator import InferResult, check_images

        x = np.ascontiguousarray(images)
        check_images(self.pkg.manifest, x, batch_size)
        # requests stay well inside the server's limit: images travel as base64 (4/3) in JSON
        d = x.shape[1]
        per = max(1, (self.max_request - 65536) * 3 // 4 // max(1, d))
        raws, logits, device_s, batches, means, p50s, maxes = [], [], 0.0, 0, [], [], []
        t0 = time.perf_counter()
        for i in range(0, max(len(x), 1), per):
            out = self.client.request("POST", "/infer", self._body(task=self.task, batch_size=int(batch_size),
                                                                   images=P.encode_array(x[i:i + per])),
                                      what="inference request")
            try:
                raws.append(P.decode_array(out["raw"], "raw"))
                logits.append(P.decode_array(out["logits"], "logits"))
                s = out["stats"]
                device_s += float(s["seconds"])
                batches += int(s["batches"])
                lat = s["batch_latency_ms"]
                means.append(float(lat["mean"]) * int(s["batches"]))
                p50s.append(float(lat["p50"]))
                maxes.append(float(lat["max"]))
            except (KeyError, TypeError, ValueError) as e:
                raise MetabnnError(f"{self.client.url} answered the inference request with something else than "
                                   f"metabnn's results ({e}); is it the same metabnn version?") from None
        total = time.perf_counter() - t0
        raw = np.concatenate(raws)
        lg = np.concatenate(logits)
        stats = {"images": len(x), "seconds": device_s, "round_trip_s": total,
                 "images_per_s": len(x) / device_s if device_s > 0 else 0.0, "batches": batches,
                 "batch_size": int(batch_size),
                 "batch_latency_ms": {"mean": sum(means) / max(batches, 1), "p50": float(np.median(p50s)),
                                      "max": max(maxes)},
                 "backend": self.backend.name, "task": self.task, "remote": self.client.url,
                 "requests": len(raws), "bytes_sent": self.client.bytes_sent}
        return InferResult(np.argmax(lg, axis=1), raw, lg, stats)

    def status(self) -> dict[str, Any]:
        return self.client.request("GET", "/status", what="status request")

    # ---- the update ---------------------------------------------------------------------
    def apply_update(self, root: Path, manifest: dict[str, Any], task: int, phase: Callable[[str], None]
                     ) -> tuple[dict[str, int], float]:
        """Send the sealed update in ``root``'s staging to the board; commit here once the board has.

        Returns the board's (words written per layer, device write seconds). A refusal drops
        the update here too; a lost answer is settled by asking the board which state it holds.
        """
        from metabnn.runtime import journal

        body = self._body(update=update_payload(root, self.pkg, manifest, task))
        data = json.dumps(body, separators=(",", ":")).encode()
        sent = self.client.bytes_sent
        t0 = time.perf_counter()
        try:
            out = self.client.request("POST", "/update", data=data, what="update")
        except _Unanswered as e:
            self._settle(root, manifest, task, str(e))
            raise AssertionError("unreachable")  # _settle always raises
        except MetabnnError:
            journal.abort(root)  # the board answered: it did not take the update
            raise
        journal.commit(root)
        try:
            written = {str(k): int(v) for k, v in out["words_written"].items()}
            device_s = float(out["device_write_s"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MetabnnError(f"{self.client.url} took the update but answered with something else than metabnn's "
                               "result; is it the same metabnn version?") from None
        self.last_update = {"remote": self.client.url, "bytes_sent": self.client.bytes_sent - sent,
                            "request_s": time.perf_counter() - t0, "server_update_s": out.get("update_s"),
                            "words_sent": int(out.get("words_received", 0)), "files_sent": len(body["update"]["files"])}
        return written, device_s

    def _settle(self, root: Path, manifest: dict[str, Any], task: int, why: str) -> None:
        from metabnn.runtime import journal
        from metabnn.runtime.package import task_label

        label = task_label(manifest["tasks"], task)
        try:
            server = Client(self.client.url, self.client.token, timeout=30).request("GET", "/status")
            theirs = server.get("state")
        except MetabnnError:
            theirs = None
        if theirs == P.state(self.pkg.manifest):
            journal.abort(root)
            raise MetabnnError(f"{why}; the board did not take the update of {label}: nothing changed on either "
                               "side, run learn again")
        journal.commit(root)
        if theirs == P.state(manifest):
            raise MetabnnError(f"{why}; the board took the update of {label} but its answer was lost: both sides "
                               f"hold it (generation {manifest['generation']}), its accuracy is not measured "
                               "(learn.json says so)")
        raise MetabnnError(f"{why}; this package holds {label} (generation {manifest['generation']}), the board "
                           "may not: if 'metabnn status DEPLOY_DIR --remote URL' finds it out of step, copy "
                           "DEPLOY_DIR to the board again and restart 'metabnn serve'")

    def close(self) -> None:
        pass

    def __enter__(self) -> RemoteAccelerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def out_of_step(url: str, root: Path, mine: dict[str, Any], theirs: dict[str, Any]) -> str:
    return (f"the board at {url} holds another state of this package ({P.describe_state(theirs)}) than "
            f"'{root}' ({P.describe_state(mine)}); learn from the package that made the board's state (the "
            "workstation that learned last), or copy this one to the board again and restart 'metabnn serve' there")


def update_payload(root: Path, pkg: Any, manifest: dict[str, Any], task: int) -> dict[str, Any]:
    """The staged update of ``root`` as the board needs it: no host files (hidden weights stay here),
    memory images as runs of changed words against the file the board already holds."""
    import base64

    from metabnn.runtime.package import (
        MANIFEST,
        RUNTIME_DIR,
        STAGING,
        read_dat,
        sha256_file,
    )

    staging = root / STAGING
    files: dict[str, Any] = {}
    for p in sorted(staging.rglob("*")):
        rel = p.relative_to(staging).as_posix()
        if not p.is_file() or p.name.startswith(".") or rel == MANIFEST or not rel.startswith(("driver/", "tasks/")):
            continue
        entry: dict[str, Any] = {"sha256": sha256_file(p)}
        if p.suffix == ".dat":
            base_rel = rel if (root / rel).is_file() else f"{RUNTIME_DIR}/{p.name}"
            base = read_dat(root / base_rel) if (root / base_rel).is_file() else None
            entry.update(base=base_rel if base is not None else None, runs=P.word_runs(base, read_dat(p)))
        else:
            entry["data"] = base64.b64encode(p.read_bytes()).decode()
        files[rel] = entry
    return {"generation": int(manifest["generation"]), "task": int(task), "tasks": manifest["tasks"],
            "files": files, "state_after": P.state(manifest)}
