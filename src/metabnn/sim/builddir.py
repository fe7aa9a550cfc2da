"""What ``metabnn sim`` and ``synth`` read from a BUILD dir, checked before any work.

A wrong directory (missing, a file, an export, a run, a deploy package, a foreign or
truncated manifest/report, a build missing parts from an older metabnn), an unwritable
one, or a ``--task`` that names no task gets one line saying what it is and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from metabnn.atomic import ensure_writable
from metabnn.errors import MetabnnError

_REBUILD = "rebuild it: metabnn build EXPORT_DIR --board BOARD --target-fps N --out BUILD_DIR"
def read_build(build_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, report) of a BUILD dir, or one line saying what ``build_dir`` is instead."""
    build_dir = Path(build_dir)
    if not build_dir.exists():
        raise MetabnnError(f"BUILD_DIR '{build_dir}' does not exist; give a directory made by 'metabnn build'")
    if not build_dir.is_dir():
        raise MetabnnError(f"BUILD_DIR '{build_dir}' is a file, not a directory; give a directory made by "
                           "'metabnn build'")
    try:
        manifest = json.loads((build_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        raise MetabnnError(f"'{build_dir}' is not a BUILD_DIR made by 'metabnn build' (manifest.json missing "
                           "or damaged); give one, or " + _REBUILD) from None
    kind = manifest.get("artifact") if isinstance(manifest, dict) else None
    if kind == "metabnn-export":
        raise MetabnnError(f"'{build_dir}' is an EXPORT_DIR (made by 'metabnn export'), not a BUILD_DIR; build it "
                           f"first: metabnn build {build_dir} --board BOARD --target-fps N --out BUILD_DIR")
    if kind == "metabnn-run":
        raise MetabnnError(f"'{build_dir}' is a RUN_DIR (made by 'metabnn train'), not a BUILD_DIR; export and "
                           "build it first (metabnn export, then metabnn build)")
    if kind == "metabnn-deploy":
        raise MetabnnError(f"'{build_dir}' is a build's deploy package, not a BUILD_DIR; give the BUILD_DIR "
                           f"that holds it: '{build_dir.resolve().parent}'")
    if kind != "metabnn-build":
        raise MetabnnError(f"'{build_dir}' is not a BUILD_DIR made by 'metabnn build' (its manifest.json is "
                           f"foreign); give one, or {_REBUILD}")
    try:
        report = json.loads((build_dir / "report.json").read_text())
    except (OSError, ValueError):
        raise MetabnnError(f"'{build_dir}/report.json' is missing or damaged (truncated?); {_REBUILD}") from None
    ok = (isinstance(report, dict) and isinstance(report.get("clock_ns"), (int, float)) and report["clock_ns"] > 0
          and isinstance(report.get("tasks"), int) and isinstance(report.get("layers", []), list)
          and isinstance(manifest.get("source"), dict) and isinstance(manifest["source"].get("export_dir"), str))
    if not ok:
        raise MetabnnError(f"'{build_dir}': report.json or manifest.json lacks the build's clock, tasks or "
                           f"export (made by another metabnn?); {_REBUILD}")
    return manifest, report


def check_parts(build_dir: Path, report: dict[str, Any], sim: bool = True) -> None:
    """Refuse, before any work, a build without what the simulation (or synthesis) reads."""
    need = ["intermediate_models/dataflow_partition.onnx", "hw_codegen"]
    if sim:
        need += ["intermediate_models/hw_codegen.onnx", "deploy/driver/runtime_weights"]
        need += [f"deploy/tasks/{k}" for k in range(n_tasks(build_dir, report))]
    missing = [p for p in need if not (Path(build_dir) / p).exists()]
    if sim and (Path(build_dir) / "deploy" / "update.json").exists():
        raise MetabnnError(f"'{build_dir}/deploy' has an unfinished update (an interrupted 'metabnn learn'); run "
                           f"'metabnn status {Path(build_dir) / 'deploy'}' to repair it first")
    if missing:
        raise MetabnnError(f"'{build_dir}' lacks {', '.join(missing)} (an incomplete build, or one made by an "
                           f"older metabnn); {_REBUILD}")


def check_writable(build_dir: Path) -> None:
    """Refuse a BUILD dir that cannot take rtl/ and sim.json (or report.json) before any work."""
    build_dir = Path(build_dir)
    try:
        ensure_writable(build_dir, "BUILD_DIR")
        if (build_dir / "rtl").is_dir():
            ensure_writable(build_dir / "rtl", "BUILD_DIR/rtl")
    except MetabnnError:
        raise MetabnnError(f"BUILD_DIR '{build_dir}' is not writable (sim and synth write rtl/, sim.json and "
                           "report.json there); make it writable or copy the build (cp -r) and give the "
                           "copy") from None
    for name in ("sim.json", "report.json"):
        if (build_dir / name).is_dir():
            raise MetabnnError(f"'{build_dir / name}' is a directory; move it away (metabnn writes that file)")


def task_names(build_dir: Path, report: dict[str, Any]) -> list[str]:
    """Each task's name (``pmnist-1``...), from the deploy package once it learned, else the build."""
    pkg = _learned_package(build_dir)
    entries = (pkg or {}).get("tasks") or report.get("deploy_tasks") or report.get("agreement") or []
    count = n_tasks(build_dir, report)
    names = [str(e["name"]) if isinstance(e, dict) and e.get("name") else "" for e in entries][:count]
    names += [""] * (count - len(names))
    return [n or f"task-{k + 1}" for k, n in enumerate(names)]


def task_label(task: int, names: list[str]) -> str:
    """How every printed line names a task: ``T1 (pmnist-1)``."""
    return f"T{task + 1} ({names[task]})" if 0 <= task < len(names) else f"T{task + 1}"


def parse_task(build_dir: Path, spec: str) -> int:
    """The 0-based index of ``--task`` ``spec``: a number as printed (1 = T1) or a task's name."""
    _, report = read_build(build_dir)
    names = task_names(build_dir, report)
    valid = ", ".join(f"{k + 1} ({n})" for k, n in enumerate(names))
    text = str(spec).strip()
    fix = f"valid tasks: {valid}, or all" if names else "this build has no tasks"
    try:
        k = int(text)
    except ValueError:
        lower = [n.lower() for n in names]
        if text.lower() in lower:
            return lower.index(text.lower())
        t = text[1:] if text[:1] in "tT" else ""  # T2, as the tables print it
        if t.isdigit() and 1 <= int(t) <= len(names):
            return int(t) - 1
        raise MetabnnError(f"--task {text}: no task of that name in '{build_dir}'; {fix}") from None
    if 1 <= k <= len(names):
        return k - 1
    if k == 0:
        raise MetabnnError(f"--task 0: tasks are numbered from 1, as printed (T1 is the first); {fix}")
    raise MetabnnError(f"--task {text}: '{build_dir}' has {len(names)} task{'s' * (len(names) != 1)}; {fix}")


def _learned_package(build_dir: Path) -> dict[str, Any] | None:
    """deploy/manifest.json once on-device learning changed the package (generation > 0), else None."""
    path = Path(build_dir) / "deploy" / "manifest.json"
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text())
        gen = int(m.get("generation", 0))
        if gen > 0 and not (isinstance(m.get("tasks"), list) and isinstance(m.get("host"), dict)):
            raise ValueError("fields")
    except (OSError, ValueError, TypeError, AttributeError):
        raise MetabnnError(f"'{path}' is damaged (truncated?); run 'metabnn status {path.parent}' to check the "
                           f"package, or {_REBUILD}") from None
    return m if gen > 0 else None


def n_tasks(build_dir: Path, report: dict[str, Any]) -> int:
    pkg = _learned_package(build_dir)
    return len(pkg["tasks"]) if pkg else int(report.get("tasks", 0))


def current_artifact(build_dir: Path, build_manifest: dict[str, Any]):
    """The build's export, or, after ``metabnn learn`` rewrote deploy/, the parameters and tasks
    the package holds now: the memory files the simulation loads come from there too."""
    from metabnn.hw.export_artifact import ExportArtifact, read_export

    src = build_manifest["source"]
    export_dir = Path(src["export_dir"])
    if not export_dir.is_dir():
        raise MetabnnError(f"the export this build was made from, '{export_dir}' (named in "
                           f"{Path(build_dir) / 'manifest.json'}), is gone; the simulation takes its test images "
                           "and reference from it: restore it there, or export and build again")
    art = read_export(export_dir)
    if src.get("export_manifest_sha256") not in (None, art.manifest_sha256):
        raise MetabnnError(f"the export '{export_dir}' changed since '{build_dir}' was built from it (another run "
                           "was exported there?); build again from that export, or restore the original")
    pkg = _learned_package(build_dir)
    if pkg is None:
        return art
    host = Path(build_dir) / "deploy"
    try:
        with np.load(host / pkg["host"]["parameters"]) as z:
            params = {k: z[k] for k in z.files}
        specs = json.loads((host / pkg["host"]["tasks"]).read_text())["tasks"]
    except (OSError, ValueError, KeyError, TypeError):
        raise MetabnnError(f"the learned parameters in '{host}' are missing or damaged; run 'metabnn status "
                           f"{host}' to check the package") from None
    return ExportArtifact(art.export_dir, art.manifest, art.manifest_sha256, params, specs)
