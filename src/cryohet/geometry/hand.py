"""The hand of a reconstruction: a map, its mirror image, and the poses that go with each.

Images cannot tell a molecule from its mirror image: a reconstruction whose poses were
estimated from the images alone (ab initio) has an arbitrary hand. Flipping the hand is
one pair of operations, kept together here so that maps and poses never disagree:

* **The map** (:func:`mirror_volume`): the mirror through the box centre along z,
  ``V'(x, y, z) = V(x, y, -z)`` with coordinates centred at index ``D // 2``, i.e. array
  index ``k -> (D - k) mod D`` on axis 0 of a ``(z, y, x)`` volume (the plane ``k = 0``,
  at ``-D/2``, has its mirror outside the box and is kept in place, as on the periodic
  grid of the discrete Fourier transform, where this is exactly the mirror ``kz -> -kz``).

* **The poses** (:func:`mirror_poses`). With ``M = diag(1, 1, -1)``, an image at the RELION
  pose ``(A, origin)`` is the projection along z of the volume rotated by ``A``:
  ``I(u) = integral V(A^T (u, w)) dw``, ``u = (x, y)``. The mirrored volume at the pose
  ``(M A M, origin)`` gives::

      I'(u) = integral V'((M A M)^T (u, w)) dw = integral V(M M A^T M (u, w)) dw
            = integral V(A^T (u, -w)) dw = I(u)

  (``M^T = M``, ``M M = 1``, and ``w -> -w`` does not change the integral). So the pose
  transform is ``A -> M A M`` (still a rotation, ``det = +1``: the entries ``A[0, 2]``,
  ``A[1, 2]``, ``A[2, 0]``, ``A[2, 1]`` change sign), and the origin, which lies in the
  image plane, is unchanged. In RELION's Euler angles, ``A = Rz(psi) Ry(tilt) Rz(rot)``
  becomes ``Rz(psi) Ry(-tilt) Rz(rot)`` = ``(rot + 180, tilt, psi + 180)``. The CTF is a
  property of the image and does not change either. The transform is its own inverse.

Checked with the shared forward model in ``tests/test_geometry_hand.py``: images of an
asymmetric volume at ``(A, origin)`` equal those of its mirror at ``(M A M, origin)``, and
differ from those of the mirror at the unchanged poses (and at ``A^T``).

On the voxel grid the mirror is exact in Fourier space (the DFT of the mirrored map is
``F(kx, ky, -kz)``, Nyquist plane included), so FSCs and periodic projections are those of the
original map. The project's projector zero-pads the map (it is not periodic): there the
images agree to float rounding when the face plane ``k = 0`` holds nothing (the usual case:
solvent; tested on noise that fills the box), and otherwise differ by what that one plane
projects, since its true mirror image lies just outside the box.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["HAND_FLIP", "mirror_volume", "mirror_poses"]

#: ``M = diag(1, 1, -1)``: the mirror along z (volume frame) and along the viewing axis (image frame).
HAND_FLIP = np.diag([1.0, 1.0, -1.0])


def mirror_volume(volume: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The mirror image of ``volume (..., D, D, D)`` ``(z, y, x)`` through the box centre
    (index ``D // 2``) along z: index ``k -> (D - k) mod D`` on the z axis (axis ``-3``).

    numpy in, numpy out (same dtype); torch in, torch out (same device and dtype). Its own
    inverse.
    """
    d = volume.shape[-3]
    if isinstance(volume, torch.Tensor):
        index = (-torch.arange(d, device=volume.device)) % d
        return volume.index_select(-3, index)
    index = (-np.arange(d)) % d
    return np.take(np.asarray(volume), index, axis=-3)


def mirror_poses(rotations: np.ndarray, shifts_A: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The poses of the mirrored map (:func:`mirror_volume`) that give the same images:
    ``(M A M, origin)`` for RELION ``A`` ``(N, 3, 3)`` (or ``(3, 3)``) and origins in Å
    ``(N, 2)``, ``M = diag(1, 1, -1)`` (see the module doc). Float64; its own inverse."""
    A = np.asarray(rotations, dtype=np.float64)
    flipped = A * np.outer(np.diag(HAND_FLIP), np.diag(HAND_FLIP))  # M A M: entry (i, j) times m_i m_j
    return flipped, None if shifts_A is None else np.array(shifts_A, dtype=np.float64)
