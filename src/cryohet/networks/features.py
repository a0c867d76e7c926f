"""Fourier features of positions."""

from __future__ import annotations

import torch

__all__ = ["fourier_position_features"]


def fourier_position_features(positions: torch.Tensor, extent: float, dim: int, seed: int = 0) -> torch.Tensor:
    """Random Fourier features ``[sin(2 pi B x), cos(2 pi B x)]`` of positions, ``(G, dim)``, fixed.

    ``x = positions / extent`` (e.g. pixels over the box size, so frequencies are in cycles
    per box); ``B ~ N(0, 2^2)`` is ``(3, dim // 2)``, drawn from ``seed`` on the CPU.
    """
    gen = torch.Generator().manual_seed(seed)
    freqs = torch.randn(3, dim // 2, generator=gen) * 2.0
    x = positions / extent
    proj = 2 * torch.pi * x @ freqs.to(x)
    return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
