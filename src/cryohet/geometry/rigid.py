"""Rigid-body fits and motions of point sets (Kabsch; rotation about a pivot).

Conventions: rotations are 3x3 matrices acting on column vectors (``p' = R p``), points
are ``(x, y, z)`` rows in any one length unit; batches lead.
"""

from __future__ import annotations

import torch

__all__ = ["kabsch", "move_about_pivot"]


def kabsch(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted least-squares rigid fit ``dst ≈ R src + t`` for batches of point sets.

    Args:
        src, dst: ``(M, P, 3)`` corresponding points.
        w: ``(M, P)`` non-negative weights (normalised per set).

    Returns:
        ``R (M, 3, 3)`` proper rotations (det +1, reflections excluded) and ``t (M, 3)``.
    """
    w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
    cs = (w[..., None] * src).sum(dim=1)
    cd = (w[..., None] * dst).sum(dim=1)
    h = torch.einsum("mp,mpi,mpj->mij", w, src - cs[:, None], dst - cd[:, None])
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.det(vt.transpose(1, 2) @ u.transpose(1, 2)))
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1))
    rot = vt.transpose(1, 2) @ fix @ u.transpose(1, 2)
    t = cd - torch.einsum("mij,mj->mi", rot, cs)
    return rot, t


def move_about_pivot(
    offsets: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor, pivots: torch.Tensor
) -> torch.Tensor:
    """Points given as offsets from their pivot, rotated about it and translated:
    ``pivot + t + R (offset)``.

    All inputs broadcast against each other: ``offsets (..., 3)``, ``rotations (..., 3, 3)``,
    ``translations (..., 3)``, ``pivots (..., 3)`` (e.g. per image and Gaussian, each
    Gaussian taking its part's pivot, rotation and translation).
    """
    moved = torch.einsum("...ij,...j->...i", rotations, offsets)
    return pivots + translations + moved
