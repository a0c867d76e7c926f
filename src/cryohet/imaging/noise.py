"""Noise models for simulation: white Gaussian noise at a target SNR, coloured noise.

SNR follows CryoBench/cryoSim: ``sigma = std(clean) / sqrt(SNR)`` where ``std`` is over
all pixels of the clean (CTF-filtered) images, background included, taken once over the
stack (``per_image=False``, as the IgG-1D script) or per image.

A power spectral density ``psd`` is the per-pixel noise variance density: noise with
``psd(k)`` has ``E |DFT(n)(k)|^2 = H * W * psd(k)``, so a constant ``psd = sigma^2`` is white
noise of variance ``sigma^2``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .fft import fft2_centered, frequency_grid_2d, ifft2_centered, radial_index_2d

__all__ = ["add_white_noise", "colored_noise", "noise_sigma_for_snr", "radial_power_spectrum"]


def noise_sigma_for_snr(clean: torch.Tensor, snr: float, per_image: bool = False) -> torch.Tensor:
    """Noise standard deviation for ``snr``: scalar tensor, or ``(B,)`` when ``per_image``."""
    if snr <= 0:
        raise ValueError(f"SNR must be positive, got {snr}")
    if per_image:
        return clean.reshape(clean.shape[0], -1).std(dim=1) / snr**0.5
    return clean.std() / snr**0.5


def add_white_noise(
    clean: torch.Tensor,
    snr: float,
    per_image: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``clean + sigma * N(0, 1)`` for images ``(B, H, W)``; returns ``(noisy, sigma)``."""
    sigma = noise_sigma_for_snr(clean, snr, per_image)
    noise = torch.randn(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
    scale = sigma.reshape(-1, *([1] * (clean.ndim - 1))) if per_image else sigma
    return clean + scale * noise, sigma


def colored_noise(
    shape: tuple[int, int, int],
    psd: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    generator: torch.Generator | None = None,
    device=None,
    dtype=torch.float32,
) -> torch.Tensor:
    """Gaussian noise ``(B, D, D)`` with a radial power spectral density.

    Args:
        shape: ``(B, D, D)`` (square images).
        psd: per-pixel variance density, either a tensor indexed by the integer Fourier
            shell ``round(|k| * D)`` (shells beyond its length take its last value) or a
            callable of ``|k|`` in cycles/pixel.
    """
    _, h, w = shape
    if h != w:
        raise ValueError("colored_noise expects square images")
    white = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if callable(psd):
        kr = frequency_grid_2d(h, device=device, dtype=dtype).norm(dim=-1)
        p = psd(kr)
    else:
        table = torch.as_tensor(psd, device=device, dtype=dtype)
        shells = radial_index_2d(h, device=device).clamp(max=table.numel() - 1)
        p = table[shells]
    return ifft2_centered(fft2_centered(white) * torch.sqrt(p.clamp_min(0))).real


def radial_power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """Mean ``|DFT|^2 / (H W)`` per integer shell, averaged over the batch: ``(D//2*sqrt2+1,)``.

    The estimator matching :func:`colored_noise`'s ``psd`` (white noise of variance
    ``sigma^2`` gives ``sigma^2`` in every shell).
    """
    h, w = images.shape[-2:]
    power = (fft2_centered(images).abs() ** 2).reshape(-1, h, w).mean(dim=0) / (h * w)
    shells = radial_index_2d(h, device=images.device).reshape(-1)
    n = int(shells.max()) + 1
    total = torch.zeros(n, device=images.device, dtype=power.dtype).index_add_(0, shells, power.reshape(-1))
    count = torch.bincount(shells, minlength=n).to(power.dtype)
    return total / count
