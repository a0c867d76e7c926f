"""CryoSPIRE's objective: the shared data term plus the method's own priors.

The data term is the shared likelihood (:mod:`cryohet.imaging.likelihood`) on the shared
band (:mod:`cryohet.imaging.bands`): images and rendered mixtures are compared on the half
plane ``kx >= 0`` inside the Nyquist circle ``|k| < D / 2`` (pixels), without the DC term
(images are mean-subtracted), with ``"parseval"`` weights (2 for ``kx > 0``, 1 on the
``kx = 0`` column), so that

    loss_n = sum_w |Y_n(k) - CTF_n(k) P_n(k)|^2 / D^2

equals the real-space sum of squared residuals of the band-limited images (Parseval).
Images are normalised to unit variance, so for pure noise ``loss_n`` is about the number
of pixels in the disc: the paper's ``||I - CTF * P(G(z))||^2`` in units of the noise
variance. :func:`data_band` and :func:`data_likelihood` build exactly that.
"""

from __future__ import annotations

import torch

from ...imaging.bands import FourierBand
from ...imaging.likelihood import WeightedL2

__all__ = ["data_band", "data_likelihood", "occupancy_energy_weights", "occupancy_prior"]


def data_band(box: int, apix: float, device=None) -> FourierBand:
    """The band of the data term: the Nyquist disc of the half plane, Parseval weights."""
    return FourierBand.disc(box, apix, device=device)


def data_likelihood(band: FourierBand) -> WeightedL2:
    """The data term on ``band``: squared residuals in units of a unit pixel-noise variance."""
    return WeightedL2.white_noise(band, 1.0)


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
