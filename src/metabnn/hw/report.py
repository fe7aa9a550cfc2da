"""report.json's terminal table and the per-layer PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def table(report: dict[str, Any]) -> str:
    """The layers, totals, fit and agreement as fixed-width text."""
    rows = [f"{'layer':22s} {'PE':>5s} {'SIMD':>5s} {'cycles':>8s} {'LUT':>8s} {'BRAM18':>7s}"]
    for l in report["layers"]:
        rows.append(f"{l['name']:22s} {l['pe']:5d} {l['simd']:5d} {l['cycles']:8d} {l['lut']:8d} {l['bram']:7d}")
    r, c, b = report["resources"], report["capacity"], report["budget"]
    rows.append(f"{'total':22s} {'':5s} {'':5s} {'':8s} {r['LUT']:8d} {r['BRAM_18K']:7d}")
    rows.append(f"{'budget (of capacity)':22s} {'':5s} {'':5s} {'':8s} {b['LUT']:8.0f} {b['BRAM_18K']:7.0f}"
                f"   ({c['LUT']} LUT, {c['BRAM_18K']} BRAM18 on {report['board']})")
    rows.append(f"{report['board']} ({report['part']}) at {1000 / report['clock_ns']:g} MHz: "
                f"{report['fps']:,.0f} images/s (target {report['target_fps']:,.0f}), latency "
                f"{report['latency_us']:.2f} us, fits: {'yes' if report['fits'] else 'NO'}")
    for t in report.get("agreement", []):
        rows.append(f"task {t['name']}: HW graph agrees with PyTorch on {t['agreements']}/{t['images']} test images")
    return "\n".join(rows)


def plot(report: dict[str, Any], path: Path) -> None:
    """report.png: see ``figure``."""
    import matplotlib.pyplot as plt

    fig = figure(report)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure(report: dict[str, Any]):
    """Cycles, LUTs and BRAMs per layer, with the cycle target and the board's resource budgets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    names = [l["name"] for l in layers]
    x = range(len(names))
    cap, bud, res = report["capacity"], report["budget"], report["resources"]
    limits = report.get("utilization_limits", {})
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    ax = axes[0]
    ax.bar(x, [l["cycles"] for l in layers], color="tab:blue")
    target = 1e9 / report["clock_ns"] / report["target_fps"]
    ax.axhline(target, color="tab:red", ls="--", label=f"target: {report['target_fps']:,.0f} images/s")
    ax.set_ylim(0, 1.3 * max([target] + [l["cycles"] for l in layers]))
    ax.set_xticks(x, names, rotation=40, ha="right", fontsize=8)
    ax.set_title("cycles / image")
    ax.legend(fontsize=8)
    # per layer and in total against the budget: totals are what the budget bounds, and a log
    # axis keeps a few-hundred-LUT layer visible under a tens-of-thousands budget
    for ax, key, res_key, title in ((axes[1], "lut", "LUT", "LUT"), (axes[2], "bram", "BRAM_18K", "BRAM18")):
        values = [l[key] for l in layers] + [res[res_key]]
        colors = ["tab:blue"] * len(layers) + ["tab:red" if res[res_key] > bud[res_key] else "tab:green"]
        ax.bar(range(len(values)), [max(v, 0.5) if v else 0 for v in values], color=colors)
        share = limits.get(res_key)
        ax.axhline(bud[res_key], color="tab:red", ls="--",
                   label=f"budget {bud[res_key]:,.0f}" + (f" ({share:.0%} of {cap[res_key]:,})" if share else ""))
        ax.axhline(cap[res_key], color="0.4", ls=":", label=f"{report['board']} capacity {cap[res_key]:,}")
        ax.set_yscale("log")
        ax.set_ylim(0.5, cap[res_key] * 60)  # room for the legend above the lines
        ax.set_xticks(range(len(values)), names + ["total"], rotation=40, ha="right", fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{report['board']} ({report['part']}) at {1000 / report['clock_ns']:g} MHz: "
                 f"{report['fps']:,.0f} images/s, target {report['target_fps']:,.0f}, "
                 f"fits: {'yes' if report['fits'] else 'NO'}")
    fig.tight_layout()
    return fig
