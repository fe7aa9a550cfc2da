"""The Vivado tail of ``metabnn build``: what needs Vivado, the tools it needs, and running it.

Everything else (estimates, RTL code, driver settings, per-task weight files) is made the same
way with or without Vivado and is finished in BUILD_DIR first. With ``XILINX_VIVADO`` set, the
build then runs FINN's Zynq build (Vitis HLS for the DMA engines, one stitched IP per dataflow
partition, the Zynq shell, synthesis, place and route, bitstream) on the folded graph in
``BUILD_DIR/intermediate_models/hw_codegen.onnx``, with ``BUILD_DIR/vivado/`` as FINN's work
dir, so the Vivado projects and their logs stay beside the build whatever happens. FINN's own
CLI, which metabnn bypasses, would set the environment its generated Tcl reads
(``FINN_RTLLIB``, ``FINN_CUSTOM_HLS``, the board files, the HLS tool on PATH);
``find_tools`` finds and checks all of it before any work starts.

Supported versions: finn-plus 1.6.1's README (its PyPI description, "Prerequisites") names
Vivado, Vitis and Vitis HLS 2022.2 or 2024.2. Its code picks the HLS command from the version
in the path of ``XILINX_VIVADO`` (``finn/util/hls.py``): ``vitis_hls`` up to 2024.2,
``vitis-run --mode hls`` after it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from metabnn.errors import MetabnnError
from metabnn.hw.finn_env import vivado_available

WORK = "vivado"  # BUILD_DIR/vivado: FINN's work dir for the tail (HLS, IP, Vivado projects, logs)
BITFILE = "deploy/bitfile/finn-accel.bit"
SUPPORTED = ((2022, 2), (2024, 2))  # finn-plus 1.6.1 README: "Vivado, Vitis, and Vitis HLS (2022.2 or 2024.2)"

# (output in BUILD_DIR, what makes it)
VIVADO_OUTPUTS = (
    (BITFILE, "Vivado synthesis, place and route of FINN's Zynq design"),
    ("deploy/bitfile/finn-accel.hwh", "the Vivado block design's hardware handoff"),
    (f"{WORK}/", "FINN's HLS and Vivado projects with their logs (DMA IP, stitched IP, Zynq shell)"),
)

HOWTO = ("run the same command again with Vivado and Vitis HLS (2022.2 or 2024.2), e.g. in the Docker image: "
         "docker build -t metabnn . && docker run --rm -v /tools/Xilinx:/tools/Xilinx "
         "-e XILINX_VIVADO=/tools/Xilinx/Vivado/2024.2 -v \"$PWD:$PWD\" -w \"$PWD\" metabnn metabnn build EXPORT_DIR "
         "--board BOARD --target-fps N --out BUILD_DIR (the same BUILD_DIR: it keeps this build and adds the "
         "bitstream; see README, Bitstreams)")

# Board parts FINN's Zynq shell selects (finn/transformation/fpgadataflow/templates.py) whose board
# files come from finn_deps/board_files; ZCU104's ship with Vivado.
BOARD_FILES = {"Pynq-Z1": "pynq-z1", "Pynq-Z2": "pynq-z2", "Ultra96": "ultra96v1", "KV260_SOM": "kv260_som"}


def version_of(vivado_root: str | Path) -> tuple[int, int] | None:
    """The Vivado version as FINN reads it: from the path (``finn.util.basic.get_vivado_version``)."""
    m = re.search(r"\b(20\d{2})\.(1|2)\b", str(vivado_root))
    return (int(m.group(1)), int(m.group(2))) if m else None


def hls_command(version: tuple[int, int]) -> str:
    return "vitis-run" if version > (2024, 2) else "vitis_hls"


def hls_dirs(env: Mapping[str, str], vivado_root: Path) -> list[Path]:
    """Where Vitis HLS may be, most specific first: the settings scripts' variables, the installer's
    layouts beside this Vivado, then PATH."""
    dirs = [Path(env[v]) / "bin" for v in ("XILINX_HLS", "XILINX_VITIS") if env.get(v)]
    parts = vivado_root.parts
    # <X>/Vivado/<ver> -> <X>/Vitis_HLS/<ver> (to 2024.1) or <X>/Vitis/<ver>; <X>/<ver>/Vivado -> <X>/<ver>/Vitis
    if "Vivado" in parts:
        i = len(parts) - 1 - parts[::-1].index("Vivado")
        dirs += [Path(*parts[:i], name, *parts[i + 1:]) / "bin" for name in ("Vitis_HLS", "Vitis")]
    dirs += [Path(d) for d in env.get("PATH", "").split(os.pathsep) if d]
    return dirs


def finn_deps_dir(env: Mapping[str, str]) -> Path:
    """Where FINN looks for finn-hlslib and the board files (its settings: FINN_DEPS, else FINN_ROOT/finn_deps)."""
    from finn.interface.settings import FINN_ROOT

    return Path(env.get("FINN_DEPS") or Path(FINN_ROOT) / "finn_deps").absolute()


@dataclass
class Tools:
    vivado_root: Path
    version: tuple[int, int]
    hls: Path  # vitis_hls or vitis-run
    deps: Path
    env: dict[str, str]  # the variables the tail sets, as FINN's CLI would have

    @property
    def version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"


def find_tools(env: Mapping[str, str]) -> Tools:
    """Everything FINN's Vivado steps need, or a one-line error naming what is missing and how to get it."""
    from finn.interface.interface_utils import resolve_module_path

    root = Path(env["XILINX_VIVADO"])
    version = version_of(root)
    if version is None:
        raise MetabnnError(f"cannot tell which Vivado XILINX_VIVADO='{root}' is: FINN reads the version from that "
                           "path; point XILINX_VIVADO at the versioned install (e.g. /tools/Xilinx/Vivado/2024.2)")
    ver = f"{version[0]}.{version[1]}"
    tool = hls_command(version)
    found = next((d / tool for d in hls_dirs(env, root) if os.access(d / tool, os.X_OK) and (d / tool).is_file()),
                 None)
    if found is None:
        beside = [str(d) for d in hls_dirs({}, root)]
        raise MetabnnError(
            f"FINN's DMA engines are HLS-only, so the Vivado steps need Vitis HLS {ver} ('{tool}'), which is "
            f"neither on PATH nor in {' or '.join(beside) or 'XILINX_HLS'}; install Vitis HLS {ver} beside Vivado "
            "and mount its folder too (docker run -v /tools/Xilinx:/tools/Xilinx mounts both), or set XILINX_HLS to "
            "its directory")
    deps = finn_deps_dir(env)
    if not (deps / "finn-hlslib" / "bnn-library.h").is_file():
        raise MetabnnError(sources_missing(deps, "finn-hlslib"))
    rtllib, custom_hls = resolve_module_path("finn-rtllib"), resolve_module_path("custom_hls")
    if not (rtllib and Path(rtllib, "memstream").is_dir() and custom_hls and Path(custom_hls).is_dir()):
        raise MetabnnError("finn-plus is installed without its finn-rtllib or custom_hls folders; reinstall it "
                           "(make install, or scripts/install-stack.sh)")
    path = [str(root / "bin"), str(found.parent)]
    tail_env = {
        "FINN_RTLLIB": rtllib, "FINN_CUSTOM_HLS": custom_hls, "FINN_DEPS": str(deps),
        "PATH": os.pathsep.join(dict.fromkeys(path + env.get("PATH", "").split(os.pathsep))),
        # FINN's CLI sets it too: Vivado's Tcl store otherwise writes into ~/.Xilinx
        "XILINX_LOCAL_USER_DATA": env.get("XILINX_LOCAL_USER_DATA", "no"),
        "XILINX_HLS": env.get("XILINX_HLS") or str(found.parent.parent),
    }
    return Tools(root, version, found, deps, tail_env)


def sources_missing(deps: Path, what: str) -> str:
    return (f"{what} (FINN's sources for the Vivado steps) {'is' if ' and ' not in what else 'are'} not in "
            f"'{deps}'; fetch them with 'python docker/fetch_finn_deps.py' from the metabnn checkout (needs the "
            "network; the Docker image has them) or set FINN_DEPS to a directory that holds them")


def board_problem(p: Mapping[str, Any], finn_board: str) -> str | None:
    """Why the Zynq shell could not select ``finn_board``'s board part (its board files are missing), if so."""
    want, deps = BOARD_FILES.get(finn_board), p.get("finn_deps")
    if not want or not deps:
        return None
    if any(b.parent.parent.name == want for b in Path(deps, "board_files").glob(f"**/{want}/*/board.xml")):
        return None
    return sources_missing(Path(deps), f"the {finn_board} board files")


def plan(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Whether this build runs the Vivado tail; what it would lack without; what stops it (``problem``)."""
    env = dict(os.environ if env is None else env)
    run = vivado_available(env)
    p: dict[str, Any] = {"vivado": run, "missing": [] if run else [o for o, _ in VIVADO_OUTPUTS],
                         "howto": None if run else HOWTO}
    if run:
        try:
            tools = find_tools(env)
        except MetabnnError as e:
            p["problem"] = str(e)
        else:
            p.update(version=tools.version_text, hls=str(tools.hls), finn_deps=str(tools.deps), status="pending")
            if tools.version not in SUPPORTED:
                p["note"] = (f"finn-plus 1.6.1 names Vivado {' and '.join(f'{y}.{m}' for y, m in SUPPORTED)} as "
                             f"supported; this is {tools.version_text}")
    return p


def message(p: Mapping[str, Any], build_dir: str | Path = "BUILD_DIR") -> str:
    if p["vivado"]:
        status = p.get("status")
        if status == "done":
            return (f"Vivado {p.get('version', '')} ran: bitstream and hardware handoff in "
                    f"{build_dir}/deploy/bitfile/, its projects and logs in {build_dir}/{WORK}/")
        return (f"the Vivado steps {'failed' if status == 'failed' else 'did not finish'}: no bitstream yet; run the "
                "same command again to redo them (see README, Bitstreams)")
    lines = ["XILINX_VIVADO is not set: stopped after estimates, RTL code generation, driver settings "
             "and per-task weight files. These outputs need Vivado:"]
    lines += [f"  {o:34s} {why}" for o, why in VIVADO_OUTPUTS]
    lines.append(f"To get them, {HOWTO}")
    return "\n".join(lines)


def run_tail(build_dir: Path, finn_board: str, clock_ns: float, log: Callable[[str], None]) -> dict[str, Any]:
    """FINN's ZynqBuild on BUILD_DIR's folded graph in BUILD_DIR/vivado; bit + hwh into deploy/bitfile/.

    Raises whatever FINN raises; the caller turns it into one line (``failure_line``).
    """
    from qonnx.core.modelwrapper import ModelWrapper

    from metabnn.hw.finn_env import environ, finn_session

    tools = find_tools(os.environ)
    problem = board_problem({"finn_deps": tools.deps}, finn_board)
    if problem:
        raise MetabnnError(problem)
    work = build_dir / WORK
    shutil.rmtree(work, ignore_errors=True)  # an earlier attempt's: this one replaces it
    work.mkdir()
    log(f"[build] vivado: FINN's Zynq build with Vivado {tools.version_text} and {tools.hls.name} in '{work}' "
        "(HLS, stitched IP, synthesis, place and route: this takes long)")
    with environ(tools.env), finn_session(work):
        from finn.transformation.fpgadataflow.make_zynq_proj import ZynqBuild

        model = ModelWrapper(str(build_dir / "intermediate_models" / "hw_codegen.onnx"))
        model = model.transform(ZynqBuild(platform=finn_board, period_ns=clock_ns,
                                          partition_model_dir=str(work / "dataflow_partition")))
        model.save(str(build_dir / "intermediate_models" / "zynq_build.onnx"))
    bit, hwh = Path(model.get_metadata_prop("bitfile")), Path(model.get_metadata_prop("hw_handoff"))
    _install_bitfile(build_dir / "deploy", bit, hwh)
    proj = Path(model.get_metadata_prop("vivado_pynq_proj"))
    return {"status": "done", "version": tools.version_text, "hls": str(tools.hls),
            "project": str(proj.relative_to(build_dir)) if proj.is_relative_to(build_dir) else str(proj),
            "bitfile": BITFILE}


def has_bitstream(build_dir: Path) -> bool:
    """The Vivado steps finished here: the bitstream is in deploy/ and listed in its manifest (written last)."""
    try:
        files = json.loads((build_dir / "deploy" / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        files = {}
    return (build_dir / BITFILE).is_file() and BITFILE.removeprefix("deploy/") in files


def _install_bitfile(deploy: Path, bit: Path, hwh: Path) -> None:
    """Copy bit + hwh in (each whole, under the package's writer lock) and list them in its manifest."""
    from metabnn.atomic import atomic_write_json
    from metabnn.runtime.lock import PackageLock
    from metabnn.runtime.package import MANIFEST, sha256_file

    with PackageLock(deploy, "build").exclusive():
        (deploy / "bitfile").mkdir(exist_ok=True)
        for src, name in ((hwh, "finn-accel.hwh"), (bit, "finn-accel.bit")):
            tmp = deploy / "bitfile" / f".{name}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, deploy / "bitfile" / name)
        manifest = json.loads((deploy / MANIFEST).read_text())
        for p in sorted((deploy / "bitfile").glob("finn-accel.*")):
            manifest["files"][f"bitfile/{p.name}"] = sha256_file(p)
        atomic_write_json(deploy / MANIFEST, manifest)  # last: what ``has_bitstream`` looks for


def failing_log(work: Path) -> Path | None:
    """The log that says why the tail failed: the first one written with an ``ERROR:`` line (FINN
    runs the tools one at a time, and a stitched-IP failure only shows later, in the Zynq shell's
    log), else the newest."""
    logs = sorted((p for p in work.rglob("*.log") if p.is_file()), key=lambda p: p.stat().st_mtime) \
        if work.is_dir() else []
    for log in logs:
        try:
            with log.open(errors="replace") as f:
                if any(line.startswith("ERROR:") for line in f):
                    return log
        except OSError:
            continue
    return logs[-1] if logs else None


def failure_line(error: BaseException, build_dir: Path) -> str:
    """One line for a failed Vivado tail: what failed, which log says why, what is kept, how to go on."""
    text = str(getattr(error, "msg", None) or error).strip()
    first = next((l.strip() for l in text.splitlines() if l.strip()), "")
    gist = f"{type(error).__name__}: {first}" if first else type(error).__name__
    if len(gist) > 300:
        gist = gist[:297] + "..."
    work = build_dir / WORK
    log = failing_log(work)
    see = f"see '{log}' and '{build_dir / 'build.log'}'" if log else f"see '{build_dir / 'build.log'}'"
    return (f"the Vivado steps failed ({gist}); {see}; the rest of the build is complete in '{build_dir}' and the "
            f"Vivado projects and logs are kept in '{work}'; fix the cause and run the same command again: it keeps "
            "the build and redoes only the Vivado steps")
