"""One frame for every state of a heterogeneous reconstruction: per-state pose offsets undone.

An ab initio reconstruction is determined up to one global rotation (and hand). A
heterogeneous one can carry more: a search against maps that average the states leaves
the poses of each state rotated by a few degrees against the other states' (the best match
of an image to a blurred map turns the moving part toward its average place), and the
field, fitted at those poses, decodes each state in a frame of its own. After one global
alignment the decoded maps then disagree with the truth by that rotation (igg-1d, D=64,
SNR 0.05: 6.1° median pose error under one global alignment, 4.4° with each state aligned
alone; each state's decoded map 2.7-6.4° off its true map).

The fix, between joint epochs: the field's maps at the k-means centres of the latents
(one per cluster of images) are aligned onto the map at the mean latent **on the rigid
region** — voxels of the molecule whose density varies least between the cluster maps —
and each cluster's poses are turned by its map's rotation, so that every cluster's images
refer to one frame. Aligning on the whole map is wrong: the moving part pulls the
alignment along its motion (on igg-1d the whole-map rotations moved the poses the other
way). The field then re-learns each state in the common frame.

Convention: a rotation ``R`` of a map about the box centre
(:class:`~cryohet.metrics.alignment.RigidTransform`, ``T[v](x) = v(R^T x)``) leaves its
images unchanged when RELION's ``A`` becomes ``A R^T``: images of ``T[v]`` at ``A R^T``
equal images of ``v`` at ``A`` (tested through the render seam). Shifts are left as they
are (the clusters' map shifts were under 0.5 px; the joint descent refines shifts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.rotations import rotation_angle_deg
from ..metrics.alignment import refine_alignment

__all__ = ["FrameFit", "rigid_region", "cluster_frames", "poses_in_common_frame"]


@dataclass(frozen=True)
class FrameFit:
    """Each cluster map's rotation onto the reference frame: ``rotations (C, 3, 3)`` (active,
    about the box centre, on voxel coordinates ``x, y, z``), their angles in degrees, and
    the masked correlations after alignment."""

    rotations: np.ndarray
    angles_deg: np.ndarray
    correlations: np.ndarray


def rigid_region(reference: np.ndarray, maps: list[np.ndarray], quantile: float = 0.5,
                 density_fraction: float = 0.1) -> np.ndarray:  # fmt: skip
    """The rigid region, a 0/1 float32 mask: voxels of the molecule (``reference`` above
    ``density_fraction`` of its maximum) whose variance across ``maps`` is below the
    ``quantile`` of the variance inside the molecule."""
    ref = np.asarray(reference, dtype=np.float32)
    inside = ref > density_fraction * float(ref.max())
    if not inside.any():
        raise ValueError("the reference map has no density above the threshold")
    var = np.var(np.stack([np.asarray(m, dtype=np.float32) for m in maps]), axis=0)
    return (inside & (var <= np.quantile(var[inside], quantile))).astype(np.float32)


def cluster_frames(reference: np.ndarray, maps: list[np.ndarray], mask: np.ndarray) -> FrameFit:
    """Align each of ``maps`` onto ``reference`` on ``mask``, locally from the identity (the
    offsets are a few degrees: :func:`~cryohet.metrics.alignment.refine_alignment`)."""
    rots, angles, corrs = [], [], []
    for m in maps:
        res = refine_alignment(reference, m, mask=mask)
        R = np.asarray(res.transform.rotation, dtype=np.float64)
        rots.append(R)
        angles.append(float(rotation_angle_deg(R, np.eye(3))))
        corrs.append(res.correlation)
    return FrameFit(np.stack(rots), np.asarray(angles), np.asarray(corrs))


def poses_in_common_frame(rotations: np.ndarray, labels: np.ndarray, frame_rotations: np.ndarray) -> np.ndarray:
    """``A_i R_c^T`` for each image ``i`` of cluster ``c = labels[i]``: RELION ``A`` matrices
    ``(N, 3, 3)`` moved from their cluster map's frame into the reference's."""
    A = np.asarray(rotations, dtype=np.float64)
    R = np.asarray(frame_rotations, dtype=np.float64)[np.asarray(labels, dtype=np.int64)]
    return A @ np.swapaxes(R, -1, -2)
