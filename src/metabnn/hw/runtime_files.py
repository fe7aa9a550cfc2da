"""deploy/tasks/<k>/: the files the board writes to switch the accelerator to task k.

FINN's driver writes every ``runtime_weights/*.dat`` file over AXI-lite at start-up
(``<partition>_<index>_<node>.dat``, 32-bit words). Every task shares the weights, so a
task directory holds the threshold files of every layer (same names, FINN's
``decoupled_runtime`` layout) plus weight files for every MVAU whose weights differ from
the shared ones in deploy/driver (which are task 0's): rows are negated per task where a
BatchNorm gamma < 0, so a task differs from task 0 where either of them has such rows.
And the host-side output affine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metabnn.atomic import atomic_write, atomic_write_json
from metabnn.hw.export_artifact import ExportArtifact


def _runtime_nodes(model) -> list[tuple[str, Any, Any]]:
    """(file stem, dataflow model, node) of every runtime-writeable layer, FINN's naming order."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    out = []
    for sdp_ind, sdp in enumerate(model.graph.node):
        df = ModelWrapper(getCustomOp(sdp).get_nodeattr("model"))
        rt = 0
        for node in df.graph.node:
            if node.op_type.startswith(("MVAU", "Thresholding")) and \
                    getCustomOp(node).get_nodeattr("runtime_writeable_weights") == 1:
                out.append((f"{sdp_ind}_{rt}_{node.name}", df, node))
                rt += 1
    return out


def _task_tensors(folded, art: ExportArtifact, task: int) -> tuple[dict[str, Any], set[str]]:
    """{node name: its weights/thresholds for ``task``} and the MVAUs needing their own weights."""
    from metabnn.hw.passes import SetTaskParameters
    from metabnn.hw.passes.set_task_parameters import layer_nodes

    setp = SetTaskParameters(art, task)
    m = folded.transform(setp)
    tensors = {n.name: m.get_initializer(n.input[1]) for n in m.graph.node
               if n.op_type.startswith(("MVAU", "Thresholding")) and len(n.input) > 1}
    own = {layer_nodes(m)[l][0].name for l in setp.own_weights}
    return tensors, own


def write_task_files(partitioned, folded, art: ExportArtifact, deploy: Path) -> list[dict[str, Any]]:
    """Write deploy/tasks/<k>/ for every task; returns the per-task file lists.

    ``folded`` is the specialized, folded graph before partitioning (node names are kept by
    the partition), ``partitioned`` the one FINN's driver generation saw.
    """
    from qonnx.custom_op.registry import getCustomOp

    nodes = _runtime_nodes(partitioned)
    shared, _ = _task_tensors(folded, art, 0)
    summary = []
    for k in range(art.n_tasks):
        tdir = deploy / "tasks" / str(k)
        (tdir / "runtime_weights").mkdir(parents=True, exist_ok=True)
        tensors, own = _task_tensors(folded, art, k)
        files = []
        for stem, _, node in nodes:
            if node.op_type.startswith("MVAU") and np.array_equal(tensors[node.name], shared[node.name]):
                continue  # the shared weights in deploy/driver/runtime_weights are this task's too
            getCustomOp(node).make_weight_file(tensors[node.name], "decoupled_runtime",
                                               str(tdir / "runtime_weights" / f"{stem}.dat"))
            files.append(f"runtime_weights/{stem}.dat")
        scale, bias = art.output_affine(k)
        atomic_write(tdir / "host_affine.npz", lambda f: np.savez(f, out_scale=scale, out_bias=bias))
        entry = {"task": k, "name": art.task_name(k), "files": files, "host_affine": "host_affine.npz",
                 "own_weight_layers": sorted(own)}
        atomic_write_json(tdir / "task.json", entry)
        summary.append(entry)
    return summary
