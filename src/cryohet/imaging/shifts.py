"""Image shifts as Fourier phase ramps (RELION origin convention).

A shift is RELION's origin ``o = (ox, oy)`` in Å: the particle centre sits at ``-o`` in
the image, ``image(x) = centred(x + o)``. With the forward DFT ``exp(-2 pi i k.x)`` this
multiplies the transform by ``exp(+2 pi i k.o)`` (k in 1/Å). Integer-pixel shifts of a
real image are exact circular shifts (``np.roll(centred, -o/apix)``).
"""

from __future__ import annotations

import math

import torch

from .fft import fft2_centered, frequencies_1d, ifft2_centered

__all__ = ["phase_ramp", "shift_ft", "shift_images", "unshift_ft"]


def phase_ramp(kx_per_A: torch.Tensor, ky_per_A: torch.Tensor, shifts_A: torch.Tensor) -> torch.Tensor:
    """``exp(+2 pi i (kx ox + ky oy))`` on the grid ``ky (Ny,) x kx (Nx,)`` -> complex ``(B, Ny, Nx)``.

    ``shifts_A`` is ``(B, 2)`` RELION origins ``(x, y)`` in Å; frequencies in 1/Å (or
    cycles/pixel with shifts in pixels). Differentiable in the shifts.
    """
    s = shifts_A.to(kx_per_A.dtype)
    ph = 2.0 * math.pi * (s[:, 0, None, None] * kx_per_A[None, None, :] + s[:, 1, None, None] * ky_per_A[None, :, None])
    return torch.complex(torch.cos(ph), torch.sin(ph))


def shift_ft(F: torch.Tensor, shifts_A: torch.Tensor, kx_per_A: torch.Tensor, ky_per_A: torch.Tensor) -> torch.Tensor:
    """Apply origins to image transforms ``F (B, Ny, Nx)``: centred particle -> shifted image."""
    return F * phase_ramp(kx_per_A, ky_per_A, shifts_A)


def unshift_ft(F: torch.Tensor, shifts_A: torch.Tensor, kx_per_A: torch.Tensor, ky_per_A: torch.Tensor) -> torch.Tensor:
    """Undo origins (multiply by ``exp(-2 pi i k.o)``): shifted image -> centred particle."""
    return F * phase_ramp(kx_per_A, ky_per_A, -shifts_A)


def shift_images(images: torch.Tensor, shifts_A: torch.Tensor, apix: float) -> torch.Tensor:
    """Real images ``(B, D, D)`` shifted by RELION origins ``(B, 2)`` Å (sub-pixel, periodic).

    ``out(x) = images(x + o)``: a particle centred in ``images`` appears at ``-o``.
    To re-centre particles that carry origin ``o``, pass ``-o``.
    """
    box = images.shape[-1]
    k = frequencies_1d(box, apix, device=images.device, dtype=images.dtype)
    ky = frequencies_1d(images.shape[-2], apix, device=images.device, dtype=images.dtype)
    return ifft2_centered(shift_ft(fft2_centered(images), shifts_A, k, ky)).real
