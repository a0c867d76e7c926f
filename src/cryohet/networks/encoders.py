"""Amortised image encoders: a particle image in, a Gaussian over the latent out.

:class:`ImageEncoder` is cryoSPHERE's (METHODS.md §4): the image, Fourier-cropped to
``input_box`` pixels (low-pass and smaller), masked by a disc of radius ``input_box / 2``,
flattened and passed through an MLP (512, 256, 64, 64 with LeakyReLU); two heads give the
mean and the standard deviation (``ELU + 1``) of ``q(z | image)``. Methods sample ``z``
with :func:`reparameterise` and weigh :func:`kl_standard_normal` against their data term.
Images enter as they come from :class:`~cryohet.data.dataset.ParticleDataset`
(normalised, protein bright, real space, ``(B, D, D)``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ImageEncoder", "fourier_crop", "reparameterise", "kl_standard_normal"]


def fourier_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centred Fourier crop ``(B, D, D) -> (B, size, size)`` (the same physical box, coarser pixels)."""
    d = images.shape[-1]
    if size >= d:
        return images
    f = torch.fft.fftshift(torch.fft.fft2(images), dim=(-2, -1))
    a = d // 2 - size // 2
    f = f[..., a : a + size, a : a + size]
    return torch.fft.ifft2(torch.fft.ifftshift(f, dim=(-2, -1))).real * (size / d) ** 2


class ImageEncoder(nn.Module):
    """``image (B, D, D) -> (mean (B, zdim), std (B, zdim))`` (module docstring)."""

    def __init__(self, box: int, zdim: int, input_box: int = 64, hidden: tuple[int, ...] = (512, 256, 64, 64)) -> None:
        super().__init__()
        if zdim < 1:
            raise ValueError(f"an encoder needs zdim >= 1, got {zdim}")
        self.box, self.zdim = int(box), int(zdim)
        self.input_box = min(int(input_box), self.box)
        j = torch.arange(self.input_box, dtype=torch.float32) - self.input_box // 2
        self.register_buffer("mask", ((j[:, None] ** 2 + j[None, :] ** 2) <= (self.input_box / 2) ** 2).float())
        layers: list[nn.Module] = []
        n = self.input_box**2
        for h in hidden:
            layers += [nn.Linear(n, h), nn.LeakyReLU()]
            n = h
        self.body = nn.Sequential(*layers)
        self.mean = nn.Linear(n, zdim)
        self.raw_std = nn.Linear(n, zdim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = fourier_crop(images.to(self.mask.dtype), self.input_box) * self.mask
        h = self.body(x.flatten(1))
        return self.mean(h), F.elu(self.raw_std(h)) + 1.0


def reparameterise(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A draw ``mean + std * eps`` (differentiable in both)."""
    return mean + std * torch.randn_like(std)


def kl_standard_normal(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Per-image ``KL(N(mean, std^2) || N(0, 1))`` summed over latent dimensions ``(B,)``."""
    var = std**2
    return 0.5 * (var + mean**2 - 1.0 - torch.log(var.clamp_min(1e-12))).sum(dim=-1)
