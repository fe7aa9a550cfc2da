"""Accelerator backends: one small interface, three implementations.

Every backend moves 32-bit words into and out of the layers' runtime memories, runs a batch
of uint8 images to the last layer's raw integer outputs, and flushes (FINN's dummy run that
pushes stale weights out of the weight streamers). Nothing here imports torch or FINN.
"""

from __future__ import annotations

from typing import Any

from metabnn.errors import MetabnnError
from metabnn.runtime.backends.base import Backend

BACKENDS = ("reference", "pynq", "sim")


def make_backend(name: str, **options: Any) -> Backend:
    if name == "reference":
        from metabnn.runtime.backends.reference import ReferenceBackend
        return ReferenceBackend(**options)
    if name == "pynq":
        from metabnn.runtime.backends.pynq_board import PynqBackend
        return PynqBackend(**options)
    if name == "sim":
        from metabnn.runtime.backends.sim import SimBackend
        return SimBackend(**options)
    raise MetabnnError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
