"""Multilayer perceptrons."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResidualMLP", "mlp"]


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


class ResidualMLP(nn.Module):
    """``Linear(n_in, hidden)``, ReLU, ``blocks`` residual blocks, ``Linear(hidden, n_out)``.

    A block is ``h <- ReLU(Linear(hidden, hidden)(h) + h)`` (cryoDRGN's/DRGN-AI's
    ``ResidLinearMLP``: ``blocks = 3``, ``hidden = 256`` for the decoder). PyTorch's default
    initialisation everywhere, unless ``zero_last`` zeroes the output layer.
    """

    def __init__(self, n_in: int, hidden: int, blocks: int, n_out: int, zero_last: bool = False) -> None:
        super().__init__()
        self.input = nn.Linear(n_in, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(blocks))
        self.output = nn.Linear(hidden, n_out)
        if zero_last:
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.input(x))
        for layer in self.blocks:
            h = torch.relu(layer(h) + h)
        return self.output(h)
