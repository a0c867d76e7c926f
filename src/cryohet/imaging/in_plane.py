"""In-plane rotation of particle images, and the pose that goes with it.

Rotating an image by ``alpha`` about its centre (pixel ``D // 2``, the FFT centre) gives
the projection of the same volume at another pose: with RELION's ``x_img = A x_vol``, the
image rotated by ``alpha`` is the projection at ``A' = R_z(alpha) A`` with the origin
rotated the same way, ``origin' = Q(alpha) origin`` (``Q`` the 2x2 block of ``R_z``).
So one particle with a known pose yields a continuum of (image, pose) pairs: the
augmentation that keeps a pose encoder from memorising the poses of a few training
particles (:mod:`cryohet.methods.hetacumn.warm_start`).

Conventions: images are ``(B, D, D)`` arrays indexed ``[y, x]`` (row, column), as
everywhere in cryohet; ``alpha`` in radians, counterclockwise in the ``(x, y)`` plane.
The CTF turns with the image: exact for a round CTF, an approximation under astigmatism
(the defocus angle moves by ``alpha``). The rotation is resampled bicubically on a grid
oversampled ``oversample`` times by Fourier padding, then Fourier-cropped back, so the
image's spectrum (and its noise) keeps its power up to Nyquist; the corners beyond the
inscribed disc are filled from outside the box (zeros), so a consumer should look inside
the disc only (the shared pose encoder masks it).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .fft import fourier_downsample_images

__all__ = ["quarter_turn", "rotate_images", "rotate_poses_in_plane", "z_rotations"]


def z_rotations(angles_rad: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` rotations about the z (viewing) axis by ``angles_rad (B,)``,
    counterclockwise in the ``(x, y)`` plane."""
    c, s = torch.cos(angles_rad), torch.sin(angles_rad)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=-1).reshape(*angles_rad.shape, 3, 3)


def rotate_poses_in_plane(
    rotations: torch.Tensor, shifts_A: torch.Tensor, angles_rad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pose of an image rotated in plane by ``angles_rad (B,)`` (module doc):
    ``rotations (B, 3, 3)`` RELION ``A`` -> ``R_z(alpha) A``; origins ``shifts_A (B, 2)``
    (Å, ``x, y``) -> ``Q(alpha) origin``."""
    rz = z_rotations(angles_rad.to(rotations))
    return rz @ rotations, (rz[..., :2, :2] @ shifts_A[..., None].to(rz))[..., 0]


def rotate_images(images: torch.Tensor, angles_rad: torch.Tensor, oversample: int = 2) -> torch.Tensor:
    """``images (B, D, D)`` rotated about pixel ``(D // 2, D // 2)`` by ``angles_rad (B,)``
    (module doc): ``out(p) = in(c + Q(-alpha) (p - c))``."""
    d = images.shape[-1]
    big = fourier_downsample_images(images, oversample * d) if oversample > 1 else images
    n = big.shape[-1]
    centre = float(n // 2)
    idx = torch.arange(n, device=images.device, dtype=images.dtype) - centre
    y, x = torch.meshgrid(idx, idx, indexing="ij")
    c, s = torch.cos(angles_rad).to(images)[:, None, None], torch.sin(angles_rad).to(images)[:, None, None]
    # the source of each output pixel: Q(-alpha) applied to its offset from the centre
    src_x = c * x + s * y + centre
    src_y = -s * x + c * y + centre
    grid = torch.stack([(2 * src_x + 1) / n - 1, (2 * src_y + 1) / n - 1], dim=-1)  # align_corners=False
    out = F.grid_sample(big[:, None], grid, mode="bicubic", padding_mode="zeros", align_corners=False)[:, 0]
    return fourier_downsample_images(out, d) if oversample > 1 else out


#: Pixel roll ``(rows, columns)`` that moves ``torch.rot90``'s centre ``((D - 1) / 2)`` onto
#: pixel ``D // 2`` after a quarter turn ``q`` (even ``D``).
_QUARTER_ROLL = {0: (0, 0), 1: (0, 1), 2: (1, 1), 3: (1, 0)}


def quarter_turn(images: torch.Tensor, quarters: int) -> torch.Tensor:
    """``images (B, D, D)`` (even ``D``) turned by ``quarters * 90`` degrees about pixel
    ``(D // 2, D // 2)``, counterclockwise in ``(x, y)`` as :func:`rotate_images`: a
    permutation of the pixels (no resampling; the one row and column that wrap round
    lie outside the inscribed disc)."""
    q = quarters % 4
    if q == 0:
        return images
    return torch.roll(torch.rot90(images, -q, dims=(-2, -1)), shifts=_QUARTER_ROLL[q], dims=(-2, -1))
