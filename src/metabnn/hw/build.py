"""``build``: EXPORT dir -> BUILD dir through the FINN steps in ``metabnn.hw.steps``.

BUILD dir layout:
  report.json, report.txt, report.png   folding, cycles, FPS, resources, fit, agreement
  build_config.json, folding_config.json, manifest.json
  build.log                             what FINN (and Vivado) printed, with metabnn's step lines
  intermediate_models/<step>.onnx       the graph after every step (hw_layers.onnx: Python-executable)
  hw_codegen/<layer>/                   HLS C++ / filled RTL / memory init files per layer
  deploy/driver/                        FINN PYNQ driver settings.json + runtime_weights/ (task 0, shared)
  deploy/tasks/<k>/                     per task: threshold .dat files, host_affine.npz, task.json
  deploy/bitfile/                       bitstream + .hwh (only with Vivado)
  vivado/                               FINN's HLS and Vivado projects and their logs (only with Vivado)
Every input is checked before any work. The build runs in a staged dir beside BUILD_DIR
(``metabnn.atomic.StagedDir``) renamed into place at the end: an error or Ctrl-C leaves no
BUILD_DIR, and a FINN step that fails leaves its work dir, logs included, in
``BUILD_DIR.failed/`` for the user to read. With Vivado, the Vivado steps (``metabnn.hw.vivado``)
then run on the finished BUILD_DIR, in BUILD_DIR/vivado/: if they fail or are interrupted, the
build stays complete without a bitstream, report.json says so, and the same command run again
redoes only the Vivado steps (``pending_bitstream``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import metabnn
from metabnn.atomic import StagedDir, atomic_write_bytes, atomic_write_json, ensure_writable
from metabnn.errors import MetabnnError
from metabnn.hw.config import BuildConfig, make_config
from metabnn.hw.export_artifact import ExportArtifact, read_export
from metabnn.hw.finn_env import finn_session

ARTIFACT = "metabnn-build"
LOG = "build.log"
# OS errors that say "this location cannot take the build" (full, read-only): the CLI's one-line
# OSError message fits them, and a kept work dir would only fill the disk further
_PLACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def check_out_dir(out_dir: Path) -> None:
    """Refuse an existing BUILD_DIR: a previous build (of any export) or foreign files."""
    if not out_dir.exists():
        return
    if (out_dir / "manifest.json").is_file():
        try:
            m = json.loads((out_dir / "manifest.json").read_text())
        except (OSError, ValueError):
            m = {}
        src = m.get("source", {}).get("export_dir") if isinstance(m, dict) else None
        raise MetabnnError(f"'{out_dir}' already holds a build{f' of {src}' if src else ''}; "
                           "choose another --out or delete it to build again")
    if not out_dir.is_dir():
        raise MetabnnError(f"'{out_dir}' is a file, not a BUILD_DIR; choose a new --out (a directory to create)")
    if any(out_dir.iterdir()):
        raise MetabnnError(f"'{out_dir}' exists and is not an empty directory; choose a new --out")


def check_no_live_build(out_dir: Path) -> None:
    """Refuse to start while another process is building the same BUILD_DIR (its stage is live).

    Stages whose owner died (SIGKILL, power loss) are removed first; they hold nothing of use.
    """
    from metabnn.atomic import live_stage_owner

    pid = live_stage_owner(out_dir)
    if pid is not None:
        raise MetabnnError(f"another metabnn build (process {pid}) is writing '{out_dir}' right now; "
                           "wait for it to finish or choose another --out")


def check_source_run(art: ExportArtifact) -> None:
    """The run the export came from must still hold the exported checkpoint: deploy/ ships it."""
    from metabnn.export.manifest import sha256_file

    src = art.manifest.get("source")
    run_dir = src.get("run_dir") if isinstance(src, dict) else None
    digest = src.get("checkpoint_sha256") if isinstance(src, dict) else None
    if not run_dir or not digest:
        raise MetabnnError(f"export '{art.export_dir}' does not name the run it was made from; "
                           "export the run again with this metabnn")
    ckpt = Path(run_dir) / "checkpoint.pt"
    if not ckpt.is_file():
        raise MetabnnError(f"'{ckpt}', the checkpoint this export was made from, is gone (the run was moved or "
                           "deleted); the deploy package needs it: export the run again from where it is now")
    if sha256_file(ckpt) != digest:
        raise MetabnnError(f"the run '{run_dir}' has changed since this export (it trained on); "
                           f"export it again ('metabnn export {run_dir} --out NEW_EXPORT_DIR') and build that")


class StepFailed(Exception):
    """A FINN/Vivado step raised something that is not a metabnn input error."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(step)
        self.step, self.error = step, error

    def line(self, work: Path, kept: Path | None) -> str:
        """One line: the step, the exception's gist, and where its logs are."""
        e = self.error
        text = str(getattr(e, "msg", None) or e).strip()
        first = next((l.strip() for l in text.splitlines() if l.strip()), "")
        gist = f"{type(e).__name__}: {first}" if first else type(e).__name__
        if len(gist) > 300:
            gist = gist[:297] + "..."
        logs = [str(p) for p in (getattr(e, "vivado_logfile", None),) if p]
        if kept is not None:
            for old in {str(work), str(work.resolve())}:
                gist = gist.replace(old, str(kept))
                logs = [p.replace(old, str(kept)) for p in logs]
            logs.append(str(kept / LOG))
            where = f"see {' and '.join(repr(p) for p in logs)} (the build's work dir is kept in '{kept}')"
        else:
            where = "its work dir could not be kept"
        return (f"build step '{self.step}' failed ({gist}); {where}; fix the cause and run the same "
                "command again")


def _run_step(name: str, fn: Callable[[], None]) -> None:
    """``fn()``; a tool's failure becomes ``StepFailed``, its traceback goes to build.log."""
    import traceback

    try:
        fn()
    except (MetabnnError, KeyboardInterrupt):
        raise
    except Exception as e:
        if isinstance(e, OSError) and e.errno in _PLACE_ERRNOS:
            raise
        traceback.print_exc()  # into build.log (stderr is captured there during the build)
        raise StepFailed(name, e) from e


def build(export_dir: Path, out_dir: Path, board: str, target_fps: float, clock_ns: float = 10.0,
          progress: bool = True, verify_limit: int | None = None, oversize: bool = False,
          on_interrupt: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build ``export_dir`` for ``board`` at ``target_fps``; returns the report (also report.json).

    ``on_interrupt`` receives what a Ctrl-C would leave behind whenever that changes (the CLI
    prints it).
    """
    from metabnn.hw import vivado

    export_dir, out_dir = Path(export_dir), Path(out_dir)
    # every input first: nothing is staged, computed or written for a build that cannot succeed
    cfg = make_config(export_dir, out_dir, out_dir, board, target_fps, clock_ns, verify_limit, progress, oversize)
    viv = vivado.plan()
    if viv["vivado"]:
        problem = viv.get("problem") or vivado.board_problem(viv, cfg.board.finn_board)
        if problem:
            raise MetabnnError(problem)
        if pending_bitstream(cfg, export_dir):
            ensure_writable(out_dir, "--out")
            return _vivado_tail(cfg, on_interrupt)
    check_out_dir(out_dir)
    ensure_writable(out_dir, "--out")
    if out_dir.is_dir():  # the build is staged beside it, then renamed over it
        ensure_writable(out_dir.parent, "--out")
    art = read_export(export_dir)
    check_source_run(art)
    check_no_live_build(out_dir)

    stage = StagedDir(out_dir, "build")
    failed = out_dir.with_name(out_dir.name + ".failed")
    work = None
    try:
        with stage as tmp:
            work = Path(tmp).absolute()
            cfg.work_dir = work
            try:
                report = _build_in(cfg, art, work, viv)
            except StepFailed:
                stage.keep_on_error = failed
                raise
    except StepFailed as e:
        raise MetabnnError(e.line(work, failed if failed.is_dir() else None)) from None
    if viv["vivado"]:
        return _vivado_tail(cfg, on_interrupt)
    return report


def pending_bitstream(cfg: BuildConfig, export_dir: Path) -> bool:
    """BUILD_DIR holds this very build (same export, board, rate, clock) without its bitstream: the
    Vivado steps failed, were interrupted or never ran there, and can run (again) on it."""
    from metabnn.hw import vivado

    out = cfg.out_dir
    try:
        m, r, bc = (json.loads((out / f).read_text()) for f in ("manifest.json", "report.json", "build_config.json"))
        same = all(isinstance(x, dict) for x in (m, r, bc)) and m["artifact"] == ARTIFACT and (
            (m["board"], m["target_fps"], m["clock_ns"]) == (cfg.board.name, cfg.target_fps, cfg.clock_ns))
    except (OSError, ValueError, TypeError, KeyError):
        return False
    if not same or vivado.has_bitstream(out):
        return False
    try:  # the export is known by its manifest, wherever it is mounted now
        if read_export(export_dir).manifest_sha256 != (m.get("source") or {}).get("export_manifest_sha256"):
            return False
    except MetabnnError:
        return False
    if r.get("fits") is False:
        raise MetabnnError(f"'{out}' is an --oversize build that does not fit the {cfg.board.name}, so Vivado cannot "
                           "place it; build a lower --target-fps into a new --out for a bitstream")
    if bc.get("work_dir") != str(cfg.final_dir):
        raise MetabnnError(f"'{out}' was built as '{bc.get('work_dir')}' and has moved since; its graphs and HDL name "
                           "files there: run the Vivado steps where it was built (in Docker, mount it at the same "
                           "path), or build again into a new --out")
    return True


@contextlib.contextmanager
def _tail_lock(build_dir: Path) -> Iterator[None]:
    """One Vivado tail per BUILD_DIR at a time (a flock on the directory; the kernel drops it with its holder)."""
    import fcntl

    fd = os.open(build_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MetabnnError(f"another metabnn build is running the Vivado steps in '{build_dir}' right now; wait "
                               "for it to finish") from None
        yield
    finally:
        os.close(fd)


def _vivado_tail(cfg: BuildConfig, on_interrupt: Callable[[str], None] | None) -> dict[str, Any]:
    """The Vivado steps on the finished BUILD_DIR; report.json records how they went, whatever happens."""
    import traceback

    from metabnn.hw import vivado
    from metabnn.hw.console import capture_output

    final = cfg.final_dir
    if on_interrupt is not None:
        on_interrupt(f"interrupted in the Vivado steps; '{cfg.out_dir}' holds the complete build without a bitstream "
                     f"(Vivado's partial work in '{cfg.out_dir / vivado.WORK}'): run the same command again to redo "
                     "the Vivado steps")
    with _tail_lock(final):
        report = json.loads((final / "report.json").read_text())
        viv = {**vivado.plan(), "status": "running"}
        report["vivado"] = viv
        _write_report(final, report)
        t0, status, error = time.perf_counter(), "failed", None
        try:
            with capture_output(final / LOG) as console:
                def log(s: str) -> None:
                    print(s, flush=True)  # build.log
                    if cfg.progress:
                        print(s, file=console, flush=True)

                try:
                    viv.update(vivado.run_tail(final, cfg.board.finn_board, cfg.clock_ns, log))
                    status = "done"
                except (MetabnnError, KeyboardInterrupt):
                    raise
                except Exception as e:
                    if isinstance(e, OSError) and e.errno in _PLACE_ERRNOS:
                        raise
                    traceback.print_exc()  # into build.log, for a bug report
                    error = e
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            viv["status"] = status
            if status != "done":
                last = vivado.failing_log(final / vivado.WORK)
                viv["log"] = str(last.relative_to(final)) if last else None
            report["vivado_message"] = vivado.message(viv, cfg.out_dir)
            report["steps"] = [s for s in report.get("steps", []) if s.get("name") != "vivado"] + [
                {"name": "vivado", "seconds": round(time.perf_counter() - t0, 2)}]
            with contextlib.suppress(OSError):  # a full disk must not hide the error that got us here
                ordinary_modes(final / vivado.WORK)
                _write_report(final, report)
        if error is not None:
            raise MetabnnError(vivado.failure_line(error, cfg.out_dir))
        return report


def _write_report(build_dir: Path, report: dict[str, Any]) -> None:
    from metabnn.hw import report as rep

    atomic_write_json(build_dir / "report.json", report)
    atomic_write_bytes(build_dir / "report.txt", (rep.table(report) + "\n").encode())


def _build_in(cfg: BuildConfig, art: ExportArtifact, work: Path, viv: dict[str, Any]) -> dict[str, Any]:
    """Every step into ``work`` (the staged BUILD_DIR), FINN's output into build.log."""
    from metabnn.hw.console import capture_output
    from metabnn.hw.steps import STEPS, BuildContext

    with capture_output(work / LOG) as console:
        def log(s: str) -> None:
            print(s, flush=True)  # build.log
            if cfg.progress:
                print(s, file=console, flush=True)

        ctx = BuildContext(cfg, art, log=log, console=console)
        ctx.report.update({"board": cfg.board.name, "part": cfg.board.part, "clock_ns": cfg.clock_ns,
                           "target_fps": cfg.target_fps, "widths": art.widths, "input_bits": art.input_bits,
                           "tasks": art.n_tasks, "steps": [], "vivado": viv, "vivado_message": vivado_message(viv)})
        start = time.perf_counter()
        with finn_session(work / "finn_work"):
            for name, step in STEPS:
                t0 = time.perf_counter()
                log(f"[build] {name}")
                _run_step(name, lambda: step(ctx))
                if ctx.model is not None and name != "driver_and_tasks":
                    _run_step(name, lambda: ctx.save(name))
                if name == "convert_to_hw":
                    _run_step(name, lambda: ctx.hw_model.save(str(work / "intermediate_models" / "hw_layers.onnx")))
                ctx.report["steps"].append({"name": name, "seconds": round(time.perf_counter() - t0, 2)})
        ctx.report["build_seconds"] = round(time.perf_counter() - start, 2)
        log("[build] package")
        _run_step("package", lambda: _package(ctx, work))
        return ctx.report


def vivado_message(viv: dict[str, Any]) -> str:
    from metabnn.hw import vivado

    return vivado.message(viv) if not viv["vivado"] else "the Vivado steps run next, on the finished build"


def _package(ctx: Any, work: Path) -> None:
    """Reports, manifests and paths fixed for BUILD_DIR, where the staged dir is about to move."""
    import shutil

    from metabnn.hw import report as rep
    from metabnn.runtime.package import TOKEN, write_deploy_manifest

    cfg, art, report = ctx.cfg, ctx.art, ctx.report
    final = cfg.final_dir
    shutil.rmtree(work / "finn_work", ignore_errors=True)  # copied into hw_codegen/ and deploy/
    relocate_paths(work, final, ctx.codegen_moves)
    atomic_write_json(work / "build_config.json", cfg.to_json() | {"out_dir": str(cfg.out_dir), "work_dir": str(final)})
    atomic_write_json(work / "report.json", report)
    atomic_write_bytes(work / "report.txt", (rep.table(report) + "\n").encode())
    rep.plot(report, work / "report.png")
    atomic_write_json(work / "manifest.json", {
        "artifact": ARTIFACT, "metabnn_version": metabnn.__version__,
        "source": {"export_dir": str(cfg.export_dir.resolve()), "export_manifest_sha256": art.manifest_sha256},
        "board": cfg.board.name, "target_fps": cfg.target_fps, "clock_ns": cfg.clock_ns})
    # deploy/ is what goes to the board: index it (checksums, register map) and put the
    # hidden-weight checkpoint beside it, so on-device learning starts from this build.
    write_deploy_manifest(work)
    ordinary_modes(work)
    os.chmod(work / "deploy" / TOKEN, 0o600)  # metabnn serve's secret stays private (mode 0600)


def relocate_paths(work: Path, final: Path, moves: dict[str, str]) -> None:
    """Point the paths saved in the build's graphs at BUILD_DIR, where the files will live.

    ``moves`` maps FINN's generated-code dirs (under finn_work/, deleted) to their copies in
    hw_codegen/; every other path into the staged dir is re-rooted at ``final``.
    """
    import onnx

    roots = sorted({str(work), str(work.resolve())}, key=len, reverse=True)
    pairs = [(src, str(final / dst)) for src, dst in sorted(moves.items(), key=lambda m: -len(m[0]))]
    pairs += [(r, str(final)) for r in roots]

    def fix(text: str) -> str:
        for old, new in pairs:
            text = text.replace(old, new)
        return text

    for path in [*work.glob("intermediate_models/*.onnx"), *work.glob("dataflow_partition/*.onnx")]:
        data = path.read_bytes()
        if not any(r.encode() in data for r in roots):
            continue  # most graphs hold no paths; parsing large weight tensors for nothing is slow
        model = onnx.load_from_string(data)
        changed = False
        for node in model.graph.node:
            for a in node.attribute:
                if a.type == onnx.AttributeProto.STRING and any(r.encode() in a.s for r in roots):
                    a.s, changed = fix(a.s.decode()).encode(), True
        for p in [*model.metadata_props, *getattr(model.graph, "metadata_props", [])]:
            if any(r in p.value for r in roots):
                p.value, changed = fix(p.value), True
        if changed:
            onnx.save(model, str(path))


def ordinary_modes(root: Path) -> None:
    """Directories FINN made with mkdtemp are private (0700); a build is read by others too."""
    mask = os.umask(0)
    os.umask(mask)
    for d, _, files in os.walk(root):
        os.chmod(d, 0o777 & ~mask)
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode & 0o7777 | (0o666 & ~mask))


def plan(export_dir: Path, board: str, target_fps: float, clock_ns: float = 10.0) -> dict[str, Any]:
    """The folding analysis alone (no BUILD dir): reachable rate, best fit and what limits it."""
    from metabnn.hw import folding
    from metabnn.hw.steps import BuildContext, step_convert_to_hw, step_qonnx_to_finn, step_specialize_layers, \
        step_streamline

    with tempfile.TemporaryDirectory(prefix="metabnn-plan-") as tmp:
        cfg = make_config(Path(export_dir), Path(tmp) / "out", Path(tmp), board, target_fps, clock_ns, None, False)
        ctx = BuildContext(cfg, read_export(Path(export_dir)), log=lambda s: None)
        with finn_session(Path(tmp) / "finn_work"):
            for step in (step_qonnx_to_finn, step_streamline, step_convert_to_hw, step_specialize_layers):
                step(ctx)
            layers = folding.layer_options(ctx.model, cfg.board.part)
        return {"board": cfg.board.name, "target_fps": cfg.target_fps, "clock_ns": cfg.clock_ns,
                "input_bits": ctx.art.input_bits, "widths": ctx.art.widths,
                **folding.analysis(layers, folding.budget(cfg.board), cfg.max_cycles, cfg.fclk_hz)}
