"""Fourier features of positions and of frequencies."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GaussianFourierFeatures", "fourier_position_features"]


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


class GaussianFourierFeatures(nn.Module):
    """Fixed Gaussian random Fourier features ``[sin(x W^T), cos(x W^T)]`` (DRGN-AI's encoding).

    ``W = scale * B`` with ``B (n_features, n_in) ~ N(0, sigma^2)`` drawn from ``seed`` by a
    CPU generator (the same features on every device and rank), held as a buffer (saved in
    the state dict, never trained). There is no ``2 pi``: for DRGN-AI's frequency encoding
    ``x`` is in cycles/px (lattice extent ``+-0.5``), ``sigma = 0.5`` and ``scale = D / 2``.

    ``forward(x (..., n_in)) -> (..., 2 n_features)``: sines first, then cosines.
    """

    freqs: torch.Tensor

    def __init__(
        self, n_in: int = 3, n_features: int = 192, sigma: float = 0.5, scale: float = 1.0, seed: int = 0
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        b = torch.randn(n_features, n_in, generator=gen, dtype=torch.float32) * float(sigma)
        self.register_buffer("freqs", b * float(scale))

    @property
    def n_out(self) -> int:
        return 2 * int(self.freqs.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the phases in float32 even inside a bf16 autocast region: |proj| reaches hundreds
        # of radians, where bf16's 8-bit mantissa would make the sines noise
        with torch.autocast(device_type=x.device.type, enabled=False):
            dt = torch.promote_types(x.dtype, torch.float32)
            proj = x.to(dt) @ self.freqs.to(dt).T
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
