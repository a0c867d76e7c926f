"""Likelihoods: how an observed image's DFT is compared with a model image on a band.

Every score is per image, **lower is better** (a negative log-likelihood up to a
constant, or a distance), computed on the pixels of a :class:`~.bands.FourierBand` with
its Hermitian weights, from centred, unnormalised DFTs (:func:`~.fft.fft2_centered`):

* :class:`WeightedL2`: ``sum_k w(k) |Y(k) - M(k)|^2 / v`` with one noise variance ``v``
  per Fourier pixel. :meth:`WeightedL2.white_noise` sets ``v = sigma^2 D^2`` for white
  noise of pixel variance ``sigma^2``; on a ``"parseval"`` band this is the real-space sum
  of squared residuals in units of the noise variance (CryoSPIRE's data term).
* :class:`ShellGaussian`: ``sum_k w(k) |Y(k) - M(k)|^2 / sigma2(shell(k))``, coloured
  Gaussian noise with a variance per shell (RELION's ``sigma2_noise``; the EM baselines).
* :class:`NegativeCorrelation`: ``1 - Re <Y, M>_w / (|Y|_w |M|_w)``, insensitive to the
  scale of the model (for searches before the scale is known).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from .bands import FourierBand

__all__ = ["ImageLikelihood", "WeightedL2", "ShellGaussian", "NegativeCorrelation"]


def _power(r: torch.Tensor) -> torch.Tensor:
    return r.real**2 + r.imag**2


class ImageLikelihood(ABC):
    """A per-image score on a band (lower is better)."""

    band: FourierBand

    @abstractmethod
    def score(self, observed: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
        """``observed``, ``model``: complex ``(..., Ny, Nx)`` on :attr:`band` -> ``(...)``."""

    def __call__(self, observed: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
        return self.score(observed, model)

    def on(self, band: FourierBand) -> ImageLikelihood:
        """The same likelihood on a sub-band of :attr:`band` (e.g. :meth:`FourierBand.lowpass`)."""
        raise NotImplementedError(f"{type(self).__name__} does not support sub-bands")

    @property
    def pixel_weights(self) -> torch.Tensor:
        """For a quadratic likelihood, ``score = sum_k pixel_weights(k) |Y(k) - M(k)|^2``:
        ``(Ny, Nx)`` float32 (what a pose search expands into matrix products)."""
        raise NotImplementedError(f"{type(self).__name__} is not a weighted sum of squares")


class WeightedL2(ImageLikelihood):
    """``sum_k w(k) |Y - M|^2 / noise_variance`` (one variance for every Fourier pixel)."""

    def __init__(self, band: FourierBand, noise_variance: float = 1.0) -> None:
        self.band = band
        self.noise_variance = float(noise_variance)

    @classmethod
    def white_noise(cls, band: FourierBand, pixel_variance: float = 1.0) -> WeightedL2:
        """White real-space noise of variance ``pixel_variance``: each unnormalised DFT
        pixel then has variance ``pixel_variance * D^2``."""
        return cls(band, pixel_variance * float(band.box**2))

    def score(self, observed: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
        return (_power(observed - model) * self.band.weights).sum(dim=(-1, -2)) / self.noise_variance

    def on(self, band: FourierBand) -> WeightedL2:
        return WeightedL2(band, self.noise_variance)

    @property
    def pixel_weights(self) -> torch.Tensor:
        return self.band.weights / self.noise_variance


class ShellGaussian(ImageLikelihood):
    """``sum_k w(k) |Y - M|^2 / sigma2(shell(k))``: Gaussian noise with a variance per shell.

    ``sigma2`` is ``(n_shells,)`` (shell ``s`` = rounded radius in Fourier pixels); shells
    beyond it take the last value (they carry zero weight on the bands made for it).
    """

    def __init__(self, band: FourierBand, sigma2: torch.Tensor) -> None:
        self.band = band
        self.sigma2 = sigma2
        inv = 1.0 / sigma2.clamp_min(1e-30)
        idx = band.shells.clamp_max(inv.numel() - 1).to(inv.device)
        #: ``w(k) / sigma2(shell(k))`` per pixel ``(Ny, Nx)`` float32 (0 outside the band).
        self._pixel_weights = (inv[idx] * band.weights.to(inv.device, torch.float64)).to(torch.float32)

    @property
    def pixel_weights(self) -> torch.Tensor:
        return self._pixel_weights

    def on(self, band: FourierBand) -> ShellGaussian:
        return ShellGaussian(band, self.sigma2)

    def score(self, observed: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
        return (_power(observed - model) * self.pixel_weights).sum(dim=(-1, -2))

    @staticmethod
    def estimate_sigma2(band: FourierBand, power_sum: torch.Tensor, n_images: int) -> torch.Tensor:
        """Per-shell noise variance from ``band.shell_sums`` of residual powers over ``n_images``."""
        return power_sum / (n_images * band.shell_counts().to(power_sum.device).clamp_min(1))


class NegativeCorrelation(ImageLikelihood):
    """``1 - Re sum w conj(Y) M / sqrt(sum w |Y|^2 sum w |M|^2)`` (0 for a perfect match up to scale)."""

    def __init__(self, band: FourierBand) -> None:
        self.band = band

    def score(self, observed: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
        w = self.band.weights
        cross = ((observed.conj() * model).real * w).sum(dim=(-1, -2))
        norm = torch.sqrt((_power(observed) * w).sum(dim=(-1, -2)) * (_power(model) * w).sum(dim=(-1, -2)))
        return 1.0 - cross / norm.clamp_min(torch.finfo(norm.dtype).tiny)

    def on(self, band: FourierBand) -> NegativeCorrelation:
        return NegativeCorrelation(band)
