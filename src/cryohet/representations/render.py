"""The one place where central slices become images: slice x CTF x shift phase, and the likelihood.

    image DFT = CTF(k) * exp(+2 pi i k.o) * slice_A[rho](k)

with ``slice_A[rho]`` a representation's central slice (:mod:`.base`), ``o`` the RELION
origin in Å, ``CTF`` RELION's (``+w`` at k = 0) and k in 1/Å on a
:class:`~cryohet.imaging.bands.FourierBand`. Training steps, latent and pose searches
and the baselines' EM all go through :func:`model_images` / :func:`score_batch` on a
:class:`BandBatch`; :func:`render` makes whole images (simulation, tests, figures) with
the same composition.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch

from ..data.batch import ParticleBatch
from ..imaging.bands import FourierBand
from ..imaging.ctf import ctf_params_tensor
from ..imaging.fft import fft2_centered
from ..imaging.likelihood import ImageLikelihood
from ..imaging.projection import FourierVolume, volume_to_fourier
from .base import SliceSource
from .gaussian_mixture import GaussianMixture
from .voxel import VoxelVolume

__all__ = ["BandBatch", "prepare_batch", "model_images", "score_batch", "render"]


@dataclass
class BandBatch:
    """A particle batch prepared on a band, on the compute device.

    Attributes:
        index: ``(B,)`` dataset rows.
        observed: complex ``(B, Ny, Nx)``: the images' DFTs on the band.
        filters: ``CTF * exp(2 pi i k.o)`` per image on the band ``(B, Ny, Nx)``, or None.
        rotations: ``(B, 3, 3)`` RELION ``A``.
        shifts_A: ``(B, 2)`` RELION origins in Å (already inside ``filters``).
        band: the band.
    """

    index: torch.Tensor
    observed: torch.Tensor
    filters: torch.Tensor | None
    rotations: torch.Tensor
    shifts_A: torch.Tensor | None
    band: FourierBand

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def restrict(self, band: FourierBand) -> BandBatch:
        """The same batch on a sub-band of :attr:`band` (e.g. :meth:`FourierBand.lowpass`)."""
        if band is self.band:
            return self
        return replace(
            self,
            observed=band.restrict(self.observed, self.band),
            filters=None if self.filters is None else band.restrict(self.filters, self.band),
            band=band,
        )


def prepare_batch(batch: ParticleBatch, band: FourierBand, device: torch.device | str) -> BandBatch:
    """Move ``batch`` to ``device``; transform its images and build its filters on ``band``."""
    b = batch.to(device, non_blocking=True)
    if b.rotations is None:
        raise ValueError("prepare_batch needs poses (rotations)")
    return BandBatch(
        index=b.index,
        observed=band.observed(b.images),
        filters=band.filters(b.ctf_params, b.shifts_A),
        rotations=b.rotations,
        shifts_A=b.shifts_A,
        band=band,
    )


def model_images(
    source: SliceSource,
    rotations: torch.Tensor,
    band: FourierBand,
    filters: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
) -> torch.Tensor:
    """Model image DFTs on ``band``: ``source.slices(rotations, band, z) * filters``."""
    F = source.slices(rotations, band, z)
    return F if filters is None else F * filters


def score_batch(
    source: SliceSource, bb: BandBatch, likelihood: ImageLikelihood, z: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-image scores ``(B,)`` of ``bb`` against ``source`` (lower is better)."""
    return likelihood.score(bb.observed, model_images(source, bb.rotations, bb.band, bb.filters, z))


Renderable = VoxelVolume | GaussianMixture | FourierVolume


def render(
    representation: Renderable,
    rotations: torch.Tensor,
    shifts_A: torch.Tensor | None,
    ctf_params: torch.Tensor | None,
    box: int,
    apix: float,
    output: Literal["real", "fourier"] = "real",
    oversample: int = 2,
    image_oversample: int = 1,
) -> torch.Tensor:
    """Whole images of ``representation`` at the given poses, shifts and CTFs.

    Args:
        representation: :class:`VoxelVolume` (resampled to ``box``/``apix`` when they
            differ), :class:`GaussianMixture`, or a prepared
            :class:`~cryohet.imaging.projection.FourierVolume` of a ``box^3`` volume at ``apix``.
        rotations: ``(B, 3, 3)`` RELION ``A``.
        shifts_A: ``(B, 2)`` RELION origins in Å, or None.
        ctf_params: ``(B, 9)`` CTF parameters (:mod:`cryohet.imaging.ctf`), a ``CTFParams``, or None.
        box, apix: image size in pixels and pixel size in Å.
        output: ``"real"`` images ``(B, box, box)`` or their ``"fourier"`` centred DFTs.
        oversample: padding factor of the Fourier-slice projector (voxel volumes).
        image_oversample: voxel volumes only; ``m > 1`` samples the central slice at
            spacing ``1/(m box)`` and crops the real image before CTF and shift (``m^2``
            the cost, ~3x more accurate; :func:`cryohet.imaging.projection.project`).

    Returns:
        Differentiable in every tensor of the representation and in the pose/shift inputs.
    """
    if isinstance(representation, GaussianMixture):
        ref = representation.centres_A
    elif isinstance(representation, VoxelVolume):
        ref = representation.data
    elif isinstance(representation, FourierVolume):
        ref = representation.data.real
    else:
        raise TypeError(f"cannot render a {type(representation).__name__}")
    dev, dt = ref.device, ref.dtype
    rot = torch.as_tensor(rotations).to(device=dev, dtype=dt)
    params = None if ctf_params is None else ctf_params_tensor(ctf_params, dev, dt)
    shifts = None if shifts_A is None else torch.as_tensor(shifts_A, device=dev).to(dt)

    source: SliceSource
    if isinstance(representation, GaussianMixture):
        source = representation
    elif isinstance(representation, VoxelVolume):
        source = volume_to_fourier(representation.to_volume(box, apix), oversample)
    else:
        source = representation
        if representation.box != box:
            raise ValueError(f"FourierVolume of a {representation.box}^3 volume cannot render {box}x{box} images")

    gaussian_real = isinstance(source, GaussianMixture) and output == "real"
    band = (FourierBand.half_plane if gaussian_real else FourierBand.full_plane)(box, apix, device=dev)
    if image_oversample != 1 and not isinstance(source, GaussianMixture):
        fine = FourierBand.full_plane(int(image_oversample) * box, apix, device=dev)
        F = fft2_centered(fine.to_images(source.slices(rot, fine), crop=box))
    else:
        F = source.slices(rot, band)
    filters = band.filters(params, shifts)
    if filters is not None:
        F = F * filters
    return F if output == "fourier" else band.to_images(F)
