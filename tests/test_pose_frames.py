"""Per-state frames (pose.frames): the pose convention through the render seam, and known
per-cluster rotations recovered on the rigid region despite a moving part."""

from __future__ import annotations

import numpy as np
import torch

from cryohet.geometry.rotations import axis_angle_to_matrix, random_rotations, rotation_angle_deg
from cryohet.imaging.projection import volume_to_fourier
from cryohet.metrics.alignment import RigidTransform, transform_volume
from cryohet.pose.frames import cluster_frames, poses_in_common_frame, rigid_region
from cryohet.representations.render import render

D = 32


def _blobs(centres_px, sigmas_px) -> np.ndarray:
    """Gaussian blobs at voxel coordinates (x, y, z) from the box centre."""
    zyx = np.stack(np.meshgrid(*[np.arange(D) - D // 2] * 3, indexing="ij"), -1).astype(np.float32)
    xyz = zyx[..., ::-1]
    vol = np.zeros((D,) * 3, np.float32)
    for c, s in zip(centres_px, sigmas_px):
        vol += np.exp(-((xyz - np.asarray(c, np.float32)) ** 2).sum(-1) / (2.0 * s * s))
    return vol


def _images(vol: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    fv = volume_to_fourier(torch.from_numpy(vol))
    return render(fv, torch.from_numpy(rotations).float(), None, None, D, 1.0).numpy()


def _turned(vol: np.ndarray, R: np.ndarray) -> np.ndarray:
    return transform_volume(vol, RigidTransform(R, np.zeros(3)))


def test_turning_a_map_by_R_is_undone_by_poses_A_R_transposed():
    """Images of the map turned by R (about the box centre) at ``A R^T`` equal the map's
    images at ``A`` (to the trilinear resampling's error); ``A R`` does not."""
    vol = _blobs([(5, 0, 3), (-2, 5, -4), (-6, -6, 6)], [3.0, 2.5, 2.0])
    R = axis_angle_to_matrix(np.array([0.2, -0.3, 0.25]))
    A = random_rotations(6, 1)
    ref = _images(vol, A)
    labels = np.zeros(6, dtype=np.int64)
    good = _images(_turned(vol, R), poses_in_common_frame(A, labels, R[None]))
    bad = _images(_turned(vol, R), A @ R)
    scale = float(np.abs(ref).max())
    assert np.abs(good - ref).max() / scale < 0.05
    assert np.abs(bad - ref).max() / scale > 0.3


def test_cluster_frames_recover_each_clusters_turn_on_the_rigid_region():
    """Three 'states': a rigid body (three blobs) turned by a different small rotation in
    each, and a moving blob at a different place in each. Aligned on the rigid region, each
    map's rotation onto the reference undoes its turn (within 1°; on the whole molecule the
    moving blob pulls one off by 1.7°); the poses moved into the
    common frame then show the rigid body as the reference does."""
    rigid = ([(6, 0, 2), (-3, 5, -3), (-5, -5, 4)], [2.5, 2.5, 2.0])
    moving_at = [(0, -8, -6), (6, -7, -5), (8, -2, -6)]
    turns = [axis_angle_to_matrix(np.radians(a) * np.asarray(v) / np.linalg.norm(v))
             for a, v in [(0.0, (1, 0, 0)), (5.0, (1, 2, 0)), (4.0, (0, 1, -1))]]  # fmt: skip
    maps = [_turned(_blobs(*rigid), Q) + _blobs([m], [2.0]) for Q, m in zip(turns, moving_at)]
    reference = _blobs(*rigid) + sum(_blobs([m], [2.0]) for m in moving_at) / 3.0
    mask = rigid_region(reference, maps)
    assert 0 < mask.sum() < (reference > 0.1 * reference.max()).sum()
    fit = cluster_frames(reference, maps, mask)
    for Q, R in zip(turns, fit.rotations):
        assert rotation_angle_deg(R @ Q, np.eye(3)) < 1.0  # R undoes the turn Q
    assert fit.angles_deg[1] > 3.0 and fit.angles_deg[0] < 1.0
    whole = cluster_frames(reference, maps, (reference > 0.1 * reference.max()).astype(np.float32))
    assert max(rotation_angle_deg(R @ Q, np.eye(3)) for Q, R in zip(turns, whole.rotations)) > 1.0  # pulled
    A = random_rotations(4, 3)
    moved = poses_in_common_frame(np.repeat(A, 3, axis=0), np.tile([0, 1, 2], 4), fit.rotations)
    for c in (1, 2):  # cluster c's images (its turned rigid body at A) are the reference's at the moved poses
        seen = _images(_turned(_blobs(*rigid), turns[c]), A)
        common = _images(_blobs(*rigid), moved[c::3])
        assert np.abs(common - seen).max() / np.abs(seen).max() < 0.08
