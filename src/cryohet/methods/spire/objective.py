"""The data term: images vs rendered mixtures, compared in Fourier space on a half plane.

Images are real, so their centred DFT is Hermitian and the half plane ``kx >= 0`` holds
everything. The comparison uses the frequencies inside the Nyquist circle
``|k| < D / 2`` (pixels), without the DC term (images are mean-subtracted), with weight 2
for ``kx > 0`` and 1 on the ``kx = 0`` column, so that

    loss_n = sum_w |Y_n(k) - CTF_n(k) P_n(k)|^2 / D^2

equals the real-space sum of squared residuals of the band-limited images (Parseval).
Images are normalised to unit variance, so for pure noise ``loss_n`` is about the number
of pixels in the disc: the paper's ``||I - CTF * P(G(z))||^2`` in units of the noise
variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...imaging.ctf import compute_ctf_grid
from ...imaging.fft import fft2_centered, frequencies_1d
from ...imaging.gaussians import gaussian_projection_ft
from .stage_a import MixtureBatch

__all__ = ["HalfPlaneGrid", "FourierBatch", "prepare_batch", "data_term"]


@dataclass
class HalfPlaneGrid:
    """Frequencies (1/Å) and weights of the half-plane comparison grid for box ``D``."""

    box: int
    apix: float
    kx_A: torch.Tensor  # (D - D//2,) kx >= 0
    ky_A: torch.Tensor  # (D,) centred
    weights: torch.Tensor  # (D, D - D//2): 0 outside the disc and at DC; 2 for kx > 0

    @classmethod
    def build(cls, box: int, apix: float, device=None, max_radius_px: float | None = None) -> HalfPlaneGrid:
        ky = frequencies_1d(box, apix, device=device)
        kx = ky[box // 2 :]  # 0 .. (D-1)//2: the +Nyquist column lies outside the disc
        r_px = torch.sqrt((kx[None, :] * box * apix) ** 2 + (ky[:, None] * box * apix) ** 2)
        limit = box / 2 if max_radius_px is None else max_radius_px
        w = torch.where(kx[None, :] > 0, 2.0, 1.0) * (r_px < limit)
        w[box // 2, 0] = 0.0  # DC
        return cls(box, apix, kx, ky, w.to(device))

    def half(self, F: torch.Tensor) -> torch.Tensor:
        """The ``kx >= 0`` columns of a full centred DFT ``(B, D, D)`` -> ``(B, D, D - D//2)``."""
        return F[..., self.box // 2 :]


@dataclass
class FourierBatch:
    """What the data term needs of a batch, on the training device."""

    index: torch.Tensor  # (B,) rows of the dataset
    image_ft: torch.Tensor  # (B, D, D - D//2) complex half-plane DFT of the images
    ctf: torch.Tensor | None  # (B, D, D - D//2) real, or None
    rotations: torch.Tensor  # (B, 3, 3)
    shifts_A: torch.Tensor  # (B, 2)


def prepare_batch(batch: dict[str, torch.Tensor], grid: HalfPlaneGrid, device) -> FourierBatch:
    """Move a loader batch to ``device`` and transform its images."""
    images = batch["image"].to(device, non_blocking=True)
    ctf = None
    if "ctf" in batch:
        ctf = compute_ctf_grid(grid.kx_A, grid.ky_A, batch["ctf"].to(device))
    return FourierBatch(
        index=batch["index"].to(device),
        image_ft=grid.half(fft2_centered(images)),
        ctf=ctf,
        rotations=batch["rotation"].to(device),
        shifts_A=batch["shift_A"].to(device),
    )


def render_half(mix: MixtureBatch, fb: FourierBatch, grid: HalfPlaneGrid) -> torch.Tensor:
    """CTF-modulated, shifted half-plane DFT of the mixtures' projections (B, D, D - D//2)."""
    apix = grid.apix
    sig = mix.sigmas_px.float() * apix
    return gaussian_projection_ft(
        mix.centres_px.float() * apix, mix.amplitudes.float(), sig, fb.rotations, grid.kx_A, grid.ky_A, apix,
        shifts_A=fb.shifts_A, ctf=fb.ctf,
    )


def data_term(mix: MixtureBatch, fb: FourierBatch, grid: HalfPlaneGrid) -> torch.Tensor:
    """Per-image squared residual (B,) in units of the (unit) pixel noise variance."""
    pred = render_half(mix, fb, grid)
    resid = fb.image_ft - pred
    power = resid.real**2 + resid.imag**2
    return (power * grid.weights).sum(dim=(-1, -2)) / float(grid.box**2)
