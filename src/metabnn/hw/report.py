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
    """Cycles, LUTs and BRAMs per layer as three bar charts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [l["name"] for l in report["layers"]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, title in zip(axes, ("cycles", "lut", "bram"), ("cycles / image", "LUT", "BRAM18")):
        ax.bar(range(len(names)), [l[key] for l in report["layers"]], color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(title)
    axes[0].axhline(1e9 / report["clock_ns"] / report["target_fps"], color="tab:red", ls="--", label="target")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{report['board']} @ {1000 / report['clock_ns']:g} MHz: {report['fps']:,.0f} images/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
