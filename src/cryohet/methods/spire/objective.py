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

import math
from dataclasses import dataclass

import torch

from ...data.batch import ParticleBatch
from ...imaging.ctf import compute_ctf_grid
from ...imaging.fft import fft2_centered, frequencies_1d
from ...imaging.gaussians import gaussian_projection_ft
from .stage_a import MixtureBatch

__all__ = [
    "HalfPlaneGrid",
    "FourierBatch",
    "prepare_batch",
    "restrict_batch",
    "data_term",
    "occupancy_energy_weights",
    "occupancy_prior",
]


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

    @property
    def band_px(self) -> tuple[int, int]:
        """``(ky_start, n_ky)``: the rows of the full ``D``-row grid this grid holds
        (``(0, D)`` for a full grid; see :meth:`lowpass`)."""
        n_ky = int(self.ky_A.shape[0])
        return (self.box - n_ky) // 2, n_ky

    def lowpass(self, fraction: float) -> HalfPlaneGrid:
        """The sub-grid of the frequencies below ``fraction`` × Nyquist, in the same units.

        Rows and columns outside the disc are dropped (not just given zero weight), so a
        data term on it costs about ``fraction²`` of the full one. ``box`` stays the full
        box: the data term keeps its normalisation ``/ D²``, i.e. it is the full data
        term restricted to the low band (a Parseval partial sum), comparable between
        candidates and with the latent prior on the same scale. Images and CTFs of a
        batch prepared on the full grid are cut to it by :func:`restrict_batch`.
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"band fraction must be in (0, 1], got {fraction}")
        if fraction >= 1:
            return self
        d = self.box
        radius_px = fraction * d / 2
        half_rows = min(d // 2, int(math.ceil(radius_px)))
        start = d // 2 - half_rows
        n_ky = 2 * half_rows
        n_kx = min(self.kx_A.shape[0], half_rows + 1)
        ky = self.ky_A[start : start + n_ky]
        kx = self.kx_A[:n_kx]
        w = self.weights[start : start + n_ky, :n_kx].clone()
        r_px = torch.sqrt((kx[None, :] * d * self.apix) ** 2 + (ky[:, None] * d * self.apix) ** 2)
        w = w * (r_px < radius_px)
        return HalfPlaneGrid(d, self.apix, kx, ky, w)

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


def prepare_batch(batch: ParticleBatch, grid: HalfPlaneGrid, device) -> FourierBatch:
    """Move a loader batch to ``device`` and transform its images."""
    batch = batch.to(device, non_blocking=True)
    ctf = None
    if batch.ctf_params is not None:
        ctf = compute_ctf_grid(grid.kx_A, grid.ky_A, batch.ctf_params)
    return FourierBatch(
        index=batch.index,
        image_ft=grid.half(fft2_centered(batch.images)),
        ctf=ctf,
        rotations=batch.rotations,
        shifts_A=batch.shifts_A,
    )


def restrict_batch(fb: FourierBatch, grid: HalfPlaneGrid) -> FourierBatch:
    """``fb`` (prepared on the full grid) cut to the rows and columns of ``grid``
    (a :meth:`HalfPlaneGrid.lowpass` sub-grid); unchanged for a full grid."""
    start, n_ky = grid.band_px
    n_kx = int(grid.kx_A.shape[0])
    if n_ky == fb.image_ft.shape[-2] and n_kx == fb.image_ft.shape[-1]:
        return fb
    cut = (slice(None), slice(start, start + n_ky), slice(0, n_kx))
    return FourierBatch(
        index=fb.index,
        image_ft=fb.image_ft[cut],
        ctf=None if fb.ctf is None else fb.ctf[cut],
        rotations=fb.rotations,
        shifts_A=fb.shifts_A,
    )


def render_half(mix: MixtureBatch, fb: FourierBatch, grid: HalfPlaneGrid) -> torch.Tensor:
    """CTF-modulated, shifted half-plane DFT of the mixtures' projections (B, D, D - D//2)."""
    apix = grid.apix
    sig = mix.sigmas_px.float() * apix
    return gaussian_projection_ft(
        mix.centres_px.float() * apix,
        mix.amplitudes.float(),
        sig,
        fb.rotations,
        grid.kx_A,
        grid.ky_A,
        apix,
        shifts_A=fb.shifts_A,
        ctf=fb.ctf,
    )


def data_term(mix: MixtureBatch, fb: FourierBatch, grid: HalfPlaneGrid) -> torch.Tensor:
    """Per-image squared residual (B,) in units of the (unit) pixel noise variance."""
    pred = render_half(mix, fb, grid)
    resid = fb.image_ft - pred
    power = resid.real**2 + resid.imag**2
    return (power * grid.weights).sum(dim=(-1, -2)) / float(grid.box**2)


def occupancy_energy_weights(base_amplitudes: torch.Tensor, sigmas_px: torch.Tensor) -> torch.Tensor:
    """Data-term energy of each Gaussian at full occupancy, ``π² m² s⁴`` (G,), detached.

    A 3-D Gaussian of peak ``m`` and width ``s`` (px) projects to a 2-D Gaussian of peak
    ``m √(2π) s``, whose sum of squares is ``2π² m² s⁴``; a CTF halves it on average.
    This is how much one Gaussian's gate moves the data term, so a prior scaled by it
    acts on every Gaussian with the same strength relative to its own evidence.
    """
    m = base_amplitudes.detach().float()
    s = sigmas_px.detach().float()
    return (torch.pi**2) * m**2 * s**4


def occupancy_prior(occupancy: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """Binary-occupancy prior per image (B,): ``Σ_i E_i g_i (1 - g_i)``.

    Per image a subunit is there or not, so a gate between 0 and 1 only ever averages
    images of different compositions. For one Gaussian seen by images of which a
    fraction ``p`` contain it, the data term is about ``E (g - p)²`` and the prior
    ``κ E g (1 - g)``: the optimum is ``g = (2p - κ) / (2 - 2κ)``, clipped to [0, 1], so
    with weight ``κ`` a gate is rounded to 0 when ``p ≤ κ / 2`` (and to 1 when
    ``p ≥ 1 - κ / 2``): minority contamination of a latent region no longer shows as
    partial occupancy. Gaussians of one subunit add coherently, so for a whole subunit
    the effective ``κ`` is smaller than the nominal one.
    """
    return (occupancy.float() * (1.0 - occupancy.float()) * energy[None]).sum(dim=-1)
