"""How outputs name a network's weight layers (no torch import: plots and console lines use it)."""

from __future__ import annotations


def short_layer_names(n_layers: int) -> list[str]:
    """"layer 1", ..., "output": how console lines name the weight layers, in order."""
    return [f"layer {k + 1}" for k in range(n_layers - 1)] + ["output"]


def layer_names(n_layers: int, widths: list[int] | None = None) -> list[str]:
    """"hidden layer 1 (784->256)", ..., "output layer (256->10)" (sizes only when ``widths`` fit)."""
    names = [f"hidden layer {k + 1}" for k in range(n_layers - 1)] + ["output layer"]
    if widths is not None and len(widths) == n_layers + 1:
        names = [f"{n} ({widths[k]}->{widths[k + 1]})" for k, n in enumerate(names)]
    return names
