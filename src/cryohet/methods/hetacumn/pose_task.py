"""Task 2 of HetACUMN: images rendered at random poses, and the encoder's error on them.

:func:`render_at_random_poses` draws uniform rotations (Haar on SO(3)) and uniform shifts,
renders a slice source (the run's field at latents ``z``, or any representation) through
the render seam's filters (CTF x shift phase) on a full-plane band, and adds white noise;
it runs under ``no_grad`` (the decoder's gradients are stopped). :func:`pose_task_loss`
scores the encoder on them: the rotation error (squared Frobenius for the best head of each
image when the encoder regresses rotations; the cross-entropy against soft targets on its
grid when it classifies them, :meth:`~cryohet.networks.pose_encoder.EncodedImages.rotation_nll`)
plus the shift error in units of ``shift_scale_A``, and the squared latent error.
Rotations are RELION ``A``; shifts are origins in Å.
"""

from __future__ import annotations

import numpy as np
import torch

from ...geometry.rotations import random_rotations

__all__ = ["render_at_random_poses", "pose_task_loss"]


@torch.no_grad()
def render_at_random_poses(
    source,
    band,
    n: int,
    rng: np.random.Generator,
    *,
    ctf_params: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    max_shift_A: float = 0.0,
    noise_std: float = 0.0,
    radius_px: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images (n, D, D), rotations (n, 3, 3), shifts_A (n, 2))`` (module doc); with
    ``radius_px`` the slices are zero beyond that many Fourier pixels (a field is only
    trained inside the band its data term sees: beyond it, its values are noise of its own)."""
    device = band.kx_per_A.device
    rot = torch.as_tensor(random_rotations(n, rng), dtype=torch.float32, device=device)
    shifts = torch.as_tensor(rng.uniform(-max_shift_A, max_shift_A, (n, 2)), dtype=torch.float32, device=device)
    slices = source.slices(rot, band, z) if z is not None else source.slices(rot, band)
    if radius_px is not None:
        k_px = torch.sqrt(band.kx_per_px[None, :] ** 2 + band.ky_per_px[:, None] ** 2) * band.box  # (Ny, Nx)
        slices = slices * (k_px <= radius_px)
    filters = band.filters(ctf_params, shifts if max_shift_A > 0 else None)
    images = band.to_images(slices if filters is None else slices * filters)
    if noise_std > 0:
        images = images + noise_std * torch.randn_like(images)
    return images, rot, shifts


def pose_task_loss(
    encoded,
    rotations: torch.Tensor,
    shifts_A: torch.Tensor,
    shift_scale_A: float,
    z: torch.Tensor | None = None,
    shift_weight: float = 1.0,
    mask: torch.Tensor | None = None,
    z_mean: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean pose error (best head of each image) and mean latent error (0 without ``z``) of
    the encoder's answer ``encoded`` on images rendered at ``rotations``/``shifts_A``;
    ``mask (n,)`` bool: the pose error of these images only (0 when none); ``z_mean``: the
    latent means when they are not ``encoded.z_mean`` (HetACUMN's subspace readout)."""
    shift = (((encoded.shifts_A - shifts_A[:, None]) / max(shift_scale_A, 1e-12)) ** 2).sum(-1)  # (n, H)
    if encoded.rotation_logits is not None:  # classified: the heads share one shift
        each = encoded.rotation_nll(rotations) + shift_weight * shift[:, 0]
    else:
        frob = ((encoded.rotations - rotations[:, None]) ** 2).sum(dim=(-2, -1))  # (n, H)
        each = (frob + shift_weight * shift).min(dim=1).values
    if mask is not None:
        each = each[mask]
    pose = each.mean() if each.numel() else each.sum()
    z_mean = encoded.z_mean if z_mean is None else z_mean
    latent = ((z_mean - z) ** 2).sum(-1).mean() if z is not None else torch.zeros((), device=shift.device)
    return pose, latent
