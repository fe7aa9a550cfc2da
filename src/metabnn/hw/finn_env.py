"""Importing FINN outside its own CLI, with or without Vivado.

FINN (finn-plus 1.6.1) expects to be started by its ``finn`` CLI, which refuses to run
without ``XILINX_VIVADO``. Its Python API works without Vivado once (a) global settings
exist, which FINN rebuilds from ``FINN_BUILD_DIR`` (where it puts generated code), and
(b) nothing touches ``finn.xsi``'s lazy simulator names: ``finn.builder.build_dataflow_steps``
does at import time, so this package never imports it and runs the transformations itself.
With Vivado, the CLI also exports the variables FINN's generated Tcl reads; ``environ`` sets
those for the Vivado steps (``metabnn.hw.vivado.find_tools`` says which).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Iterator


def vivado_available(env: dict[str, str] | None = None) -> bool:
    """Whether the Vivado steps (IP generation, stitching, synthesis, bitstream) can run."""
    env = os.environ if env is None else env
    root = env.get("XILINX_VIVADO", "")
    return bool(root) and Path(root, "bin", "vivado").exists()


@contextlib.contextmanager
def finn_session(work_dir: Path) -> Iterator[None]:
    """FINN configured to write its generated code under ``work_dir``; restores the env after."""
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    saved = os.environ.get("FINN_BUILD_DIR")
    os.environ["FINN_BUILD_DIR"] = str(work_dir)
    import finn.util.settings as settings

    old = settings._SETTINGS
    settings._SETTINGS = None  # rebuilt from FINN_BUILD_DIR on first use
    import metabnn.hw.custom_op  # noqa: F401  (saved builds hold MVAUBinary_rtl nodes)
    try:
        with warnings.catch_warnings():
            # qonnx/FINN warn per node about 2D layouts and unused attributes
            warnings.simplefilter("ignore")
            logging.getLogger("finn").setLevel(logging.ERROR)
            yield
    finally:
        settings._SETTINGS = old
        if saved is None:
            os.environ.pop("FINN_BUILD_DIR", None)
        else:
            os.environ["FINN_BUILD_DIR"] = saved


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set (FINN and the tools it starts read them); restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
