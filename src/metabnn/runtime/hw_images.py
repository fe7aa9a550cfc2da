"""New memory images and package files from new integer parameters (host side, no FINN).

The weights and thresholds in the HW graph's form come from ``metabnn.hw.task_params``
(the build's own rule, including negated rows for gamma < 0), encoded with FINN's layouts
(``runtime.words``). File placement follows the build (``hw/runtime_files.py``): driver/
holds task 0's image of every memory; tasks/<k>/ holds every threshold memory and each
weight memory whose image differs from driver/'s (or that the task listed before).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from metabnn.runtime import words as W
from metabnn.runtime.package import Package


def task_images(pkg: Package, params: Mapping[str, np.ndarray]) -> list[list[np.ndarray]]:
    """[task][memory] -> uint32 words for every task in ``params``."""
    from metabnn.hw.export_artifact import ExportArtifact
    from metabnn.hw.task_params import layer_params

    art = ExportArtifact(Path("."), {}, "", dict(params))
    shared = pkg.shared_image()
    mvau_of = {l["network_layer"]: l for l in pkg.layers if l["kind"] == "mvau"}
    out = []
    for k in range(art.n_tasks):
        img = []
        for l, cur in zip(pkg.layers, shared):
            net = l["network_layer"]
            if net is None:  # the 1-bit input quantizer: fixed, not learned
                img.append(cur.copy())
                continue
            mv = mvau_of[net]
            p = layer_params(art, net, k, bool(mv["xnor"]), tuple(mv["acc_range"]))
            img.append(W.encode_mvau(p.weights, l) if l["kind"] == "mvau" else W.encode_thresholds(p.thresholds, l))
        out.append(img)
    return out


def package_files(pkg: Package, images: list[list[np.ndarray]], params: Mapping[str, np.ndarray],
                  names: list[str]) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """({relative path: bytes} of every .dat/affine/task.json to (re)write, task entries)."""
    import io
    import json

    files: dict[str, bytes] = {}
    for l, words in zip(pkg.layers, images[0]):
        files[f"driver/runtime_weights/{l['memory']['file']}"] = W.dat_text(words).encode()
    old = {t["task"]: t for t in pkg.tasks}
    entries = []
    for k, img in enumerate(images):
        before = {Path(f).name for f in old.get(k, {}).get("files", [])}
        listed = []
        for l, words, shared in zip(pkg.layers, img, images[0]):
            f = l["memory"]["file"]
            if l["kind"] == "thresholding" or f in before or not np.array_equal(words, shared):
                files[f"tasks/{k}/runtime_weights/{f}"] = W.dat_text(words).encode()
                listed.append(f"runtime_weights/{f}")
        buf = io.BytesIO()
        np.savez(buf, out_scale=params["out_scale"][k], out_bias=params["out_bias"][k])
        files[f"tasks/{k}/host_affine.npz"] = buf.getvalue()
        own = [l["name"] for l in pkg.layers if l["kind"] == "mvau" and f"runtime_weights/{l['memory']['file']}" in listed]
        tj = {"task": k, "name": names[k], "files": listed, "host_affine": "host_affine.npz",
              "own_weight_layers": own}
        files[f"tasks/{k}/task.json"] = (json.dumps(tj, indent=2) + "\n").encode()
        entries.append({"task": k, "name": names[k], "dir": f"tasks/{k}", "live": True, "files": listed,
                        "host_affine": f"tasks/{k}/host_affine.npz"})
    return files, entries
