"""Stand-ins for ``vivado``, ``vitis_hls`` and ``vitis-run`` that check the Tcl FINN hands them.

No Vivado runs on the machines this project is tested on, so ``tests/test_vivado_tail.py``
puts these first in a fake Xilinx install and lets ``metabnn build`` drive FINN's whole Zynq
build through them. Each run executes its Tcl script in a real Tcl interpreter (Python's
tkinter) with the Xilinx commands modelled just far enough to check the wiring, and stops
with one line and exit code 1 at the first thing a real tool would reject:

* every ``$::env(NAME)`` the script reads is set and names an existing directory (Tcl itself
  refuses an unset one), every file or directory it names exists (``add_files``,
  ``read_verilog``, ``import_files``, ``ipx::add_file``, ``-I`` include directories, IP and
  board repositories, memory files named in the HDL it adds, files it opens or copies);
* the part (``create_project -part``, ``set_part``) and the clock (HLS ``create_clock``, the
  stitched IP's ``ap_clk`` frequency, the Zynq shell's clock wizard) are the expected ones;
* ``create_bd_cell -type module -reference M`` names a module defined in an added HDL file, and
  every pin connected on such a cell is one of that module's ports; ``-type ip -vlnv V`` names a
  Xilinx catalog IP or one packaged in the current IP repositories (by an earlier stand-in run);
* the Zynq shell selects a board part that the board repositories hold.

It then writes the outputs FINN reads next (HLS ``sol1/impl/ip``, the block design wrapper,
the packaged IP, ``top_wrapper.bit`` and ``top.hwh``), its own ``vivado.log`` or
``vitis_hls.log`` in the working directory, and one JSON line per run to ``$STANDIN_LOG``.

Environment: ``STANDIN_EXPECT`` (JSON: part, clock_ns, board, board_part), ``STANDIN_LOG``,
``STANDIN_FAIL`` (``hls``, ``stitched_ip`` or ``zynq_shell``: that kind of run fails as a broken
design would, after its checks).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

HDL = (".v", ".sv", ".vh", ".svh")
# Commands whose effect the checks do not need: accepted and recorded.
ACCEPTED = {
    "set_param", "set_msg_config", "reset_msg_config", "update_compile_order", "generate_target",
    "apply_bd_automation", "connect_bd_net", "connect_bd_intf_net", "assign_bd_address", "validate_bd_design",
    "save_bd_design", "wait_on_run", "open_run", "close_project", "startgroup", "endgroup", "delete_bd_objs",
    "close_design", "csynth_design",
    "ipx::create_xgui_files", "ipx::update_checksums", "ipx::save_core", "ipx::remove_segment",
    "ipx::remove_all_file", "ipx::remove_file_group", "ipx::remove_file", "ipx::archive_core",
    "ipx::associate_bus_interfaces", "ipx::infer_bus_interface", "ipx::add_ports_from_hdl",
}


class Stop(Exception):
    """The check that failed (or ``exit``), carried out of the Tcl interpreter."""


class Tool:
    def __init__(self, tool: str, script: Path, expect: dict) -> None:
        import tkinter

        self.tool, self.script, self.expect = tool, script, expect
        self.kind = "hls" if tool != "vivado" else {"make_project.tcl": "stitched_ip",
                                                   "ip_config.tcl": "zynq_shell"}.get(script.name, "other")
        self.cwd = Path.cwd()
        self.tcl = tkinter.Tcl()
        self.failure: str | None = None
        self.exit_code: int | None = None
        self.project: tuple[str, Path] | None = None
        self.repos: list[str] = []
        self.board_repos: list[str] = []
        self.modules: dict[str, str] = {}  # module name -> header text
        self.cells: dict[str, tuple[str, str]] = {}  # cell -> (module|ip, reference|vlnv)
        self.ip_ports: dict[str, list[str]] = {}  # cell -> ports its packaged IP declares (stitched IPs)
        self.ports: set[str] = set()  # external ports of the block design being built
        self.top = ""
        self.bd_designs: list[str] = []
        self.hls = {"project": None, "solution": "sol1", "top": None}
        self.log: dict = {"tool": tool, "kind": self.kind, "script": str(script), "cwd": str(self.cwd), "env": {},
                          "files": [], "memory_files": [], "pins": 0, "module_cells": [], "ip_cells": [],
                          "checked": [], "outputs": []}
        self.tcl.createcommand("unknown", self.dispatch)
        self.tcl.createcommand("exit", self.exit)
        self.tcl.createcommand("version", lambda *a: "2024.2")

    # ---- helpers -----------------------------------------------------------------------
    def fail(self, msg: str) -> None:
        self.failure = self.failure or msg
        raise Stop(msg)

    def check(self, ok: bool, msg: str) -> None:
        if not ok:
            self.fail(msg)

    def path(self, p: str) -> Path:
        return (self.cwd / p) if not os.path.isabs(p) else Path(p)

    def need(self, p: str, what: str) -> Path:
        path = self.path(p)
        self.check(path.exists(), f"{what} '{p}' does not exist")
        self.log["files"].append(str(path))
        return path

    def opts(self, args: tuple[str, ...], flags: set[str] = frozenset()) -> tuple[dict[str, str], list[str]]:
        """Vivado-style options: ``-name value`` pairs (``flags`` take no value) and positionals."""
        out, pos, i = {}, [], 0
        while i < len(args):
            a = args[i]
            if a.startswith("-") and len(a) > 1 and not a[1].isdigit():
                if a in flags or i + 1 == len(args):
                    out[a] = ""
                else:
                    out[a] = args[i + 1]
                    i += 1
            else:
                pos.append(a)
            i += 1
        return out, pos

    def split(self, s: str) -> list[str]:
        return list(self.tcl.splitlist(s))

    def tcl_list(self, items: list[str]) -> str:
        return self.tcl.call("list", *items) if items else ""

    # ---- running ------------------------------------------------------------------------
    def run(self) -> int:
        text = self.script.read_text()
        for name in sorted(set(re.findall(r"\$(?:::)?env\((\w+)\)", text))):
            value = os.environ.get(name)
            self.check(bool(value), f"the script reads $::env({name}), which is not set")
            self.check(Path(value).is_dir(), f"$::env({name}) = '{value}' is not a directory")
            self.log["env"][name] = value
        try:
            self.tcl.eval(f"source {{{self.script}}}")
        except Exception as e:  # noqa: BLE001 - TclError, or Stop raised inside a command
            if self.exit_code is None or self.failure:
                info = self.tcl.eval("set ::errorInfo") if not self.failure else ""
                where = next((l.strip() for l in info.splitlines() if l.strip().startswith('"')), "")
                self.fail(self.failure or f"Tcl error: {e}" + (f" in {where[:200]}" if where else ""))
        if self.failure:  # a check that failed inside a Tcl ``catch``
            raise Stop(self.failure)
        self.finish()
        self.log["files"] = sorted(set(self.log["files"]))
        return self.exit_code or 0

    def finish(self) -> None:
        """What every run of this kind must have done (so the checks cannot be skipped)."""
        must = {"hls": ["part", "clock", "ip"], "stitched_ip": ["part", "clock", "packaged"],
                "zynq_shell": ["part", "clock", "board_part", "bitstream"]}.get(self.kind, [])
        for what in must:
            self.check(what in self.log["checked"], f"the script never did '{what}'")
        if self.kind == "zynq_shell":
            board = self.tcl.getvar("BOARD")
            self.check(board == self.expect["board"], f"BOARD is '{board}', expected '{self.expect['board']}'")

    def maybe_fail(self) -> None:
        """Fail where the real tool fails on a broken design: before writing what FINN looks for next."""
        if self.kind == os.environ.get("STANDIN_FAIL"):
            self.fail(f"stand-in failure of this {self.kind} run, requested by the test")

    def exit(self, code: str = "0") -> str:
        self.exit_code = int(code or 0)
        raise Stop("exit")

    def dispatch(self, name: str, *args: str) -> str:
        handler = getattr(self, "c_" + name.replace("::", "_"), None)
        if handler is not None:
            return handler(*args) or ""
        if name in ACCEPTED or name.startswith(("set_directive_", "config_")):
            return ""
        if name.startswith("get_"):
            return self.getter(name, args)
        self.fail(f"'{name}' is not a command the stand-in knows; model it in tests/xilinx_standin.py")
        return ""

    # ---- shared ---------------------------------------------------------------------------
    def expect_part(self, part: str) -> None:
        self.check(part == self.expect["part"], f"part '{part}', expected '{self.expect['part']}'")
        self.log["part"] = part
        self.log["checked"].append("part")

    def add_hdl(self, path: Path) -> None:
        if path.suffix not in HDL:
            return
        text = path.read_text(errors="replace")
        for m in re.finditer(r"^\s*module\s+(\w+)(.*?)\);", text, re.M | re.S):
            self.modules[m.group(1)] = m.group(2)
        # memory images the HDL names ($readmemh files, WEIGHT_INIT, THRESHOLDS_PATH prefixes) must be
        # where it says: synthesis resolves a relative one against its own working dir, and a missing
        # one leaves the memory empty with no more than a warning
        for ref in re.findall(r'"([^"\s%]+\.(?:dat|mem|hex))"', text):
            self.check(os.path.isabs(ref), f"{path.name} names memory file '{ref}' by a relative path")
        for ref in re.findall(r'"(/[^"\s]+)"', text):
            there = Path(ref).exists() or any(Path(ref).parent.glob(Path(ref).name + "*"))
            self.check(there, f"{path.name} names '{ref}', and nothing is there")
            self.log["memory_files"].append(ref)

    def c_add_files(self, *args: str) -> str:
        o, pos = self.opts(args, {"-norecurse", "-quiet", "-scan_for_includes", "-tb"})
        if self.tool != "vivado":  # Vitis HLS: add_files SOURCE -cflags "..."
            for src in pos:
                self.need(src, "HLS source")
            for inc in re.findall(r"-I\s*(\S+)", o.get("-cflags", "")):
                self.need(inc, "HLS include directory")
            self.log["hls_sources"] = pos
            return ""
        for item in pos:
            for f in self.split(item):
                path = self.need(f, "add_files: file")
                if "-copy_to" in o:
                    import shutil

                    shutil.copy(path, self.path(o["-copy_to"]))
                self.add_hdl(path)
        return ""

    c_read_verilog = c_add_files
    c_import_files = c_add_files

    # ---- Vitis HLS ----------------------------------------------------------------------
    def c_open_project(self, *args: str) -> str:
        _, pos = self.opts(args, {"-reset"})
        self.hls["project"] = pos[0]
        self.path(pos[0]).mkdir(exist_ok=True)
        return ""

    def c_set_top(self, name: str) -> str:
        sources = " ".join(self.path(s).read_text() for s in self.log.get("hls_sources", []))
        self.check(re.search(rf"\b{re.escape(name)}\s*\(", sources) is not None,
                   f"set_top {name}: no such function in the added sources")
        self.hls["top"] = name
        return ""

    def c_open_solution(self, *args: str) -> str:
        _, pos = self.opts(args, {"-reset"})
        self.hls["solution"] = pos[0]
        return ""

    def c_set_part(self, *args: str) -> str:
        _, pos = self.opts(args)
        self.expect_part(pos[0])
        return ""

    def c_create_clock(self, *args: str) -> str:
        o, _ = self.opts(args)
        period = float(o["-period"])
        self.check(abs(period - self.expect["clock_ns"]) < 1e-9,
                   f"create_clock -period {period}, expected {self.expect['clock_ns']}")
        self.log["clock_ns"] = period
        self.log["checked"].append("clock")
        return ""

    def c_export_design(self, *args: str) -> str:
        o, _ = self.opts(args)
        self.check(o.get("-format") == "ip_catalog", "export_design without -format ip_catalog")
        self.maybe_fail()
        self.check(bool(self.hls["project"] and self.hls["top"]), "export_design before open_project/set_top")
        top = self.hls["top"]
        impl = self.path(self.hls["project"]) / self.hls["solution"] / "impl"
        (impl / "ip").mkdir(parents=True, exist_ok=True)
        (impl / "verilog").mkdir(parents=True, exist_ok=True)
        (impl / "verilog" / f"{top}.v").write_text(f"// stand-in\nmodule {top} (input ap_clk, input ap_rst_n);\n"
                                                   "endmodule\n")
        write_component(impl / "ip", "xilinx.com", "hls", top)
        self.log["outputs"].append(str(impl / "ip"))
        self.log["checked"].append("ip")
        return ""

    # ---- Vivado: project, properties, IP --------------------------------------------------
    def c_create_project(self, *args: str) -> str:
        o, pos = self.opts(args, {"-force", "-in_memory"})
        name, where = pos[0], self.path(pos[1] if len(pos) > 1 else ".")
        where.mkdir(parents=True, exist_ok=True)
        self.project = (name, where.resolve())
        self.expect_part(o.get("-part", ""))
        return name

    def c_current_project(self, *args: str) -> str:
        return self.project[0] if self.project else ""

    def c_current_fileset(self, *args: str) -> str:
        return "sources_1"

    def c_get_param(self, *args: str) -> str:
        return ""

    def c_current_bd_design(self, *args: str) -> str:
        return self.bd_designs[-1] if self.bd_designs else ""

    def c_create_bd_design(self, *args: str) -> str:
        _, pos = self.opts(args)
        self.bd_designs.append(pos[0])
        return pos[0]

    def c_get_ipdefs(self, *args: str) -> str:
        o, pos = self.opts(args, {"-all"})
        if pos:
            return "ipdef:" + pos[0]
        m = re.search(r"NAME\s*==\s*(\w+)", o.get("-filter", ""))
        return f"ipdef:xilinx.com:ip:{m.group(1)}:*" if m else ""

    def getter(self, name: str, args: tuple[str, ...]) -> str:
        o, pos = self.opts(args, {"-quiet", "-hierarchical"})
        if name == "get_files" and "-filter" in o:  # the HDL sources, for all_verilog_srcs.txt
            return self.tcl_list([f for f in self.log["files"] if f.endswith(HDL)])
        if "-of" in o or "-of_objects" in o or "-filter" in o:
            return ""  # queries of the netlist the stand-in does not model: empty collections
        if name in ("get_bd_pins", "get_bd_intf_pins"):
            for p in pos:
                self.pin(p)
        return self.tcl_list(pos)

    def pin(self, p: str) -> None:
        """A pin ``cell/name`` on a cell of this design, and a port of its module if it is RTL."""
        parts = p.strip("/").split("/")
        if len(parts) != 2:
            return
        cell, pin = parts
        self.log["pins"] += 1
        self.check(cell in self.cells, f"pin '{p}' is on cell '{cell}', which the design never created")
        kind, ref = self.cells[cell]
        if "*" in pin:
            return
        if kind == "module":
            self.check(re.search(rf"\b{re.escape(pin)}(_\w+)?\b", self.modules[ref]) is not None,
                       f"pin '{p}': module {ref} has no port '{pin}'")
        elif self.ip_ports.get(cell):
            self.check(pin in self.ip_ports[cell], f"pin '{p}': IP {ref} has no interface '{pin}' "
                                                   f"(it has {', '.join(self.ip_ports[cell])})")

    def c_get_property(self, name: str, obj: str = "", *rest: str) -> str:
        if name == "VLNV" and obj.startswith("ipdef:"):
            return obj[6:].replace("*", "9.9")
        if name == "ip_repo_paths":
            return self.tcl_list(self.repos)
        if name == "BOARD_PART_REPO_PATHS":
            return self.tcl_list(self.board_repos)
        if name == "DIRECTORY" and self.project:
            return str(self.project[1])
        if name == "CONFIG.ADDR_WIDTH":
            return "12"
        if name == "CONFIG.FREQ_HZ":
            return str(round(1e9 / self.expect["clock_ns"]))
        if name == "NAME":
            return obj
        return ""

    def c_set_property(self, *args: str) -> str:
        o, pos = self.opts(args, {"-quiet"})
        if "-dict" in o:
            items = self.split(o["-dict"])
            pairs = list(zip(items[::2], items[1::2]))
            objs = pos
        elif "-name" in o:
            pairs, objs = [(o["-name"], o.get("-value", ""))], [o.get("-objects", "")]
        else:
            pairs, objs = [(pos[0], pos[1])], pos[2:]
        for prop, value in pairs:
            self.prop(prop, value, " ".join(objs))
        return ""

    def prop(self, prop: str, value: str, obj: str) -> None:
        if prop == "ip_repo_paths":
            self.repos = [str(self.need(p, "IP repository")) for p in self.split(value)]
        elif prop == "BOARD_PART_REPO_PATHS":
            self.board_repos = [str(self.need(p, "board repository")) for p in self.split(value)]
        elif prop == "board_part":
            self.board_part(value)
        elif prop == "CONFIG.FREQ_HZ" and obj.strip("/ ") == "ap_clk":
            hz = round(1e9 / self.expect["clock_ns"])
            self.check(int(float(value)) == hz, f"ap_clk at {value} Hz, expected {hz}")
            self.log["freq_hz"] = int(float(value))
            self.log["checked"].append("clock")
        elif prop == "CONFIG.CLKOUT1_REQUESTED_OUT_FREQ":
            mhz = int(1000 / self.expect["clock_ns"])
            self.check(float(value) == mhz, f"clock wizard asked for {value} MHz, expected {mhz}")
            self.log["clock_mhz"] = float(value)
            self.log["checked"].append("clock")
        elif prop == "top":
            self.top = value
        elif prop == "name" and obj:
            self.ports.discard(obj)
            self.ports.add(value)

    def board_part(self, value: str) -> None:
        vendor, name, _, version = value.split(":")
        self.check(value == self.expect["board_part"], f"board part {value}, expected {self.expect['board_part']}")
        found = [str(x) for r in self.board_repos for x in Path(r).rglob("board.xml")
                 if re.search(rf'vendor="{re.escape(vendor)}"', x.read_text(errors="replace"))
                 and re.search(rf'\bname="{re.escape(name)}"', x.read_text(errors="replace"))]
        self.check(bool(found), f"board part {value}: no board.xml for it in {self.board_repos}")
        self.log["board_part"] = value
        self.log["board_file"] = found[0]
        self.log["checked"].append("board_part")

    def c_update_ip_catalog(self, *args: str) -> str:
        for r in self.repos:
            self.need(r, "IP repository")
        return ""

    def c_create_bd_cell(self, *args: str) -> str:
        o, pos = self.opts(args)
        name, kind = pos[-1], o.get("-type")
        if kind == "module":
            ref = o["-reference"]
            self.check(ref in self.modules, f"create_bd_cell -reference {ref}: no added HDL file defines module {ref}")
            self.cells[name] = ("module", ref)
            self.log["module_cells"].append([ref, name])
        elif kind == "ip":
            vlnv = o["-vlnv"]
            vendor, library = vlnv.split(":")[:2]
            if not (vendor == "xilinx.com" and library == "ip"):  # else Vivado's own catalog
                found = [c for r in self.repos for c in Path(r).rglob("component.xml") if component_vlnv(c) == vlnv]
                self.check(bool(found), f"create_bd_cell -vlnv {vlnv}: in none of the IP repositories {self.repos}")
                self.ip_ports[name] = re.findall(r"<spirit:port><spirit:name>([^<]*)<", found[0].read_text())
            self.cells[name] = ("ip", vlnv)
            self.log["ip_cells"].append([vlnv, name])
        else:
            self.fail(f"create_bd_cell -type {kind} is not modelled")
        return name

    def c_make_bd_pins_external(self, *args: str) -> str:
        for p in args:
            if not p.startswith("-"):
                self.ports.add(p.strip("/").split("/")[-1] + "_0")
        return ""

    c_make_bd_intf_pins_external = c_make_bd_pins_external

    def c_make_wrapper(self, *args: str) -> str:
        o, _ = self.opts(args, {"-top", "-import"})
        bd = Path(self.split(o["-files"])[0]).stem
        self.check(bd in self.bd_designs, f"make_wrapper for block design '{bd}', which was never created")
        name, where = self.project
        wrapper = where / f"{name}.srcs" / "sources_1" / "bd" / bd / "hdl" / f"{bd}_wrapper.v"
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(f"// stand-in\nmodule {bd}_wrapper (input ap_clk);\nendmodule\n")
        self.log["outputs"].append(str(wrapper))
        return ""

    def c_launch_runs(self, *args: str) -> str:
        o, pos = self.opts(args)
        runs = [r for p in pos for r in self.split(p)]
        if "impl_1" in runs and o.get("-to_step") == "write_bitstream":
            self.maybe_fail()
            self.check(self.top != "", "launch_runs impl_1 before a top module was set")
            self.check(bool(self.cells), "launch_runs on an empty block design")
            name, where = self.project
            bit = where / f"{name}.runs" / "impl_1" / f"{self.top}.bit"
            bit.parent.mkdir(parents=True, exist_ok=True)
            bit.write_bytes(b"stand-in bitstream\n")
            for bd in self.bd_designs:
                hwh = where / f"{name}.gen" / "sources_1" / "bd" / bd / "hw_handoff" / f"{bd}.hwh"
                hwh.parent.mkdir(parents=True, exist_ok=True)
                cells = "".join(f'  <MODULE INSTANCE="{c}" VLNV="{ref}" KIND="{k}"/>\n'
                                for c, (k, ref) in sorted(self.cells.items()))
                hwh.write_text(f'<?xml version="1.0"?>\n<!-- stand-in -->\n<EDKSYSTEM>\n<MODULES>\n{cells}'
                               "</MODULES>\n</EDKSYSTEM>\n")
                self.log["outputs"].append(str(hwh))
            self.log["outputs"].append(str(bit))
            self.log["checked"].append("bitstream")
        return ""

    def c_report_utilization(self, *args: str) -> str:
        o, _ = self.opts(args)
        if "-file" in o:
            self.path(o["-file"]).write_text("<!-- stand-in utilization report -->\n")
        return ""

    # ---- Vivado: IP packager ---------------------------------------------------------------
    def c_ipx_package_project(self, *args: str) -> str:
        o, _ = self.opts(args, {"-import_files", "-generated_files", "-force"})
        self.maybe_fail()
        root = self.path(o["-root_dir"])
        root.mkdir(parents=True, exist_ok=True)
        write_component(root, o["-vendor"], o["-library"], o["-module"], sorted(self.ports))
        self.log["outputs"].append(str(root / "component.xml"))
        self.log["checked"].append("packaged")
        return ""

    def c_ipx_current_core(self, *args: str) -> str:
        return "core"

    c_ipx_find_open_core = c_ipx_current_core

    def c_ipx_add_file(self, path: str, *rest: str) -> str:
        self.need(path, "ipx::add_file: file")
        return "file"

    def c_ipx_add_file_group(self, *args: str) -> str:
        return "file_group"

    def c_ipx_get_file_groups(self, *args: str) -> str:
        return ""

    c_ipx_get_files = c_ipx_get_file_groups
    c_ipx_get_bus_parameters = c_ipx_get_file_groups
    c_ipx_get_bus_interfaces = c_ipx_get_file_groups
    c_ipx_get_address_spaces = c_ipx_get_file_groups


def write_component(root: Path, vendor: str, library: str, name: str, ports: list[str] = ()) -> None:
    ports_xml = "".join(f"    <spirit:port><spirit:name>{p}</spirit:name></spirit:port>\n" for p in ports)
    (root / "component.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<!-- stand-in -->\n<spirit:component>\n'
        f"  <spirit:vendor>{vendor}</spirit:vendor>\n  <spirit:library>{library}</spirit:library>\n"
        f"  <spirit:name>{name}</spirit:name>\n  <spirit:version>1.0</spirit:version>\n"
        f"  <spirit:ports>\n{ports_xml}  </spirit:ports>\n</spirit:component>\n")


def component_vlnv(path: Path) -> str:
    text = path.read_text(errors="replace")
    fields = [re.search(rf"<spirit:{f}>([^<]*)</spirit:{f}>", text) for f in ("vendor", "library", "name", "version")]
    return ":".join(m.group(1) if m else "?" for m in fields)


def script_of(tool: str, argv: list[str]) -> Path:
    """The Tcl script, from the command lines FINN uses (finn/util/hls.py, create_stitched_ip.py,
    make_zynq_proj.py): ``vivado -mode batch -source X``, ``vitis_hls X`` (or ``-f X``),
    ``vitis-run --mode hls --tcl X``."""
    if tool == "vivado":
        assert argv[argv.index("-mode") + 1] == "batch", "vivado not in batch mode"
        return Path(argv[argv.index("-source") + 1])
    if tool == "vitis-run":
        assert argv[argv.index("--mode") + 1] == "hls", "vitis-run without --mode hls"
        return Path(argv[argv.index("--tcl") + 1])
    return Path(argv[argv.index("-f") + 1] if "-f" in argv else argv[-1])


def main(argv: list[str]) -> int:
    tool, args = argv[0], argv[1:]
    logname = "vivado.log" if tool == "vivado" else "vitis_hls.log"
    record: dict = {"tool": tool, "argv": args, "cwd": os.getcwd()}
    try:
        script = script_of(tool, args)
        if not script.is_absolute():
            script = Path.cwd() / script
        if not script.is_file():
            raise Stop(f"script '{script}' does not exist")
        t = Tool(tool, script, json.loads(os.environ["STANDIN_EXPECT"]))
        record = t.log
        code = t.run()
        record["ok"] = True
        message = f"stand-in {tool}: {script.name}: all checks passed"
    except ImportError as e:
        code, record["ok"] = 1, False
        record["error"] = message = f"ERROR: [Stand-in 1-2] {tool} needs Python's tkinter for its Tcl interpreter ({e})"
    except (Stop, AssertionError, ValueError, KeyError, IndexError, OSError) as e:
        code, record["ok"] = 1, False
        record["error"] = str(e)
        message = f"ERROR: [Stand-in 1-1] {tool}: {e}"  # the form of Vivado's own error lines
    Path(logname).write_text(message + "\n")
    with open(os.environ["STANDIN_LOG"], "a") as f:
        f.write(json.dumps(record) + "\n")
    print(message, file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
