"""The build's steps, FINN-builder style: named functions over one context, in order.

Each step takes the ``BuildContext`` (config, export, current model, report so far),
transforms the model and records its outputs under the work directory. FINN is imported
inside the steps, after ``finn_env.finn_session`` has set up its environment.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from metabnn.atomic import atomic_write_json
from metabnn.errors import MetabnnError
from metabnn.hw.boards import BOARDS
from metabnn.hw.config import BuildConfig
from metabnn.hw.export_artifact import ExportArtifact


@dataclass
class BuildContext:
    cfg: BuildConfig
    art: ExportArtifact
    model: Any = None  # the qonnx ModelWrapper the steps pass along
    hw_model: Any = None  # generic HW-layer graph (executable in Python)
    folded: Any = None  # specialized + folded graph, before the dataflow partition
    chosen: list = field(default_factory=list)  # folding.Option per HW layer
    layer_names: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print
    console: Any = None  # the user's terminal for progress bars (stdout/stderr go to build.log)
    codegen_moves: dict[str, str] = field(default_factory=dict)  # FINN's code dir -> hw_codegen/<layer>

    def save(self, name: str) -> None:
        d = self.cfg.work_dir / "intermediate_models"
        d.mkdir(parents=True, exist_ok=True)
        self.model.save(str(d / f"{name}.onnx"))


def _tidy(model):
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames, RemoveStaticGraphInputs
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    for t in (InferShapes(), FoldConstants(), GiveUniqueNodeNames(), GiveReadableTensorNames(),
              InferDataTypes(), RemoveStaticGraphInputs()):
        model = model.transform(t)
    return model


def step_qonnx_to_finn(ctx: BuildContext) -> None:
    """Load the export's QONNX graph, take integer pixels, convert Quant nodes to FINN's form."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from metabnn.hw.passes import IntegerPixelInput

    model = cleanup_model(ModelWrapper(str(ctx.art.model_path)))
    model = model.transform(IntegerPixelInput()).transform(ConvertQONNXtoFINN())
    ctx.model = _tidy(model)


def step_streamline(ctx: BuildContext) -> None:
    """Absorb scales, BatchNorm and sign into integer thresholds; bipolar products to XNOR-popcount."""
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.streamline import Streamline
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount

    model = ctx.model.transform(Streamline())
    for t in (ConvertBipolarMatMulToXnorPopcount(), absorb.AbsorbAddIntoMultiThreshold(),
              absorb.AbsorbMulIntoMultiThreshold(), Streamline()):
        model = model.transform(t)
    ctx.model = _tidy(model)


def step_convert_to_hw(ctx: BuildContext) -> None:
    """MVAU (XNOR or integer x bipolar) + standalone runtime-writeable Thresholding per layer."""
    from finn.transformation.fpgadataflow.convert_to_hw.binary_matrix_vector_activation import (
        InferBinaryMatrixVectorActivation)
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (
        InferQuantizedMatrixVectorActivation)
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import InferThresholdingLayer
    from metabnn.hw.passes import (CheckHWMapping, DetachHostTail, RoundThresholdsToAccumulator,
                                   SetRuntimeWriteable, SetTaskParameters)

    model = ctx.model
    # Thresholds first, as their own layers: FINN's MVAU keeps absorbed thresholds in
    # compile-time constants, while Thresholding_rtl can be rewritten per task over AXI-lite.
    for t in (InferThresholdingLayer(), InferBinaryMatrixVectorActivation(),
              InferQuantizedMatrixVectorActivation(), DetachHostTail(), CheckHWMapping(),
              RoundThresholdsToAccumulator(), SetRuntimeWriteable()):
        model = model.transform(t)
    model = _tidy(model)
    n_mvau = sum(n.op_type.startswith("MVAU") for n in model.graph.node)
    if n_mvau != ctx.art.n_layers:
        raise MetabnnError(f"FINN mapped {n_mvau} of the network's {ctx.art.n_layers} linear layers to MVAUs; "
                           "only binary MLPs trained by 'metabnn train' (8-bit or 1-bit input) can be built")
    # FINN derived task 0's thresholds from the QONNX floats; the export's integer ones are
    # exact (float64), so count differences as a cross-check, then use the export's.
    finn_thr = [model.get_initializer(n.input[1]).copy() for n in model.graph.node
                if n.op_type.startswith("Thresholding") and model.find_producer(n.input[0]) is not None]
    model = model.transform(SetTaskParameters(ctx.art, 0))
    ours = [model.get_initializer(n.input[1]) for n in model.graph.node
            if n.op_type.startswith("Thresholding") and model.find_producer(n.input[0]) is not None]
    ctx.report["finn_threshold_crosscheck"] = {
        "thresholds": int(sum(a.size for a in ours)),
        "differ_from_finn_streamlining": int(sum((a != b).sum() for a, b in zip(finn_thr, ours)))}
    ctx.model = model
    ctx.hw_model = model


def step_specialize_layers(ctx: BuildContext) -> None:
    """MVAU -> metabnn's MVAUBinary_rtl (via FINN's MVAU_hls), Thresholding -> Thresholding_rtl."""
    from qonnx.custom_op.registry import getCustomOp

    from finn.transformation.fpgadataflow.minimize_accumulator_width import MinimizeAccumulatorWidth
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from metabnn.hw.custom_op.select import SelectMetabnnMVAU

    model = ctx.model
    for node in model.graph.node:
        if node.op_type == "Thresholding":
            getCustomOp(node).set_nodeattr("preferred_impl_style", "rtl")
    model = model.transform(SpecializeLayers(ctx.cfg.board.part))
    # FINN's binary MVAU exists only as HLS; ours is open RTL that Verilator and yosys can
    # read, with the same attributes, estimates and memory map (DESIGN.md).
    model = model.transform(SelectMetabnnMVAU())
    model = model.transform(MinimizeAccumulatorWidth())
    ctx.model = _tidy(model)


def _fit_error(ctx: BuildContext, layers, chosen, bud) -> MetabnnError:
    from metabnn.hw import folding

    cfg = ctx.cfg
    mhz = cfg.fclk_hz / 1e6
    a = folding.analysis(layers, bud, cfg.max_cycles, cfg.fclk_hz)
    if chosen is None:
        why = (f"{a['max_fps_limited_by']} allows at most {a['max_fps_any_size']:,.0f} images/s, "
               f"the target needs <= {cfg.max_cycles:.0f} cycles")
    else:
        t = a["at_target"]
        why = (f"layer {t['limiting_layer']} is the largest user of {t['resource']}: the design needs "
               f"{t['needs']:.0f} {t['resource']}, the {cfg.board.name} budget is {t['budget']:.0f} "
               f"({folding.UTILIZATION[t['resource']]:.0%} of {cfg.board.capacity()[t['resource']]})")
    if a["best_fit"] is None:
        best_txt = "no folding fits at all"
    else:
        best_txt = f"the highest rate that fits is {a['best_fit_fps']:,.0f} images/s"
        n = a.get("next_faster")
        if n:
            best_txt += (f" (faster needs {n['needs']:.0f} {n['resource']} of {n['budget']:.0f}, "
                         f"mostly {n['limiting_layer']})")
    others = other_boards(ctx)
    return MetabnnError(
        f"{cfg.board.name} cannot run {cfg.target_fps:,.0f} images/s at {mhz:g} MHz: {why}; {best_txt}; "
        f"boards that fit {cfg.target_fps:,.0f} images/s: {', '.join(others) or 'none'} "
        "(lower --target-fps or choose another --board)")


def other_boards(ctx: BuildContext) -> list[str]:
    """Boards on which the target fits (FINN's estimates use each board's part)."""
    from metabnn.hw import folding

    out = []
    for b in BOARDS.values():
        layers = folding.layer_options(ctx.model, b.part)
        chosen = folding.choose(layers, ctx.cfg.max_cycles, folding.budget(b))
        if chosen is not None and folding.fits(chosen, folding.budget(b)):
            out.append(b.name)
    return out


def step_folding(ctx: BuildContext) -> None:
    """Cheapest PE/SIMD/memory style per layer within the cycle budget; error if it cannot fit."""
    from metabnn.hw import folding
    from metabnn.hw.passes import ApplyFolding

    board = ctx.cfg.board
    layers = folding.layer_options(ctx.model, board.part)
    bud = folding.budget(board)
    chosen = folding.choose(layers, ctx.cfg.max_cycles, bud)
    if chosen is None or not folding.fits(chosen, bud):
        err = _fit_error(ctx, layers, chosen, bud)
        if chosen is None or not ctx.cfg.oversize:
            raise err
        from metabnn.hw import vivado

        if vivado.plan()["vivado"]:  # the Vivado tail would fail hours later, in placement
            raise MetabnnError(f"--oversize: the design does not fit the {board.name}, so Vivado cannot place "
                               "it; build without XILINX_VIVADO for 'metabnn sim' and 'metabnn synth', or lower "
                               "--target-fps for a bitstream")
        ctx.log(f"[build] --oversize: {err}; building it anyway for simulation and synthesis only")
    config = {lo.name: dict(o.attrs) for lo, o in zip(layers, chosen)}
    ctx.model = ctx.model.transform(ApplyFolding(config))
    ctx.chosen, ctx.layer_names = chosen, [lo.name for lo in layers]
    ctx.report["folding_search"] = {"candidates": sum(len(lo.options) for lo in layers),
                                    "max_cycles_per_layer": ctx.cfg.max_cycles}
    atomic_write_json(ctx.cfg.work_dir / "folding_config.json", {"Defaults": {}, **config})


def step_estimates(ctx: BuildContext) -> None:
    """Per-layer cycles and resources from FINN's models, FPS, latency and fit on the board."""
    from qonnx.custom_op.registry import getCustomOp

    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from metabnn.hw import folding

    cfg, model = ctx.cfg, ctx.model
    cycles = model.analysis(exp_cycles_per_layer)
    res = model.analysis(lambda m: res_estimation(m, cfg.board.part))
    layers = []
    for node in model.graph.node:
        inst = getCustomOp(node)
        types = inst.get_nodeattr_types()
        r = res[node.name]
        layers.append({"name": node.name, "op_type": node.op_type,
                       "pe": int(inst.get_nodeattr("PE")) if "PE" in types else 1,
                       "simd": int(inst.get_nodeattr("SIMD")) if "SIMD" in types else 1,
                       "ram_style": inst.get_nodeattr("ram_style") if "ram_style" in types else None,
                       "cycles": int(cycles[node.name]), "lut": int(round(r.get("LUT", 0))),
                       "bram": int(round(r.get("BRAM_18K", 0))), "dsp": int(r.get("DSP", 0)),
                       "uram": int(r.get("URAM", 0))})
        if hasattr(inst, "finn_hls_estimates"):  # FINN's MVAU_hls figures beside metabnn's RTL model
            finn = inst.finn_hls_estimates(cfg.board.part)
            layers[-1].update(finn_hls_lut=int(round(finn["lut"])), finn_hls_bram=int(round(finn["bram"])))
    total = {"LUT": sum(l["lut"] for l in layers), "BRAM_18K": sum(l["bram"] for l in layers),
             "DSP": sum(l["dsp"] for l in layers), "URAM": sum(l["uram"] for l in layers)}
    bud = folding.budget(cfg.board)
    slowest = max(l["cycles"] for l in layers)
    ctx.report.update({
        "layers": layers,
        "fps": cfg.fclk_hz / slowest,
        "bottleneck": max(layers, key=lambda l: l["cycles"])["name"],
        "latency_us": sum(l["cycles"] for l in layers) * cfg.clock_ns / 1000.0,
        "resources": total,
        "capacity": cfg.board.capacity(),
        "budget": {k: round(v, 1) for k, v in bud.items()},
        "utilization_limits": folding.UTILIZATION,
        "fits": all(total[k] <= bud[k] for k in total),
        "target_met": cfg.fclk_hz / slowest >= cfg.target_fps,
        "estimate_note": "FINN's cycle model (exp_cycles) for every HW layer; resources from FINN's models, "
                         "except MVAUBinary_rtl: metabnn's model of its RTL, fitted to yosys "
                         "(hw/rtl_resources.py); DMA, FIFOs, width converters and the Zynq shell are covered "
                         "by the utilization limits",
    })


def step_verify_tasks(ctx: BuildContext) -> None:
    """Run the HW-layer graph in FINN's Python mode for every task; compare with the golden model."""
    from tqdm import tqdm

    from metabnn.hw.hw_exec import execute_batched
    from metabnn.hw.passes import SetTaskParameters
    from metabnn.hw.task_params import host_logits

    art, out = ctx.art, []
    verify = art.export_dir / "verify.json"
    torch_checked = {}
    if verify.is_file():
        import json
        torch_checked = {t["task"]: t for t in json.loads(verify.read_text()).get("tasks", [])}
    xnor_out = None
    for k in tqdm(range(art.n_tasks), desc="agreement", unit="task", disable=not ctx.cfg.progress, leave=False,
                  file=ctx.console):
        model = ctx.hw_model.transform(SetTaskParameters(art, k))
        if xnor_out is None:
            from qonnx.custom_op.registry import getCustomOp
            last = [n for n in model.graph.node if n.op_type.startswith("MVAU")][-1]
            xnor_out = bool(getCustomOp(last).get_nodeattr("binaryXnorMode"))
        images, labels = art.test_set(k, ctx.cfg.verify_limit)
        t0 = time.perf_counter()
        pred = host_logits(art, execute_batched(model, images), k, xnor_out).argmax(axis=1)
        ref = art.reference_predict(images, k)
        exp = torch_checked.get(k, {})
        out.append({"task": k, "name": art.task_name(k), "images": int(len(images)),
                    "agreements": int((pred == ref).sum()),
                    "accuracy": 100.0 * float((pred == labels).mean()) if len(images) else 0.0,  # percent
                    "mismatched_images": [int(i) for i in np.flatnonzero(pred != ref)[:10]],
                    "export_reference_vs_pytorch": {"images": exp.get("images"),
                                                    "agreements": exp.get("reference", {}).get("agreements")},
                    "seconds": round(time.perf_counter() - t0, 2)})
    ctx.report["agreement"] = out
    ctx.report["agreement_rule"] = ("HW-layer graph (FINN Python execution) + host affine/argmax vs the export's "
                                    "integer reference, which the export verified equal to PyTorch image by image")
    bad = [t for t in out if t["agreements"] != t["images"]]
    if bad:
        t = bad[0]
        raise MetabnnError(f"the HW graph disagrees with PyTorch on T{t['task'] + 1} ({t['name']}): "
                           f"{t['agreements']}/{t['images']} images agree (first mismatches "
                           f"{t['mismatched_images'][:5]}); nothing was written: please report this bug")


def step_hw_codegen(ctx: BuildContext) -> None:
    """FINN's PrepareIP: filled RTL templates and metabnn's MVAU RTL, memory .dat files."""
    from finn.transformation.fpgadataflow.prepare_ip import PrepareIP

    ctx.model = ctx.model.transform(PrepareIP(ctx.cfg.board.part, ctx.cfg.clock_ns))
    ctx.report["codegen_dirs"] = _copy_codegen(ctx)


def _copy_codegen(ctx: BuildContext) -> dict[str, str]:
    """hw_codegen/<layer>/: FINN's generated code, its paths pointed at the copy in BUILD_DIR."""
    from qonnx.custom_op.registry import getCustomOp

    out = {}
    for node in ctx.model.graph.node:
        src = getCustomOp(node).get_nodeattr("code_gen_dir_ipgen")
        if src and Path(src).is_dir():
            dst = ctx.cfg.work_dir / "hw_codegen" / node.name
            shutil.copytree(src, dst)
            out[node.name] = str(dst.relative_to(ctx.cfg.work_dir))
            ctx.codegen_moves[str(src)] = out[node.name]
            # e.g. the MVAU wrapper's WEIGHT_INIT: Verilog resolves it from the tool's working
            # dir, not the file's, so it must be the absolute path where the copy will live
            final = str(ctx.cfg.final_dir / out[node.name])
            for f in dst.iterdir():
                if f.suffix in (".v", ".sv", ".vh", ".tcl") and f.is_file():
                    text = f.read_text()
                    if str(src) in text:
                        f.write_text(text.replace(str(src), final))
    return out


def step_dataflow_partition(ctx: BuildContext) -> None:
    """What FINN's ZynqBuild does before IP generation: DMAs, width converters, the partition."""
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames

    from finn.transformation.fpgadataflow.create_dataflow_partition import CreateDataflowPartition
    from finn.transformation.fpgadataflow.floorplan import Floorplan
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_iodma import InsertIODMA
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.util.basic import pynq_native_port_width

    ctx.folded = ctx.model  # the task files start again from here, as the Vivado steps do (hw_codegen.onnx)
    model = ctx.model
    part_dir = ctx.cfg.work_dir / "dataflow_partition"
    for t in (InsertIODMA(pynq_native_port_width[ctx.cfg.board.finn_board]), InsertDWC(),
              SpecializeLayers(ctx.cfg.board.part), Floorplan(),
              CreateDataflowPartition(partition_model_dir=str(part_dir))):
        model = model.transform(t).transform(GiveUniqueNodeNames()).transform(GiveReadableTensorNames())
    ctx.model = model


def step_driver_and_tasks(ctx: BuildContext) -> None:
    """PYNQ driver settings + runtime weight files, then the runtime files of every task."""
    from finn.transformation.fpgadataflow.make_driver import MakePYNQDriver

    deploy = ctx.cfg.work_dir / "deploy"
    model = ctx.model.transform(MakePYNQDriver("zynq-iodma", "FINNDMAOverlay", clk_period_ns=ctx.cfg.clock_ns,
                                               board=ctx.cfg.board.finn_board))
    shutil.copytree(model.get_metadata_prop("pynq_driver_dir"), deploy / "driver")
    from metabnn.hw.runtime_files import write_task_files
    ctx.report["deploy_tasks"] = write_task_files(model, ctx.folded, ctx.art, deploy)
    ctx.model = model


STEPS: list[tuple[str, Callable[[BuildContext], None]]] = [
    ("qonnx_to_finn", step_qonnx_to_finn),
    ("streamline", step_streamline),
    ("convert_to_hw", step_convert_to_hw),
    ("specialize_layers", step_specialize_layers),
    ("folding", step_folding),
    ("estimates", step_estimates),
    ("verify_tasks", step_verify_tasks),
    ("hw_codegen", step_hw_codegen),
    ("dataflow_partition", step_dataflow_partition),
    ("driver_and_tasks", step_driver_and_tasks),
]  # then, with Vivado, the Vivado steps on the finished BUILD_DIR (build._vivado_tail)
