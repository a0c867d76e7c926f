"""Voxel volumes and band-limited (Fourier) resampling between grids."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..imaging.bands import FourierBand
from ..imaging.fft import fft3_centered
from ..imaging.projection import FourierVolume, volume_to_fourier
from .base import Representation

__all__ = ["VoxelVolume", "resample_volume"]


def _axis_matrix(n_in: int, apix_in: float, n_out: int, apix_out: float, device, dtype) -> torch.Tensor:
    """``(n_out, n_in)`` complex: evaluate a centred length-``n_in`` DFT series at new samples.

    Row ``j`` evaluates ``(1/n_in) sum_m F_m exp(2 pi i k_m x_j)`` at ``x_j = (j - n_out//2) apix_out``
    Å, with ``k_m = (m - n_in//2) / (n_in apix_in)``. Frequencies above the output Nyquist
    (``[-0.5, 0.5)/apix_out``) are dropped (anti-aliasing when downsampling), and samples
    outside the input box are zero.
    """
    rdt = torch.float64
    k = (torch.arange(n_in, device=device, dtype=rdt) - n_in // 2) / (n_in * apix_in)
    x = (torch.arange(n_out, device=device, dtype=rdt) - n_out // 2) * apix_out
    ph = 2.0 * math.pi * x[:, None] * k[None, :]
    M = torch.complex(torch.cos(ph), torch.sin(ph)) / n_in
    nyq = 0.5 / apix_out
    tol = 1e-9 / apix_in
    keep_k = (k >= -nyq - tol) & (k < nyq - tol)
    lo, hi = (-(n_in // 2)) * apix_in, (n_in - 1 - n_in // 2) * apix_in
    inside = (x >= lo - 1e-6 * apix_in) & (x <= hi + 1e-6 * apix_in)
    M = M * keep_k[None, :] * inside[:, None]
    return M.to(torch.complex64 if dtype == torch.float32 else torch.complex128)


def resample_volume(volume: torch.Tensor, apix_in: float, box_out: int, apix_out: float) -> torch.Tensor:
    """Band-limited resampling of a ``(D, D, D)`` volume onto a ``box_out^3`` grid at ``apix_out``.

    Trigonometric (Fourier-series) interpolation, exact for any pixel-size ratio: the
    same as Fourier cropping/padding when the box extents match. Both grids share the
    centre (index ``D // 2``); values keep their units (voxel values, not sums), and
    samples outside the input box are zero. Differentiable; ``O(box_out * D^3)``.
    """
    n_in = volume.shape[-1]
    if box_out == n_in and abs(apix_in - apix_out) < 1e-9 * apix_in:
        return volume
    F = fft3_centered(volume)
    M = _axis_matrix(n_in, apix_in, box_out, apix_out, volume.device, volume.dtype)
    out = torch.einsum("zk,kyx->zyx", M, F)
    out = torch.einsum("yk,zkx->zyx", M, out)
    out = torch.einsum("xk,zyk->zyx", M, out)
    return out.real.to(volume.dtype)


@dataclass
class VoxelVolume(Representation):
    """A voxel grid ``data (D, D, D)`` ``(z, y, x)`` at ``apix`` Å/voxel, centre ``D // 2``.

    Central slices come from its oversampled, gridding-corrected transform
    (:class:`~cryohet.imaging.projection.FourierVolume`, ``oversample`` x padding),
    prepared once and reused while ``data`` is unchanged (a learnable ``data`` is
    re-transformed on every call, so gradients flow).
    """

    data: torch.Tensor
    apix: float
    oversample: int = 2

    def __post_init__(self) -> None:
        d = self.data.shape[-1]
        if self.data.shape != (d, d, d):
            raise ValueError(f"VoxelVolume needs a cubic (D, D, D) grid, got {tuple(self.data.shape)}")
        self._prepared: tuple[int, FourierVolume] | None = None

    def fourier(self) -> FourierVolume:
        """The prepared transform (cached while ``data`` is not modified and needs no gradient)."""
        if self.data.requires_grad:
            return volume_to_fourier(self.data, self.oversample)
        version = self.data._version
        if self._prepared is None or self._prepared[0] != version:
            self._prepared = (version, volume_to_fourier(self.data, self.oversample))
        return self._prepared[1]

    def slices(self, rotations: torch.Tensor, band: FourierBand, z: torch.Tensor | None = None) -> torch.Tensor:
        """Fourier-sliced central slices on ``band`` (its pixel must be this volume's voxel);
        ``z`` ignored."""
        if abs(band.apix - self.apix) > 1e-6 * self.apix:
            raise ValueError(
                f"a {self.apix:.4g} Å/voxel volume cannot answer slices at {band.apix:.4g} Å/px (resample it first)"
            )
        return self.fourier().slices(rotations, band)

    @property
    def box(self) -> int:
        return int(self.data.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.data.device

    def to_volume(self, box: int, apix: float) -> torch.Tensor:
        """This volume on a ``box^3`` grid at ``apix`` (Fourier resampling; identity if equal)."""
        return resample_volume(self.data, self.apix, box, apix)
