"""Real-space masks with cosine soft edges, for images ``(D, D)`` and volumes ``(D, D, D)``.

Centres are at index ``D // 2``; radii and widths in pixels (voxels). A soft edge runs
*outward* from the radius (RELION's ``softMaskOutsideMap``): the mask is 1 for
``r <= radius``, ``0.5 (1 + cos(pi (r - radius) / width))`` up to ``radius + width``, then 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

__all__ = ["circular_mask", "cosine_edge", "spherical_mask", "threshold_mask"]


def cosine_edge(dist: torch.Tensor, radius: float, width: float) -> torch.Tensor:
    """1 for ``dist <= radius``, raised-cosine fall-off over ``width``, 0 beyond (hard if 0)."""
    if width <= 0:
        return (dist <= radius).to(dist.dtype)
    t = ((dist - radius) / width).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * t))


def _radius(box: int, ndim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    c = torch.arange(box, device=device, dtype=dtype) - box // 2
    grids = torch.meshgrid(*([c] * ndim), indexing="ij")
    return torch.sqrt(sum(g * g for g in grids))


def circular_mask(
    box: int,
    radius_px: float | None = None,
    soft_edge_px: float = 0.0,
    device=None,
    dtype=torch.float32,
) -> torch.Tensor:
    """``(D, D)`` circular mask, radius defaulting to ``D / 2``."""
    r = box / 2 if radius_px is None else radius_px
    return cosine_edge(_radius(box, 2, device, dtype), r, soft_edge_px)


def spherical_mask(
    box: int,
    radius_px: float | None = None,
    soft_edge_px: float = 0.0,
    device=None,
    dtype=torch.float32,
) -> torch.Tensor:
    """``(D, D, D)`` spherical mask, radius defaulting to ``D / 2``."""
    r = box / 2 if radius_px is None else radius_px
    return cosine_edge(_radius(box, 3, device, dtype), r, soft_edge_px)


def threshold_mask(
    volume: torch.Tensor, threshold: float, dilate_px: float = 0.0, soft_edge_px: float = 0.0
) -> torch.Tensor:
    """Mask of ``volume > threshold``, dilated by ``dilate_px`` and given a cosine edge.

    Like ``relion_mask_create --ini_threshold --extend_inimask --width_soft_edge``: voxels
    within ``dilate_px`` (Euclidean) of the thresholded region are 1, then a raised
    cosine falls to 0 over ``soft_edge_px``. Returns a tensor on the volume's device.
    """
    core = volume.detach().cpu().numpy() > threshold
    if not core.any():
        raise ValueError(f"no voxel above the threshold {threshold}")
    dist = ndimage.distance_transform_edt(~core).astype(np.float32)
    d = torch.from_numpy(dist).to(
        device=volume.device, dtype=volume.dtype if volume.is_floating_point() else torch.float32
    )
    return cosine_edge(d, float(dilate_px), soft_edge_px)
