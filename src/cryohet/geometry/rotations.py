"""Rotation conversions; cryohet's single rotation convention lives here.

**Convention.** A rotation is RELION's matrix ``A`` (``Euler_angles2matrix(rot, tilt,
psi)`` in RELION's ``euler.cpp``), acting on *column* vectors: a point of the volume at
``x_vol`` lands at ``x_img = A @ x_vol``; the image is the projection of the rotated
volume along z. In Fourier space the central slice of an image samples the volume's
transform at ``k3 = A.T @ (kx, ky, 0)``.

How other conventions map onto ``A`` (checked in tests against files they wrote):

* RELION Euler ZYZ ``(rot, tilt, psi)`` in degrees: ``A = Rz(psi) Ry(tilt) Rz(rot)``
  with *passive* elementary rotations, which equals the transpose of scipy's intrinsic
  ``"ZYZ"`` active rotation.
* cryoSPARC ``alignments3D/pose`` (axis-angle, radians): ``expmap(pose) = A.T``.
* cryoDRGN ``poses.pkl`` rotations ``R`` (row-vector convention ``coords @ R``): ``R = A``.

numpy functions take and return float64 arrays of shape ``(N, 3, 3)`` (or ``(3, 3)``
for a single rotation); the torch functions are batched and differentiable.
Quaternions are scalar-first ``(w, x, y, z)`` and describe the active rotation ``A``.
"""

from __future__ import annotations

import numpy as np
import roma
import torch
from scipy.spatial.transform import Rotation

__all__ = [
    "euler_relion_to_matrix",
    "matrix_to_euler_relion",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "sixd_to_matrix",
    "matrix_to_sixd",
    "random_rotations",
    "rotation_angle_deg",
    "is_rotation",
]


def _as_batch(x: np.ndarray, tail: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    arr = np.asarray(x, dtype=np.float64)
    single = arr.shape == tail
    if single:
        arr = arr[None]
    if arr.shape[1:] != tail:
        raise ValueError(f"expected shape (N, {', '.join(map(str, tail))}), got {arr.shape}")
    return arr, single


def euler_relion_to_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """RELION Euler angles ``(rot, tilt, psi)`` in degrees, shape (N, 3) -> ``A`` (N, 3, 3).

    Identical to RELION's ``Euler_angles2matrix``; ``A[2]`` is the viewing direction
    ``(sin tilt cos rot, sin tilt sin rot, cos tilt)``.
    """
    ang, single = _as_batch(angles_deg, (3,))
    alpha, beta, gamma = np.deg2rad(ang).T
    ca, sa = np.cos(alpha), np.sin(alpha)
    cb, sb = np.cos(beta), np.sin(beta)
    cg, sg = np.cos(gamma), np.sin(gamma)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    A = np.empty((len(ang), 3, 3))
    A[:, 0, 0] = cg * cc - sg * sa
    A[:, 0, 1] = cg * cs + sg * ca
    A[:, 0, 2] = -cg * sb
    A[:, 1, 0] = -sg * cc - cg * sa
    A[:, 1, 1] = -sg * cs + cg * ca
    A[:, 1, 2] = sg * sb
    A[:, 2, 0] = sc
    A[:, 2, 1] = ss
    A[:, 2, 2] = cb
    return A[0] if single else A


def matrix_to_euler_relion(A: np.ndarray) -> np.ndarray:
    """``A`` (N, 3, 3) -> RELION ``(rot, tilt, psi)`` in degrees, tilt in [0, 180].

    Follows RELION's ``Euler_matrix2angles``: at the gimbal lock (|sin tilt| < 1e-6) the
    whole in-plane angle is put in ``psi`` and ``rot = 0``.
    """
    M, single = _as_batch(A, (3, 3))
    sb = np.hypot(M[:, 2, 0], M[:, 2, 1])
    tilt = np.arctan2(sb, M[:, 2, 2])
    rot = np.arctan2(M[:, 2, 1], M[:, 2, 0])
    psi = np.arctan2(M[:, 1, 2], -M[:, 0, 2])
    lock = sb < 1e-6
    if np.any(lock):
        rot[lock] = 0.0
        # A = Rz(psi) Rz(+-rot) about the same axis; put everything in psi.
        psi[lock] = np.arctan2(-M[lock, 1, 0], M[lock, 0, 0])
    out = np.rad2deg(np.stack([rot, tilt, psi], axis=-1))
    return out[0] if single else out


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle vectors (N, 3), radians, active rotation -> matrices (N, 3, 3)."""
    v, single = _as_batch(rotvec, (3,))
    out = Rotation.from_rotvec(v).as_matrix()
    return out[0] if single else out


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """Matrices (N, 3, 3) -> axis-angle vectors (N, 3) in radians."""
    M, single = _as_batch(R, (3, 3))
    out = Rotation.from_matrix(M).as_rotvec()
    return out[0] if single else out


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Scalar-first unit quaternions ``(w, x, y, z)`` (N, 4) -> matrices (N, 3, 3)."""
    qq, single = _as_batch(q, (4,))
    out = Rotation.from_quat(qq[:, [1, 2, 3, 0]]).as_matrix()
    return out[0] if single else out


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Matrices (N, 3, 3) -> scalar-first quaternions ``(w, x, y, z)`` with ``w >= 0``."""
    M, single = _as_batch(R, (3, 3))
    xyzw = Rotation.from_matrix(M).as_quat()
    q = xyzw[:, [3, 0, 1, 2]]
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return q[0] if single else q


def sixd_to_matrix(sixd: torch.Tensor) -> torch.Tensor:
    """Continuous 6D representation (..., 6) -> rotation matrices (..., 3, 3).

    The 6 numbers are the first two *columns* of the matrix before Gram-Schmidt
    (Zhou et al. 2019); differentiable, defined everywhere except degenerate inputs.
    """
    cols = sixd.reshape(*sixd.shape[:-1], 2, 3).transpose(-1, -2)  # (..., 3, 2)
    return roma.special_gramschmidt(cols)


def matrix_to_sixd(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> 6D representation (..., 6): first two columns."""
    return R[..., :, :2].transpose(-1, -2).reshape(*R.shape[:-2], 6)


def random_rotations(n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """``n`` rotations drawn uniformly (Haar measure) on SO(3), float64 (n, 3, 3)."""
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    q = gen.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return quaternion_to_matrix(q).reshape(n, 3, 3)


def rotation_angle_deg(R1, R2):
    """Geodesic angle in degrees between rotations ``(..., 3, 3)``, ``arccos((tr(R1^T R2) - 1) / 2)``
    (broadcast; torch tensors in, a tensor out, on their device; otherwise numpy)."""
    if isinstance(R1, torch.Tensor) and isinstance(R2, torch.Tensor):
        tr = (R1 * R2).sum(dim=(-2, -1))
        return torch.rad2deg(torch.arccos(((tr - 1.0) / 2.0).clamp(-1.0, 1.0)))
    tr = np.einsum("...ij,...ij->...", np.asarray(R1), np.asarray(R2))
    return np.rad2deg(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def is_rotation(R: np.ndarray, atol: float = 1e-4) -> np.ndarray:
    """Boolean per matrix: orthonormal with determinant +1 within ``atol``."""
    M = np.asarray(R, dtype=np.float64)
    eye = np.eye(3)
    orth = np.abs(np.swapaxes(M, -1, -2) @ M - eye).max(axis=(-1, -2)) < atol
    return orth & (np.abs(np.linalg.det(M) - 1.0) < atol)
