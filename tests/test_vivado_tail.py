"""The Vivado tail of ``metabnn build``, driven through stand-in Xilinx tools.

No Vivado runs here, so ``xilinx_standin.py`` plays ``vivado``, ``vitis_hls`` and ``vitis-run``:
it executes every Tcl script FINN's Zynq build hands it in a real Tcl interpreter and checks it
(variables set, files present, RTL module references, IP, part, clock, board; the module's
docstring has the list), then writes the outputs FINN reads next. The build itself, FINN's
whole Zynq flow and metabnn's handling of it are real.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from metabnn.errors import MetabnnError

STANDIN = Path(__file__).with_name("xilinx_standin.py")
PYNQ_Z2 = {"part": "xc7z020clg400-1", "board": "Pynq-Z2", "board_part": "tul.com.tw:pynq-z2:part0:1.0"}


def fake_xilinx(root: Path, version: str = "2024.2", hls: bool = True, deps: bool = True) -> dict[str, str]:
    """A Xilinx install laid out as AMD's installer does, its tools the stand-ins, and FINN's
    sources (finn-hlslib, Pynq-Z2 board files); returns the variables a user would set."""
    year = int(version.split(".")[0])
    if year >= 2025:  # <X>/<version>/Vivado, Vitis HLS inside <X>/<version>/Vitis as vitis-run
        vivado, hls_dir, hls_tool = root / version / "Vivado", root / version / "Vitis", "vitis-run"
    else:
        vivado, hls_dir, hls_tool = root / "Vivado" / version, root / "Vitis_HLS" / version, "vitis_hls"
    tools = [(vivado, "vivado")] + ([(hls_dir, hls_tool)] if hls else [])
    for where, tool in tools:
        (where / "bin").mkdir(parents=True, exist_ok=True)
        (where / "bin" / tool).write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" {tool} "$@"\n')
        (where / "bin" / tool).chmod(0o755)
    finn_deps = root / "finn_deps"
    if deps:
        (finn_deps / "finn-hlslib").mkdir(parents=True)
        (finn_deps / "finn-hlslib" / "bnn-library.h").write_text("// stand-in\n")
        (finn_deps / "attention-hlslib").mkdir()
        board = finn_deps / "board_files" / "pynq-z2" / "A.0"
        board.mkdir(parents=True)
        (board / "board.xml").write_text('<board schema_version="2.1" vendor="tul.com.tw" name="pynq-z2">'
                                         "<file_version>1.0</file_version></board>\n")
    return {"XILINX_VIVADO": str(vivado), "FINN_DEPS": str(finn_deps)}


@pytest.fixture
def xilinx(tmp_path, monkeypatch):
    """The fake install in the environment (not on PATH: the build must find the tools itself)."""
    for var in ("XILINX_HLS", "XILINX_VITIS", "FINN_RTLLIB", "FINN_CUSTOM_HLS", "STANDIN_FAIL"):
        monkeypatch.delenv(var, raising=False)
    env = fake_xilinx(tmp_path / "Xilinx")
    env["STANDIN_LOG"] = str(tmp_path / "standin.jsonl")
    env["STANDIN_EXPECT"] = json.dumps({**PYNQ_Z2, "clock_ns": 8.0})
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def build_args(export: Path, out: Path) -> list[str]:
    return ["build", str(export), "--board", "pynq-z2", "--target-fps", "50000", "--clock-ns", "8", "--out", str(out),
            "--verify-limit", "50"]


def runs(log: str) -> list[dict]:
    return [json.loads(line) for line in Path(log).read_text().splitlines()]


def node_names(path: Path, op_prefix: str) -> list[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type.startswith(op_prefix)]


def graph_attrs(path: Path, op_prefix: str, attr: str) -> list[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return [a.s.decode() for n in model.graph.node if n.op_type.startswith(op_prefix)
            for a in n.attribute if a.name == attr]


# ---- the whole tail, through FINN, with tools that check everything they are given -------------

@pytest.mark.slow
def test_vivado_tail_runs_to_a_bitstream(tiny_export, tmp_path, xilinx):
    out = tmp_path / "b"
    proc = run_cli(*build_args(tiny_export, out))
    assert "Vivado 2024.2 ran" in proc.stdout, proc.stdout + proc.stderr
    records = runs(xilinx["STANDIN_LOG"])
    assert records and all(r["ok"] for r in records), [r.get("error") for r in records]
    kinds = [r["kind"] for r in records]
    sdps = node_names(out / "intermediate_models" / "zynq_build.onnx", "StreamingDataflowPartition")
    # Vitis HLS for the two DMA engines, one stitched IP per dataflow partition, one Zynq shell, in that order
    assert kinds.count("hls") == 2 and kinds.count("stitched_ip") == len(sdps) >= 3 and kinds[-1] == "zynq_shell"
    assert {r["tool"] for r in records if r["kind"] == "hls"} == {"vitis_hls"}  # 2024.2: not vitis-run
    assert all(r["part"] == PYNQ_Z2["part"] for r in records)
    assert all(r["clock_ns"] == 8.0 for r in records if r["kind"] == "hls")
    assert all(r["freq_hz"] == 125_000_000 for r in records if r["kind"] == "stitched_ip")
    shell = records[-1]
    assert shell["clock_mhz"] == 125 and shell["board_part"] == PYNQ_Z2["board_part"]
    assert shell["board_file"].startswith(xilinx["FINN_DEPS"])
    # the variables only FINN's CLI used to set, each read by some script and pointing into finn-plus
    import finn

    env_read = {k: v for r in records for k, v in r["env"].items()}
    assert set(env_read) == {"FINN_RTLLIB", "FINN_CUSTOM_HLS"}
    assert all(Path(v).is_relative_to(Path(finn.__file__).parent) for v in env_read.values())
    # metabnn's RTL MVAU enters the block design as a module reference to the HDL in BUILD_DIR,
    # its weight memory image included; the stitched partitions as IP in the shell
    tops = graph_attrs(out / "intermediate_models" / "hw_codegen.onnx", "MVAUBinary_rtl", "gen_top_module")
    referenced = {ref for r in records for ref, _ in r["module_cells"]}
    assert len(tops) == 3 and set(tops) <= referenced
    memories = {m for r in records for m in r["memory_files"]}
    assert {str(out / "hw_codegen" / t / "memblock.dat") for t in tops} <= memories
    assert {f"xilinx_finn:finn:{sdp}:1.0" for sdp in sdps} <= {v for v, _ in shell["ip_cells"]}
    assert sum(r["pins"] for r in records) > 50
    # the outputs: in deploy/ and listed in its manifest, the projects and logs in BUILD_DIR/vivado
    bitfile = out / "deploy" / "bitfile"
    assert sorted(p.name for p in bitfile.iterdir()) == ["finn-accel.bit", "finn-accel.hwh"]
    assert (bitfile / "finn-accel.bit").read_bytes() == b"stand-in bitstream\n"
    report = json.loads((out / "report.json").read_text())
    assert report["vivado"]["status"] == "done" and report["vivado"]["version"] == "2024.2"
    assert report["vivado"]["hls"] == str(Path(xilinx["XILINX_VIVADO"]).parents[1] / "Vitis_HLS/2024.2/bin/vitis_hls")
    assert (out / report["vivado"]["project"] / "vivado.log").is_file()
    assert [s["name"] for s in report["steps"]].count("vivado") == 1
    status = run_cli("status", str(out / "deploy"), "--json")
    assert "bitfile/finn-accel.bit" in json.loads((out / "deploy" / "manifest.json").read_text())["files"]
    assert status.returncode == 0
    # FINN's chatter and the tools' output went to build.log, the console got metabnn's lines only
    console = [l for l in proc.stderr.replace("\r", "\n").splitlines() if l.strip()]
    assert all(l.startswith("[build] ") or l.lstrip().startswith("agreement") for l in console), console
    assert "[build] vivado: FINN's Zynq build with Vivado 2024.2 and vitis_hls" in proc.stderr
    assert "all checks passed" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_vivado_failure_keeps_build_and_logs_and_reruns(tiny_export, tmp_path, xilinx, monkeypatch):
    """A stitched IP that Vivado cannot package (FINN only notices in the Zynq shell, later): one line
    naming the log that says why; the complete build and the Vivado projects stay in BUILD_DIR;
    the same command again redoes only the Vivado steps."""
    out = tmp_path / "b"
    monkeypatch.setenv("STANDIN_FAIL", "stitched_ip")
    proc = run_cli(*build_args(tiny_export, out), check_rc=2)
    errors = [l for l in proc.stderr.splitlines() if l.startswith("metabnn:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = errors[0]
    assert line.startswith("metabnn: error: the Vivado steps failed (FINNSynthesisError: ")
    named = Path(line.split("; see '")[1].split("'")[0])
    assert named.name == "vivado.log" and named.parent.name.startswith("vivado_stitch_proj_")
    assert "ERROR: [Stand-in 1-1] vivado: stand-in failure of this stitched_ip run" in named.read_text()
    assert named.is_relative_to(out / "vivado") and "run the same command again" in line
    # everything but the bitstream is there, and usable
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".b", "b"))) == ["b"]
    assert not (out / "deploy" / "bitfile").exists() and (out / "deploy" / "manifest.json").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["vivado"]["status"] == "failed" and report["vivado"]["log"] == str(named.relative_to(out))
    assert "Traceback" in (out / "build.log").read_text()  # for a bug report
    run_cli("status", str(out / "deploy"))
    # one Vivado tail per BUILD_DIR at a time
    monkeypatch.delenv("STANDIN_FAIL")
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        busy = run_cli(*build_args(tiny_export, out), check_rc=2)
        assert busy.stderr.strip().endswith("is running the Vivado steps in "
                                            f"'{out}' right now; wait for it to finish")
    finally:
        os.close(fd)
    first = len(runs(xilinx["STANDIN_LOG"]))
    again = run_cli(*build_args(tiny_export, out))
    assert "Vivado 2024.2 ran" in again.stdout
    assert "[build] qonnx_to_finn" not in again.stderr  # the rest of the build was kept, not redone
    assert all(r["ok"] for r in runs(xilinx["STANDIN_LOG"])[first:])
    assert (out / "deploy" / "bitfile" / "finn-accel.bit").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["vivado"]["status"] == "done" and [s["name"] for s in report["steps"]].count("vivado") == 1
    done = run_cli(*build_args(tiny_export, out), check_rc=2)
    assert "already holds a build" in done.stderr


@pytest.mark.slow
def test_interrupted_vivado_tail_says_what_is_kept(tiny_export, tmp_path, xilinx, monkeypatch):
    from metabnn.hw import vivado
    from metabnn.hw.build import build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vivado, "run_tail", interrupted)
    said: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        build(tiny_export, tmp_path / "b", "pynq-z2", 50000, clock_ns=8, progress=False, verify_limit=50,
              on_interrupt=said.append)
    assert said and "holds the complete build without a bitstream" in said[-1]
    assert "run the same command again" in said[-1]
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["vivado"]["status"] == "interrupted"


# ---- finding the tools, before any work --------------------------------------------------------

def test_missing_vitis_hls_is_one_line_before_any_work(tmp_path, monkeypatch):
    env = fake_xilinx(tmp_path / "Xilinx", hls=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for var in ("XILINX_HLS", "XILINX_VITIS"):
        monkeypatch.delenv(var, raising=False)
    proc = run_cli("build", str(tmp_path / "no-export"), "--board", "pynq-z2", "--target-fps", "1000",
                   "--out", str(tmp_path / "b"), check_rc=2)
    line = proc.stderr.strip()
    assert "\n" not in line and line.startswith("metabnn: error: FINN's DMA engines are HLS-only")
    assert "'vitis_hls'" in line and str(tmp_path / "Xilinx" / "Vitis_HLS" / "2024.2" / "bin") in line
    assert not (tmp_path / "b").exists()


def test_tools_found_beside_vivado(tmp_path):
    from metabnn.hw import vivado

    env = fake_xilinx(tmp_path / "X")
    tools = vivado.find_tools({**env, "PATH": "/usr/bin"})
    assert tools.hls == tmp_path / "X" / "Vitis_HLS" / "2024.2" / "bin" / "vitis_hls"
    assert tools.env["PATH"].split(os.pathsep)[:2] == [f"{env['XILINX_VIVADO']}/bin", str(tools.hls.parent)]
    assert Path(tools.env["FINN_RTLLIB"], "memstream").is_dir() and Path(tools.env["FINN_CUSTOM_HLS"]).is_dir()
    assert tools.env["FINN_DEPS"] == env["FINN_DEPS"] and tools.env["XILINX_LOCAL_USER_DATA"] == "no"
    # 2025.1 and later: one folder per version, and FINN calls vitis-run
    new = fake_xilinx(tmp_path / "Y", version="2025.1")
    assert vivado.find_tools(new).hls == tmp_path / "Y" / "2025.1" / "Vitis" / "bin" / "vitis-run"
    p = vivado.plan(new)
    assert p["vivado"] and "problem" not in p and "2022.2 and 2024.2" in p["note"]
    # XILINX_HLS (what Vitis HLS's settings64.sh sets) wins over the layout
    other = tmp_path / "elsewhere"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "vitis_hls").write_text("#!/bin/sh\n")
    (other / "bin" / "vitis_hls").chmod(0o755)
    assert vivado.find_tools({**env, "XILINX_HLS": str(other)}).hls == other / "bin" / "vitis_hls"


def test_tool_problems_are_one_line(tmp_path):
    from metabnn.hw import vivado

    unversioned = tmp_path / "opt" / "vivado"
    (unversioned / "bin").mkdir(parents=True)
    (unversioned / "bin" / "vivado").write_text("")
    p = vivado.plan({"XILINX_VIVADO": str(unversioned)})
    assert p["vivado"] and "cannot tell which Vivado" in p["problem"] and "2024.2" in p["problem"]
    env = fake_xilinx(tmp_path / "X", deps=False)
    p = vivado.plan(env)
    assert "finn-hlslib" in p["problem"] and "docker/fetch_finn_deps.py" in p["problem"]
    env = fake_xilinx(tmp_path / "Y")
    p = vivado.plan(env)
    assert "problem" not in p and vivado.board_problem(p, "Pynq-Z2") is None
    assert "the Pynq-Z1 board files" in vivado.board_problem(p, "Pynq-Z1")
    assert vivado.board_problem(p, "ZCU104") is None  # its board files ship with Vivado
    for msg in (vivado.plan({"XILINX_VIVADO": str(unversioned)})["problem"], vivado.board_problem(p, "Pynq-Z1")):
        assert "\n" not in msg


def test_pending_bitstream_decides_what_a_rerun_does(tmp_path, monkeypatch):
    """The same command on a BUILD_DIR without its bitstream redoes the Vivado steps; anything else is
    refused as before (check_out_dir), or explained when Vivado could never run on it."""
    from types import SimpleNamespace

    import metabnn.hw.build as b
    from metabnn.hw.config import make_config

    out = tmp_path / "b"
    (out / "deploy").mkdir(parents=True)
    monkeypatch.setattr(b, "read_export", lambda d: SimpleNamespace(manifest_sha256="e1"))

    def state(manifest=None, report=None, config=None, listed=False):
        files = {"bitfile/finn-accel.bit": "x"} if listed else {}
        for name, obj in (("manifest.json", {"artifact": "metabnn-build", "board": "pynq-z2", "target_fps": 50000.0,
                                              "clock_ns": 8.0, "source": {"export_manifest_sha256": "e1"},
                                              **(manifest or {})}),
                          ("report.json", report if report is not None else {"fits": True}),
                          ("build_config.json", {"work_dir": str(out.resolve()), **(config or {})}),
                          ("deploy/manifest.json", {"files": files})):
            (out / name).write_text(json.dumps(obj))
        return b.pending_bitstream(make_config(tmp_path / "e", out, out, "pynq-z2", 50000, 8, None, False),
                                   tmp_path / "e")

    assert state() is True
    assert state(manifest={"target_fps": 1000.0}) is False and state(manifest={"board": "pynq-z1"}) is False
    assert state(manifest={"source": {"export_manifest_sha256": "other"}}) is False
    assert state(report=[1, 2]) is False
    (out / "deploy" / "bitfile").mkdir()
    (out / "deploy" / "bitfile" / "finn-accel.bit").write_bytes(b"bit")
    assert state() is True  # copied but never listed: the tail did not finish
    assert state(listed=True) is False
    (out / "deploy" / "bitfile" / "finn-accel.bit").unlink()
    with pytest.raises(MetabnnError, match="--oversize build that does not fit"):
        state(report={"fits": False})
    with pytest.raises(MetabnnError, match="has moved since"):
        state(config={"work_dir": "/elsewhere/b"})


# ---- the stand-ins refuse what Vivado would (so the test above can fail) ------------------------

SCRIPTS = {  # (file name, command line, a script that passes); {dir}: the test's directory
    "stitched_ip": ("make_project.tcl", ["vivado", "-mode", "batch", "-source", "make_project.tcl"], """
create_project p {dir}/proj -part xc7z020clg400-1
set_property ip_repo_paths [list $::env(STANDIN_TEST_DIR)] [current_project]
create_bd_design "top"
add_files -norecurse {dir}/mvau.v
create_bd_cell -type module -reference mvau mvau_0
connect_bd_net [get_bd_pins mvau_0/ap_clk] [get_bd_pins mvau_0/ap_rst_n]
set_property CONFIG.FREQ_HZ 100000000 [get_bd_ports /ap_clk]
ipx::package_project -root_dir {dir}/proj/ip -vendor v -library l -module top -import_files
"""),
    "hls": ("hls_syn_top.tcl", ["vitis-run", "--mode", "hls", "--tcl", "{dir}/hls_syn_top.tcl"], """
set config_customhlsdir "$::env(STANDIN_TEST_DIR)"
open_project project_top
add_files {dir}/top.cpp -cflags "-std=c++14 -I$config_customhlsdir"
set_top top
open_solution sol1
set_part xc7z020clg400-1
config_compile -pipeline_style flp
create_clock -period 10.0 -name default
csynth_design
export_design -format ip_catalog
exit 0
"""),
    "zynq_shell": ("ip_config.tcl", ["vivado", "-mode", "batch", "-source", "{dir}/ip_config.tcl"], """
set BOARD Pynq-Z2
create_project finn_zynq_link ./ -part xc7z020clg400-1
set_property BOARD_PART_REPO_PATHS [list {dir}/boards] [current_project]
set_property board_part tul.com.tw:pynq-z2:part0:1.0 [current_project]
create_bd_design "top"
create_bd_cell -type ip -vlnv [get_property VLNV [get_ipdefs -filter {NAME == clk_wiz}]] clk_wiz_0
set_property -dict [list CONFIG.CLKOUT1_REQUESTED_OUT_FREQ 100] [get_bd_cells clk_wiz_0]
set_property top top_wrapper [get_filesets sources_1]
launch_runs -jobs 2 -to_step write_bitstream impl_1
"""),
}


@pytest.mark.parametrize("kind, change, error", [
    ("stitched_ip", None, None),
    ("stitched_ip", ("$::env(STANDIN_TEST_DIR)", "$::env(STANDIN_UNSET)"),
     "reads $::env(STANDIN_UNSET), which is not set"),
    ("stitched_ip", ("xc7z020clg400-1", "xc7z010clg400-1"), "part 'xc7z010clg400-1', expected 'xc7z020clg400-1'"),
    ("stitched_ip", ("100000000", "50000000"), "ap_clk at 50000000 Hz, expected 100000000"),
    ("stitched_ip", ("-reference mvau", "-reference mvau_typo"), "no added HDL file defines module mvau_typo"),
    ("stitched_ip", ("mvau_0/ap_rst_n", "mvau_0/ap_reset"), "module mvau has no port 'ap_reset'"),
    ("stitched_ip", ("mvau.v", "mvau.v.missing"), "mvau.v.missing' does not exist"),
    ("stitched_ip", ("w.dat", "gone.dat"), "names memory file 'gone.dat' by a relative path"),
    ("stitched_ip", ("create_bd_design", "create_bd_design_typo"), "'create_bd_design_typo' is not a command"),
    ("stitched_ip", ("-module top", "-module top\nset x $undefined_variable"), 'can\'t read "undefined_variable"'),
    ("stitched_ip", ("create_bd_cell -type module -reference mvau mvau_0",  # a Tcl catch hides nothing
                     "catch {create_bd_cell -type module -reference nope n}\n"
                     "create_bd_cell -type module -reference mvau mvau_0"), "no added HDL file defines module nope"),
    ("stitched_ip", ("set_property CONFIG.FREQ_HZ 100000000 [get_bd_ports /ap_clk]", ""), "never did 'clock'"),
    ("hls", None, None),
    ("hls", ("-period 10.0", "-period 5.0"), "create_clock -period 5.0, expected 10.0"),
    ("hls", ("-I$config_customhlsdir", "-I/nonexistent/hlslib"), "include directory '/nonexistent/hlslib' does not"),
    ("hls", ("set_top top", "set_top other"), "set_top other: no such function"),
    ("zynq_shell", None, None),
    ("zynq_shell", ("pynq-z2:part0", "pynq-z1:part0"), "board part tul.com.tw:pynq-z1:part0:1.0, expected"),
    ("zynq_shell", ("Pynq-Z2", "Pynq-Z1"), "BOARD is 'Pynq-Z1', expected 'Pynq-Z2'"),
    ("zynq_shell", ("FREQ 100]", "FREQ 50]"), "clock wizard asked for 50 MHz, expected 100"),
    ("zynq_shell", ("{dir}/boards", "{dir}/proj"), "no board.xml for it"),
    ("zynq_shell", ("set_property top", "create_bd_cell -type ip -vlnv xilinx_finn:finn:sdp:1.0 sdp\nset_property top"),
     "create_bd_cell -vlnv xilinx_finn:finn:sdp:1.0: in none of the IP repositories"),
])
def test_standin_refuses_broken_tcl(tmp_path, kind, change, error):
    name, argv, tcl = SCRIPTS[kind]
    (tmp_path / "w.dat").write_text("0\n")
    (tmp_path / "mvau.v").write_text('module mvau (input ap_clk, input ap_rst_n);\n  localparam F = "{dir}/w.dat";\n'
                                     "endmodule\n".replace("{dir}", str(tmp_path)))
    if change and change[0] == "w.dat":  # a memory file named by a relative path
        (tmp_path / "mvau.v").write_text('module mvau (input ap_clk);\n  localparam F = "gone.dat";\nendmodule\n')
        change = None
    (tmp_path / "top.cpp").write_text("void top(int x) {}\n")
    (tmp_path / "boards" / "pynq-z2" / "A.0").mkdir(parents=True)
    (tmp_path / "boards" / "pynq-z2" / "A.0" / "board.xml").write_text('<board vendor="tul.com.tw" name="pynq-z2"/>')
    (tmp_path / "proj").mkdir()
    tcl = tcl.replace(*change) if change else tcl
    (tmp_path / name).write_text(tcl.replace("{dir}", str(tmp_path)))
    env = dict(os.environ, STANDIN_TEST_DIR=str(tmp_path), STANDIN_LOG=str(tmp_path / "log.jsonl"),
               STANDIN_EXPECT=json.dumps({**PYNQ_Z2, "clock_ns": 10.0}))
    env.pop("STANDIN_UNSET", None)
    proc = subprocess.run([sys.executable, str(STANDIN), *(a.replace("{dir}", str(tmp_path)) for a in argv)],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    record = json.loads((tmp_path / "log.jsonl").read_text())
    tool_log = tmp_path / ("vivado.log" if argv[0] == "vivado" else "vitis_hls.log")
    if error is None:
        assert proc.returncode == 0 and record["ok"] and record["kind"] == kind, proc.stderr
        assert {"stitched_ip": (tmp_path / "proj" / "ip" / "component.xml"),
                "hls": tmp_path / "project_top" / "sol1" / "impl" / "ip" / "component.xml",
                "zynq_shell": tmp_path / "finn_zynq_link.runs" / "impl_1" / "top_wrapper.bit"}[kind].is_file()
        if kind == "stitched_ip":
            assert record["module_cells"] == [["mvau", "mvau_0"]]
            assert record["memory_files"] == [str(tmp_path / "w.dat")]
    else:
        assert proc.returncode == 1 and not record["ok"]
        assert error in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert tool_log.read_text().startswith("ERROR: [Stand-in 1-1]")


# ---- the image and the install recipe --------------------------------------------------------

def test_one_install_script_for_make_ci_and_docker():
    dockerfile = (REPO / "Dockerfile").read_text()
    base = next(l.split()[1] for l in dockerfile.splitlines() if l.startswith("FROM "))
    assert base.startswith("python:3.") and int(base.split(":")[1].split(".")[1].split("-")[0]) >= 11
    assert "bookworm" in base  # the Debian that still has libtinfo5/libncurses5 for Vivado
    assert "libtinfo5" in dockerfile and "libncurses5" in dockerfile
    assert "scripts/install-stack.sh /opt/venv" in dockerfile and "pip install" not in dockerfile
    assert "METABNN_TORCH_INDEX_URL" in dockerfile and "download.pytorch.org/whl/cpu" in dockerfile
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("$(STAMP):")[1].split("\n\n")[0]
    assert "scripts/install-stack.sh --editable --tests $(VENV)" in recipe and "pip install" not in recipe


def test_install_script_refuses_old_python_in_one_line(tmp_path):
    fake = tmp_path / "python3.10"
    fake.write_text('#!/bin/sh\ncase "$2" in *exit*) exit 1;; *) echo 3.10.12;; esac\n')
    fake.chmod(0o755)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "install-stack.sh"), str(tmp_path / "venv")],
                          env=dict(os.environ, PYTHON=str(fake)), capture_output=True, text=True)
    assert proc.returncode == 2 and not (tmp_path / "venv").exists()
    assert proc.stderr.strip() == (f"install-stack: error: metabnn needs Python >= 3.11 ('{fake}' is 3.10.12); "
                                   "set PYTHON=python3.11 (or newer), e.g. make PYTHON=python3.11")
    usage = subprocess.run(["bash", str(REPO / "scripts" / "install-stack.sh")], capture_output=True, text=True)
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1 and "VENV" in usage.stderr
