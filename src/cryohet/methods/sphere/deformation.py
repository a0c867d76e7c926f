"""cryoSPHERE's per-image motion: each segment moves rigidly, blended by the memberships.

The decoder gives, per image and segment ``k``, a translation ``t_k`` (Å) and the vector
part ``v_k`` of a quaternion whose real part is fixed at 1 (so ``v = 0`` is no rotation
and the rotation angle stays below 180°). The quaternion ``(v_k, 1) / |(v_k, 1)|`` becomes
an axis-angle vector ``r_k``; residue ``i`` turns by ``w_ik r_k`` for each segment in turn
(the rotations composed in segment order, ``R_i = R_iK ... R_i1``) and moves by
``sum_k w_ik t_k``:

    x_i' = R_i x_i + sum_k w_ik t_k.

Rotations are about the box centre: ``x`` are Å from the box centre (the
:class:`~cryohet.representations.GaussianMixture` frame), where the paper centres its
model at the origin for the same reason. With hard memberships this is exactly a rigid
motion of each segment; :func:`residue_transforms` returns ``(R_i, t_i)`` so that every
atom of a residue can follow it (``x' = R_i x + t_i`` in the same frame).
"""

from __future__ import annotations

import roma
import torch

__all__ = ["segment_rotvecs", "residue_transforms", "deform"]


def segment_rotvecs(quat_vector: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors ``(..., K, 3)`` (radians) of the unit quaternions ``(v, 1) / |(v, 1)|``."""
    q = torch.cat([quat_vector, torch.ones_like(quat_vector[..., :1])], dim=-1)  # (x, y, z, w): roma's order
    return roma.unitquat_to_rotvec(q / q.norm(dim=-1, keepdim=True))


def residue_transforms(
    memberships: torch.Tensor, rotvecs: torch.Tensor, translations_A: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-residue rotation ``(B, N, 3, 3)`` and translation ``(B, N, 3)`` Å.

    ``memberships (B, N, K)`` (or ``(N, K)``), ``rotvecs (B, K, 3)``, ``translations_A (B, K, 3)``.
    """
    w = memberships if memberships.ndim == 3 else memberships[None].expand(rotvecs.shape[0], -1, -1)
    b, n, k = w.shape
    rot = torch.eye(3, dtype=rotvecs.dtype, device=rotvecs.device).expand(b, n, 3, 3)
    for j in range(k):  # composed in segment order
        r_j = roma.rotvec_to_rotmat(w[:, :, j, None] * rotvecs[:, None, j, :])  # (B, N, 3, 3)
        rot = r_j @ rot
    shift = torch.einsum("bnk,bkc->bnc", w, translations_A)
    return rot, shift


def deform(
    centres_A: torch.Tensor, memberships: torch.Tensor, rotvecs: torch.Tensor, translations_A: torch.Tensor
) -> torch.Tensor:
    """Moved residue centres ``(B, N, 3)`` Å: ``x_i' = R_i x_i + t_i`` (module docstring);
    ``centres_A (N, 3)`` Å from the box centre."""
    rot, shift = residue_transforms(memberships, rotvecs, translations_A)
    return torch.einsum("bnij,nj->bni", rot, centres_A) + shift
