"""``render``: the single forward model (pose, shift, CTF) for every representation.

    image = IDFT[ CTF(k) * exp(+2 pi i k.o) * P_A[rho](k) ]

with ``P_A[rho]`` the DFT of the projection along z of the density rotated by RELION
``A`` (pixel-sum units), ``o`` the RELION origin in Å, ``CTF`` RELION's (``+w`` at k = 0)
and k in 1/Å on the image's centred DFT grid. Voxel volumes are Fourier-sliced
(:mod:`.projection`); Gaussian mixtures are projected analytically (:mod:`.gaussians`).
"""

from __future__ import annotations

from typing import Literal

import torch

from ..representations.gaussian_mixture import GaussianMixture
from ..representations.voxel import VoxelVolume
from .ctf import compute_ctf_grid, ctf_params_tensor
from .fft import fft2_centered, frequencies_1d, ifft2_centered
from .gaussians import gaussian_projection_ft, project_gaussians
from .projection import FourierVolume, project, project_fourier, volume_to_fourier
from .shifts import phase_ramp

__all__ = ["render"]

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
    """Images of ``representation`` at the given poses, shifts and CTFs.

    Args:
        representation: :class:`VoxelVolume` (resampled to ``box``/``apix`` when they
            differ), :class:`GaussianMixture`, or a prepared :class:`FourierVolume` of a
            ``box^3`` volume at ``apix`` (reuse it to avoid a 3D FFT per call).
        rotations: ``(B, 3, 3)`` RELION ``A``.
        shifts_A: ``(B, 2)`` RELION origins in Å, or None.
        ctf_params: ``(B, 9)`` CTF parameters (:mod:`.ctf`), a ``CTFParams``, or None.
        box, apix: image size in pixels and pixel size in Å.
        output: ``"real"`` images ``(B, box, box)`` or the ``"fourier"`` centred DFT
            (complex ``(B, box, box)``, zero frequency at ``box // 2``).
        oversample: padding factor of the Fourier-slice projector (voxel volumes).
        image_oversample: voxel volumes only; ``m > 1`` samples the central slice at
            spacing ``1/(m box)`` and crops the real image (``m^2`` the cost, ~3x more
            accurate; see :func:`cryohet.imaging.projection.project`).

    Returns:
        Differentiable in every tensor of the representation and in the pose/shift inputs.
    """
    if isinstance(representation, GaussianMixture):
        ref = representation.centers_A
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

    if isinstance(representation, GaussianMixture):
        g = representation
        if output == "real":
            return project_gaussians(g.centers_A, g.amplitudes, g.sigmas_A, rot, box, apix, shifts, params)
        k = frequencies_1d(box, apix, device=dev, dtype=dt)
        ctf = None if params is None else compute_ctf_grid(k, k, params)
        return gaussian_projection_ft(g.centers_A, g.amplitudes, g.sigmas_A, rot, k, k, apix, shifts, ctf)

    if isinstance(representation, VoxelVolume):
        vft = volume_to_fourier(representation.to_volume(box, apix), oversample)
    else:
        vft = representation
        if vft.box != box:
            raise ValueError(f"FourierVolume of a {vft.box}^3 volume cannot render {box}x{box} images")
    if image_oversample == 1:
        F = project_fourier(vft, rot)
    else:
        F = fft2_centered(project(vft, rot, image_oversample=image_oversample))
    k = frequencies_1d(box, apix, device=dev, dtype=dt)
    if shifts is not None:
        F = F * phase_ramp(k, k, shifts)
    if params is not None:
        F = F * compute_ctf_grid(k, k, params)
    return F if output == "fourier" else ifft2_centered(F).real
