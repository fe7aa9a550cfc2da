"""Folding search: per layer the cheapest PE/SIMD (and weight memory style) meeting a target.

A dataflow pipeline runs at the pace of its slowest layer, so a target of ``fps`` images/s
at ``f_clk`` gives every layer a budget of ``T = f_clk / fps`` cycles per image. For each
layer the search lists every legal folding (PE divides MH, SIMD divides MW, stream widths
within FINN's HLS limit), asks each node for its cycles (``get_exp_cycles``) and resources
(``node_res_estimation``: FINN's models, or for ``MVAUBinary_rtl`` metabnn's yosys-fitted
model of its RTL), and keeps the cheapest one within ``T``; "cheapest"
weighs LUTs and BRAMs by the board's budget of each, so the scarce resource is spared.
Deterministic: ties go to fewer lanes, then to the smaller PE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metabnn.hw.boards import Board

# FINN's own default floorplanning limits (finn.util.platforms.DEFAULT_RES_LIMITS): the
# share of each resource a dataflow design may take, leaving room for the shell (DMA,
# interconnect, FIFOs) and routing.
UTILIZATION = {"LUT": 0.7, "BRAM_18K": 0.8, "DSP": 0.8, "URAM": 0.8}
RESOURCES = ("LUT", "BRAM_18K", "DSP", "URAM")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class Option:
    attrs: tuple[tuple[str, Any], ...]  # node attributes, e.g. (("PE", 4), ("SIMD", 8), ...)
    cycles: int
    res: tuple[tuple[str, float], ...]

    @property
    def resources(self) -> dict[str, float]:
        return dict(self.res)

    def get(self, name: str, default: Any = 1) -> Any:
        return dict(self.attrs).get(name, default)


@dataclass
class LayerOptions:
    name: str
    op_type: str
    options: list[Option] = field(default_factory=list)

    def fastest(self) -> Option:
        return min(self.options, key=lambda o: o.cycles)


def budget(board: Board) -> dict[str, float]:
    cap = board.capacity()
    return {r: cap[r] * UTILIZATION[r] for r in RESOURCES}


def _candidates(inst, op_type: str) -> list[dict[str, Any]]:
    from finn.util.basic import MAX_ALLOWED_AP_INT_W

    if op_type.startswith("MVAU"):
        mw, mh = inst.get_nodeattr("MW"), inst.get_nodeattr("MH")
        wbits = inst.get_input_datatype(1).bitwidth()
        abits = inst.get_input_datatype(0).bitwidth()
        out = []
        for pe in divisors(mh):
            for simd in divisors(mw):
                if op_type.endswith("_hls") and (pe * simd * wbits > MAX_ALLOWED_AP_INT_W
                                                 or simd * abits > MAX_ALLOWED_AP_INT_W):
                    continue  # HLS ap_int streams cannot be wider; metabnn's RTL has no such cap
                for style in ("block", "distributed"):
                    out.append({"PE": pe, "SIMD": simd, "ram_style": style})
        return out
    if op_type.startswith("Thresholding"):
        return [{"PE": pe} for pe in divisors(inst.get_nodeattr("NumChannels"))]
    return [{}]


def layer_options(model, part: str) -> list[LayerOptions]:
    """Every legal folding of every HW layer of ``model`` with FINN's cycle/resource estimates."""
    from qonnx.custom_op.registry import getCustomOp

    layers = []
    for node in model.graph.node:
        if not node.domain.startswith("finn.custom_op.fpgadataflow"):
            continue
        inst = getCustomOp(node)
        types = inst.get_nodeattr_types()
        cands = _candidates(inst, node.op_type)
        saved = {k: inst.get_nodeattr(k) for c in cands[:1] for k in c}
        lo = LayerOptions(node.name, node.op_type)
        try:
            for c in cands:
                for k, v in c.items():
                    inst.set_nodeattr(k, v)
                est = inst.node_res_estimation(part)
                res = tuple((r, float(est.get(r, 0))) for r in RESOURCES)
                lo.options.append(Option(tuple(sorted(c.items())), int(inst.get_exp_cycles()), res))
        finally:
            for k, v in saved.items():
                if k in types:
                    inst.set_nodeattr(k, v)
        layers.append(lo)
    return layers


def _cost(o: Option, bud: dict[str, float]) -> tuple:
    res = o.resources
    weighted = sum(res[r] / bud[r] for r in RESOURCES if bud[r] > 0) + sum(
        1e9 * res[r] for r in RESOURCES if bud[r] == 0 and res[r] > 0)  # none of it on the board
    lanes = o.get("PE") * o.get("SIMD")
    return (weighted, lanes, o.get("PE"), o.attrs)


def choose(layers: list[LayerOptions], max_cycles: float, bud: dict[str, float]) -> list[Option] | None:
    """The cheapest option of every layer within ``max_cycles``; None if a layer cannot make it."""
    out = []
    for lo in layers:
        ok = [o for o in lo.options if o.cycles <= max_cycles]
        if not ok:
            return None
        out.append(min(ok, key=lambda o: _cost(o, bud)))
    return out


def totals(chosen: list[Option]) -> dict[str, float]:
    return {r: sum(o.resources[r] for o in chosen) for r in RESOURCES}


def fits(chosen: list[Option], bud: dict[str, float]) -> bool:
    t = totals(chosen)
    return all(t[r] <= bud[r] for r in RESOURCES)


def best_fitting(layers: list[LayerOptions], bud: dict[str, float]) -> list[Option] | None:
    """The fastest selection (smallest bottleneck cycles) that fits ``bud``; None if none does."""
    for t in sorted({o.cycles for lo in layers for o in lo.options}):
        chosen = choose(layers, t, bud)
        if chosen is not None and fits(chosen, bud):
            return chosen
    return None


def limiting(layers: list[LayerOptions], chosen: list[Option], bud: dict[str, float]) -> tuple[str, str, float, float]:
    """(layer, resource, total, budget): the most over-used resource and its largest user."""
    t = totals(chosen)
    res = max(RESOURCES, key=lambda r: t[r] / bud[r] if bud[r] else (float("inf") if t[r] else 0))
    layer = max(zip(layers, chosen), key=lambda lc: lc[1].resources[res])[0].name
    return layer, res, t[res], bud[res]


def analysis(layers: list[LayerOptions], bud: dict[str, float], max_cycles: float, fclk_hz: float) -> dict[str, Any]:
    """What limits the rate: the fastest any size allows, the best that fits, and why not faster."""
    fastest = max(lo.fastest().cycles for lo in layers)
    slowest_layer = max(layers, key=lambda lo: lo.fastest().cycles).name
    best = best_fitting(layers, bud)
    out: dict[str, Any] = {
        "max_fps_any_size": fclk_hz / fastest,
        "max_fps_limited_by": f"{slowest_layer}: {fastest} cycles/image at its widest legal folding"
                              + (" (FINN's HLS streams are at most 8191 bits wide)"
                                 if slowest_layer.rsplit("_", 2)[-2:-1] == ["hls"] else ""),
        "best_fit_fps": fclk_hz / max(o.cycles for o in best) if best else 0.0,
        "best_fit": ({lo.name: {**dict(o.attrs), "cycles": o.cycles, **o.resources} for lo, o in zip(layers, best)}
                     if best else None),
        "best_fit_totals": totals(best) if best else None,
    }
    if best:
        faster = sorted(c for c in {o.cycles for lo in layers for o in lo.options}
                        if c < max(o.cycles for o in best))
        nxt = choose(layers, faster[-1], bud) if faster else None
        if nxt is not None:
            layer, res, tot, b = limiting(layers, nxt, bud)
            out["next_faster"] = {"fps": fclk_hz / faster[-1], "limiting_layer": layer, "resource": res,
                                  "needs": tot, "budget": b}
    at_target = choose(layers, max_cycles, bud)
    if at_target is not None:
        layer, res, tot, b = limiting(layers, at_target, bud)
        out["at_target"] = {"totals": totals(at_target), "limiting_layer": layer, "resource": res,
                            "needs": tot, "budget": b, "fits": fits(at_target, bud)}
    return out
