"""Multilayer perceptrons."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp"]


def mlp(n_in: int, hidden: int, layers: int, n_out: int, zero_last: bool = True) -> nn.Sequential:
    """``layers`` hidden ReLU layers of width ``hidden``, then a linear output layer.

    ``zero_last`` initialises the output layer at zero, so an untrained network outputs 0
    (a decoder of offsets then starts at its rest configuration).
    """
    mods: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    last = nn.Linear(width, n_out)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    mods.append(last)
    return nn.Sequential(*mods)
