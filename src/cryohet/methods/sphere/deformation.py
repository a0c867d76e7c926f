"""cryoSPHERE's per-image motion: each segment moves rigidly, blended by the memberships.

The decoder gives, per image and segment ``k``, a translation ``t_k`` (Å) and three
(six for ``"sixd"``) numbers for the rotation, read in one of three ways:

* ``"rotvec"``: the axis-angle vector itself, ``r_k = 2 o_k`` radians,
  uniform up to and past 180°;
* ``"quaternion"`` (the paper's): the vector part ``v_k`` of a quaternion whose real
  part is fixed at 1, so ``v = 0`` is no rotation, the same as rotvec at small angles
  (``2 atan|v| ~ 2|v|``), but the angle ``2 atan|v|`` stays below 180° and its rate
  ``2 / (1 + |v|^2)`` falls to 0.05 per unit at 162°;
* ``"sixd"`` (the default since method version 4): two vectors ``a = e_x + o_1``,
  ``b = e_y + o_2`` made orthonormal (Gram-Schmidt,
  :func:`~cryohet.geometry.rotations.sixd_to_matrix`) as the first two columns of the
  rotation matrix, so ``o = 0`` is no rotation (Zhou et al., CVPR 2019).

Why the axis-angle and quaternion readings cannot follow a full turn, and ``"sixd"`` can:
the decoder is continuous in ``z``, and the latents of a domain turning through 360°
lie on a closed loop. A closed loop in ``R^3`` (rotvec, or the quaternion vector part)
maps to a loop of rotations that can be shrunk to a point, but the true path, one full
turn about a fixed axis, is the loop of ``SO(3)`` that cannot (``pi_1(SO(3)) = Z_2``).
So somewhere along the loop the decoded turn must leave the true one by a large angle: a
"cut" that spoils the states near it. The two Gram-Schmidt vectors can follow the full
turn continuously (``a`` sweeps a circle around the axis), the degenerate point being
inside the latent loop, where no particle lies.

Why not the paper's quaternion: a domain that turns through a full circle (igg-1d's Fab)
must pass 180° somewhere along the latent path, which the quaternion reading cannot do
at all. Measured on igg-1d (D=64, SNR 0.05, input model at 0°, domain search on):
with the quaternion the models' turns stopped at ~175°, 23–48° short for the states at
198–234°; with rotvec they were within 10° of the truth up to 216°. On the 40° test
hinge the three were alike (seeds 0 and 1: rotvec 0.45/0.44 and 0.27/0.91 Å per state,
sixd 0.47/0.99 and 0.34/1.40 Å, the quaternion 0.19/0.55 and 0.41/0.72 Å).

Each becomes an axis-angle vector ``r_k``; residue ``i`` turns by ``w_ik r_k`` for each segment in turn
(the rotations composed in segment order, ``R_i = R_iK ... R_i1``) and moves by
``sum_k w_ik t_k``:

    x_i' = R_i x_i + sum_k w_ik t_k.

(A ``"sixd"`` matrix becomes the axis-angle vector of angle at most 180°, so a residue
shared between segments, ``0 < w_ik < 1``, flips its blended turn where the segment's
passes 180°; residues inside a segment, ``w_ik = 1``, follow the matrix exactly.)

Rotations are about the box centre: ``x`` are Å from the box centre (the
:class:`~cryohet.representations.GaussianMixture` frame), where the paper centres its
model at the origin for the same reason. With hard memberships this is exactly a rigid
motion of each segment; :func:`residue_transforms` returns ``(R_i, t_i)`` so that every
atom of a residue can follow it (``x' = R_i x + t_i`` in the same frame).
"""

from __future__ import annotations

import roma
import torch

from ...geometry.rotations import sixd_to_matrix

__all__ = [
    "segment_rotvecs",
    "decoded_rotvecs",
    "rotation_outputs",
    "ROTVEC_UNIT_RAD",
    "residue_transforms",
    "apply_transforms",
    "deform",
]

#: Radians per decoder output unit in the ``"rotvec"`` reading (module docstring).
ROTVEC_UNIT_RAD = 2.0


def segment_rotvecs(quat_vector: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors ``(..., K, 3)`` (radians) of the unit quaternions ``(v, 1) / |(v, 1)|``."""
    q = torch.cat([quat_vector, torch.ones_like(quat_vector[..., :1])], dim=-1)  # (x, y, z, w): roma's order
    return roma.unitquat_to_rotvec(q / q.norm(dim=-1, keepdim=True))


def rotation_outputs(rotation: str) -> int:
    """How many decoder outputs per segment the ``rotation`` reading takes (3, or 6 for ``"sixd"``)."""
    if rotation in ("quaternion", "rotvec"):
        return 3
    if rotation == "sixd":
        return 6
    raise ValueError(f"unknown rotation reading {rotation!r}")


def decoded_rotvecs(output: torch.Tensor, rotation: str) -> torch.Tensor:
    """Axis-angle vectors ``(..., K, 3)`` (radians) from the decoder's rotation outputs
    ``(..., K, rotation_outputs(rotation))``, read as ``"quaternion"`` vector parts, as
    ``"rotvec"``, or as ``"sixd"`` offsets from the identity's two columns (module docstring)."""
    if rotation == "quaternion":
        return segment_rotvecs(output)
    if rotation == "rotvec":
        return output * ROTVEC_UNIT_RAD
    if rotation == "sixd":
        identity = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=output.dtype, device=output.device)
        return roma.rotmat_to_rotvec(sixd_to_matrix(identity + output[..., :6]))
    raise ValueError(f"unknown rotation reading {rotation!r}")


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
    return apply_transforms(*residue_transforms(memberships, rotvecs, translations_A), centres_A)


def apply_transforms(rotations: torch.Tensor, shifts_A: torch.Tensor, centres_A: torch.Tensor) -> torch.Tensor:
    """``(B, N, 3)``: ``x_i' = R_i x_i + t_i`` for per-residue ``rotations (B, N, 3, 3)``,
    ``shifts_A (B, N, 3)`` and ``centres_A (N, 3)`` Å from the box centre."""
    return torch.einsum("bnij,nj->bni", rotations, centres_A) + shifts_A
