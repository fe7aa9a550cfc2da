"""Fetch what FINN downloads at run time (finn-hlslib at finn-plus's pinned commit, board files).

Reads finn-plus's own ``external_dependencies.yaml`` so the pins are always the installed
package's, and places everything where FINN looks and as FINN's own ``finn deps update`` lays
it out (``$FINN_DEPS``, else ``<FINN_ROOT>/finn_deps``; board files under ``board_files/``),
which is also where ``metabnn build`` checks for them before the Vivado steps. Run at image
build time so the container never needs the network; outside Docker, run it once in the venv
that builds. What is already there is kept. ``--dry-run`` prints the plan.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import yaml

WANTED_BOARDS = ("pynq-z1", "pynq-z2", "avnet-bdf", "kv260-som-bdf")  # Ultra96/ZCU104 ship with Vivado/avnet


def plan() -> tuple[Path, list[tuple[str, ...]]]:
    import finn.interface
    from finn.interface.settings import FINN_ROOT

    spec = yaml.safe_load((Path(finn.interface.__file__).parent / "external_dependencies.yaml").read_text())
    deps = Path(os.environ.get("FINN_DEPS") or Path(FINN_ROOT) / "finn_deps").absolute()
    jobs: list[tuple[str, ...]] = []
    for name in ("finn-hlslib", "attention-hlslib"):
        d = spec["git_deps"][name]
        jobs.append(("git", d["url"], d["commit"], str(deps / name)))
    for name, d in spec["boardfile_deps"].items():
        if name in WANTED_BOARDS:
            # FINN names the folder after the repository subdirectory (manage_deps.py)
            sub = Path(d["subdirectory"]).name or name
            jobs.append(("git-subdir", d["url"], d["commit"], str(deps / "board_files" / sub), d["subdirectory"]))
    for name, d in spec["direct_download_deps"].items():
        if name in WANTED_BOARDS:
            jobs.append(("zip", d["url"], str(deps / d["target_directory"])))
    return deps, jobs


def run(job: tuple[str, ...]) -> None:
    kind = job[0]
    if kind != "zip" and Path(job[3]).is_dir():
        return  # fetched before
    if kind in ("git", "git-subdir"):
        url, commit, dest = job[1:4]
        tmp = dest if kind == "git" else dest + ".src"
        subprocess.run(["git", "clone", "--quiet", url, tmp], check=True)
        subprocess.run(["git", "-C", tmp, "checkout", "--quiet", commit], check=True)
        if kind == "git-subdir":
            subprocess.run(["cp", "-r", str(Path(tmp) / job[4]), dest], check=True)
            subprocess.run(["rm", "-rf", tmp], check=True)
    else:
        url, dest = job[1:3]
        with urllib.request.urlopen(url, timeout=120) as r:  # noqa: S310 (fixed https URLs from FINN)
            zipfile.ZipFile(io.BytesIO(r.read())).extractall(dest)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    deps, jobs = plan()
    for job in jobs:
        print(" ".join(job))
        if not args.dry_run:
            run(job)
    print(f"FINN deps in {deps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
