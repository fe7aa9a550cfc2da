"""Cycle-accurate simulation of metabnn's RTL with Verilator (``simulate`` for a BUILD dir)."""

from metabnn.sim.simulate import Accelerator, runtime_top, simulate, simulate_all

__all__ = ["Accelerator", "runtime_top", "simulate", "simulate_all"]
