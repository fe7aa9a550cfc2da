"""A random deployment package built in numpy alone (no training, no FINN build).

Same manifest schema and file layout as ``write_deploy_manifest`` produces, for runtime
benchmarks at full network size and for fast backend tests.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from metabnn.atomic import atomic_write_bytes, atomic_write_json
from metabnn.runtime import words as W
from metabnn.runtime.package import ARTIFACT, FORMAT_VERSION, MANIFEST, listed_files


def _dtype_for(lo: int, hi: int) -> str:
    if lo >= 0:
        return f"UINT{max(1, int(hi + 1).bit_length())}"
    return f"INT{max(abs(lo), hi + 2).bit_length() + 1}"


def make_package(root: str | Path, widths: Sequence[int] = (784, 64, 64, 10),
                 folding: Sequence[tuple[int, int]] | None = None, n_tasks: int = 2,
                 seed: int = 0) -> dict[str, Any]:
    """Write a random package into ``root``; ``folding``: (PE, SIMD) per MVAU."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    n = len(widths) - 1
    folding = list(folding or [(1, 1)] * n)
    layers: list[dict[str, Any]] = []
    images: list[list[np.ndarray]] = [[] for _ in range(n_tasks)]
    for l in range(n):
        mw, mh = int(widths[l]), int(widths[l + 1])
        pe, simd = folding[l]
        xnor = l > 0
        acc_range = [0, mw] if xnor else [-255 * mw, 255 * mw]
        mv = {"kind": "mvau", "op_type": "MVAU_hls", "name": f"MVAU_hls_{l}", "network_layer": l, "pe": pe,
              "simd": simd, "mw": mw, "mh": mh, "xnor": xnor, "acc_range": acc_range,
              "input_dtype": "BINARY" if xnor else "UINT8", "weight_dtype": "BINARY" if xnor else "BIPOLAR",
              "output_dtype": _dtype_for(*acc_range)}
        w = rng.integers(0, 2, size=(mw, mh)) if xnor else rng.choice([-1, 1], size=(mw, mh))
        words = W.encode_mvau(w, mv)
        layers.append(mv)
        for k in range(n_tasks):
            images[k].append(words)
        if l < n - 1:
            lo, hi = acc_range
            th = {"kind": "thresholding", "op_type": "Thresholding_rtl", "name": f"Thresholding_rtl_{l}",
                  "network_layer": l, "pe": pe, "num_channels": mh, "num_steps": 1, "act_val": 0,
                  "input_dtype": mv["output_dtype"], "weight_dtype": _dtype_for(lo, hi), "output_dtype": "BINARY"}
            layers.append(th)
            spread = mw // 8 + 1 if xnor else 255 * int(np.sqrt(mw))
            centre = mw // 2 if xnor else 0
            for k in range(n_tasks):
                t = np.clip(centre + rng.integers(-spread, spread + 1, size=(mh, 1)), lo, hi + 1)
                images[k].append(W.encode_thresholds(t, th))
    for i, l in enumerate(layers):
        l["index"] = i
        l["memory"] = {"ip": f"StreamingDataflowPartition_{i + 1}", "sdp": i + 1, "rt_index": 0, "base": 0,
                       "words": W.memory_words(l), "bytes": 4 * W.memory_words(l),
                       "file": f"{i + 1}_0_{l['name']}.dat", "layout": "see metabnn.runtime.words"}
        atomic_write_bytes(root / "driver/runtime_weights" / l["memory"]["file"], W.dat_text(images[0][i]).encode())
    tasks = []
    for k in range(n_tasks):
        files = []
        for l, words in zip(layers, images[k]):
            if l["kind"] == "thresholding":
                atomic_write_bytes(root / f"tasks/{k}/runtime_weights/{l['memory']['file']}", W.dat_text(words).encode())
                files.append(f"runtime_weights/{l['memory']['file']}")
        buf = io.BytesIO()
        np.savez(buf, out_scale=rng.uniform(0.5, 1.5, widths[-1]).astype(np.float32),
                 out_bias=rng.normal(0, 1, widths[-1]).astype(np.float32))
        atomic_write_bytes(root / f"tasks/{k}/host_affine.npz", buf.getvalue())
        tasks.append({"task": k, "name": f"synthetic-{k + 1}", "dir": f"tasks/{k}", "live": True, "files": files,
                      "host_affine": f"tasks/{k}/host_affine.npz"})
    last = layers[-1]
    d, c = int(widths[0]), int(widths[-1])
    simd0 = folding[0][1]
    manifest = {
        "artifact": ARTIFACT, "format_version": FORMAT_VERSION, "metabnn_version": "synthetic", "generation": 0,
        "source": {"synthetic_seed": seed}, "board": "pynq-z2", "part": "xc7z020clg400-1", "clock_ns": 10.0,
        "network": {"widths": list(map(int, widths)), "input_bits": 8,
                    "input": {"dtype": "DataType['UINT8']", "shape": [d], "folded": [d // simd0, simd0],
                              "packed_bytes": [d // simd0, simd0]},
                    "output": {"dtype": f"DataType['{last['output_dtype']}']", "shape": [c], "folded": [c, 1],
                               "packed_bytes": [c, (int(last['output_dtype'][4:]) + 7) // 8],
                               "n_in": last["mw"], "xnor": True},
                    "host_rule": "logits = out_scale[task] * a + out_bias[task]"},
        "folding": [{"name": l["name"], "pe": l["pe"], "simd": l.get("simd", 1)} for l in layers],
        "driver": {"settings": None, "platform": "zynq-iodma", "idma_names": ["idma0"], "odma_names": ["odma0"],
                   "dma_registers": {"addr_lo": 0x10, "addr_hi": 0x14, "count": 0x1C, "ctrl": 0x00,
                                     "start": 1, "done_bit": 0x2, "idle_bit": 0x4}},
        "layers": layers, "tasks": tasks, "host": {},
    }
    manifest["files"] = listed_files(root)
    atomic_write_json(root / MANIFEST, manifest)
    return manifest
