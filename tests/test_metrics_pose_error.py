"""Pose errors: global alignment (rotation and hand), angular errors, translation offset."""

from __future__ import annotations

import numpy as np
import pytest

from cryohet.geometry.rotations import (
    axis_angle_to_matrix,
    euler_relion_to_matrix,
    random_rotations,
    rotation_angle_deg,
)
from cryohet.metrics.pose_error import (
    align_rotations,
    class_average,
    per_state_rotation_errors,
    rotation_errors,
    rotation_errors_per_class,
    symmetry_mate_errors,
    translation_errors,
)

F = np.diag([1.0, 1.0, -1.0])


def test_identical_poses_zero_error():
    R = random_rotations(200, rng=0)
    e = rotation_errors(R, R)
    assert not e.alignment.flipped
    np.testing.assert_allclose(e.alignment.Q, np.eye(3), atol=1e-10)
    for v in (e.rotation_deg, e.out_of_plane_deg, e.in_plane_deg):
        assert np.max(v) < 1e-4
    s = e.summary()
    assert s["rotation_deg_median"] < 1e-4 and s["flipped"] == 0.0


def test_recovers_global_rotation():
    R_gt = random_rotations(300, rng=1)
    G = random_rotations(1, rng=2)[0]  # predicted volume = true volume rotated by G
    R_pred = R_gt @ G.T
    unaligned = rotation_errors(R_pred, R_gt, align=False)
    assert np.median(unaligned.rotation_deg) > 20
    e = rotation_errors(R_pred, R_gt)
    assert not e.alignment.flipped
    np.testing.assert_allclose(e.alignment.Q, G, atol=1e-8)
    assert e.rotation_deg.max() < 1e-4 and e.out_of_plane_deg.max() < 1e-4


def test_recovers_flip_and_rotation_with_noise():
    rng = np.random.default_rng(3)
    R_gt = random_rotations(500, rng=4)
    G = random_rotations(1, rng=5)[0]
    noise = axis_angle_to_matrix(rng.normal(scale=np.deg2rad(2.0) / np.sqrt(3), size=(500, 3)))
    R_pred = noise @ F @ R_gt @ F @ G.T  # mirrored hand, rotated frame, ~2 degree noise
    e = rotation_errors(R_pred, R_gt)
    assert e.alignment.flipped
    assert 1.0 < np.median(e.rotation_deg) < 3.0
    assert np.median(e.out_of_plane_deg) <= np.median(e.rotation_deg) + 1e-9
    # without the flip test the hand cannot be matched
    assert np.median(rotation_errors(R_pred, R_gt, flip=False).rotation_deg) > 20
    # the fitted alignment applies to other poses of the same reconstruction
    more = random_rotations(50, rng=6)
    np.testing.assert_allclose(e.alignment.apply(F @ more @ F @ G.T), more, atol=0.15)


def test_in_plane_and_out_of_plane_split():
    eul = np.column_stack([np.linspace(0, 300, 100), np.linspace(20, 160, 100), np.linspace(-170, 170, 100)])
    R_gt = euler_relion_to_matrix(eul)
    d = 25.0
    R_pred = euler_relion_to_matrix(eul + [0.0, 0.0, d])  # psi only: an in-plane error
    e = rotation_errors(R_pred, R_gt, align=False)
    np.testing.assert_allclose(e.in_plane_deg, d, atol=1e-8)
    np.testing.assert_allclose(e.rotation_deg, d, atol=1e-6)
    np.testing.assert_allclose(e.out_of_plane_deg, 0.0, atol=1e-5)
    R_tilt = euler_relion_to_matrix(eul + [0.0, 10.0, 0.0])  # tilt only: viewing direction moves 10 deg
    e2 = rotation_errors(R_tilt, R_gt, align=False)
    np.testing.assert_allclose(e2.out_of_plane_deg, 10.0, atol=1e-6)
    wrap = rotation_errors(euler_relion_to_matrix(eul + [0.0, 0.0, 350.0]), R_gt, align=False)
    np.testing.assert_allclose(wrap.in_plane_deg, 10.0, atol=1e-8)


def test_per_class_alignment():
    R_gt = random_rotations(200, rng=7)
    labels = np.repeat([0, 1], 100)
    G0, G1 = random_rotations(2, rng=8)
    R_pred = R_gt.copy()
    R_pred[:100] = R_gt[:100] @ G0.T
    R_pred[100:] = F @ R_gt[100:] @ F @ G1.T
    per = rotation_errors_per_class(R_pred, R_gt, labels)
    assert set(per) == {0, 1}
    assert not per[0].alignment.flipped and per[1].alignment.flipped
    assert class_average(per)["rotation_deg_mean"] < 1e-4


def test_evaluate_separates_a_state_offset_from_pose_noise():
    """A state whose poses share a frame offset of their own (the poses took up part of a
    conformational change) has a large median under the one global alignment and a small
    one aligned alone; the other states are untouched."""
    R_gt = random_rotations(300, rng=3)
    labels = np.repeat([0, 1, 2], 100)
    noise = axis_angle_to_matrix(np.random.default_rng(4).normal(scale=np.radians(1.0), size=(300, 3)))
    R_pred = R_gt @ noise
    offset = axis_angle_to_matrix(np.array([0.0, np.radians(12.0), 0.0]))
    R_pred[labels == 2] = R_pred[labels == 2] @ offset
    errors = rotation_errors(R_pred, R_gt).rotation_deg
    out = per_state_rotation_errors(R_pred, R_gt, errors, labels)
    glob, alone = out["per_state_rotation_deg_median"], out["per_state_aligned_rotation_deg_median"]
    assert glob["0"] < 3.0 and glob["1"] < 3.0 and 9.0 < glob["2"] < 15.0
    assert max(alone.values()) < 3.0
    assert out["per_class_aligned"]["rotation_deg_median"] < 3.0
    assert per_state_rotation_errors(R_pred, R_gt, errors, np.zeros(300, dtype=int)) == {}


def test_translation_global_offset_removed():
    rng = np.random.default_rng(9)
    R = random_rotations(400, rng=10)
    t_gt = rng.uniform(-10, 10, (400, 2))
    u = np.array([1.5, -2.0, 3.0])
    t_pred = t_gt + (R[:, :2, :] @ u)
    e = translation_errors(t_pred, t_gt, R)
    np.testing.assert_allclose(e.offset_px, u, atol=1e-9)
    assert e.rmse < 1e-9 and e.medae < 1e-9
    raw = translation_errors(t_pred, t_gt, correct_global_offset=False)
    assert raw.rmse > 1.0
    noisy = translation_errors(t_pred + rng.normal(scale=0.5, size=t_pred.shape), t_gt, R)
    assert noisy.rmse == pytest.approx(0.5 * np.sqrt(2), rel=0.1)
    assert noisy.rmedse <= noisy.rmse and noisy.mae <= noisy.rmse
    with pytest.raises(ValueError):
        translation_errors(t_pred, t_gt)  # offset correction needs rotations


def test_align_rotations_input_checks():
    R = random_rotations(10, rng=0)
    with pytest.raises(ValueError):
        align_rotations(R, R[:5])
    with pytest.raises(ValueError):
        align_rotations(R[:, :2], R)
    assert rotation_angle_deg(align_rotations(R, R, n_anchors=3).Q, np.eye(3)) < 1e-6


def test_errors_modulo_a_pseudo_symmetry():
    """Images given the pose of the true pose's symmetry mate (A S^T) are right modulo S: after
    the global alignment (by the majority), their plain error is ~180 deg and their error
    modulo S small; poses that are simply wrong stay wrong."""
    n = 400
    R_gt = random_rotations(n, rng=3)
    S = axis_angle_to_matrix(np.array([0.3, -0.8, 0.52]) / np.linalg.norm([0.3, -0.8, 0.52]) * np.pi)
    jitter = axis_angle_to_matrix(np.random.default_rng(4).normal(scale=np.radians(1.0), size=(n, 3)))
    pred = jitter @ R_gt
    mates = np.arange(n) % 3 == 0  # a third at the mate
    pred[mates] = pred[mates] @ S.T
    wrong = np.arange(n) % 10 == 1
    pred[wrong] = random_rotations(int(wrong.sum()), rng=5)
    G = random_rotations(1, rng=6)[0]
    e = rotation_errors(pred @ G.T, R_gt)  # in another frame: the alignment finds it
    ok = ~mates & ~wrong
    assert np.median(e.rotation_deg[ok]) < 3.0 and np.median(e.rotation_deg[mates & ~wrong]) > 170.0
    err, mate = symmetry_mate_errors(e.alignment.aligned, R_gt, S[None])
    assert np.median(err[~wrong]) < 3.0 and np.all(mate[mates & ~wrong] == 1) and np.all(mate[ok] == 0)
    assert np.median(err[wrong]) > 20.0


def test_alignment_modulo_a_pseudo_symmetry_when_the_mates_split_evenly():
    """A third of the poses at the truth, a third at its mate, each jittered by ~8 deg, and a
    third wrong (an ab initio dimer): the plain alignment's median sits between the two
    groups and fits neither (the failure that made a run's encoder look 3 % right on
    simulated assembly when 74 % of its poses were), while the alignment modulo the
    symmetry finds the frame and both groups."""
    n = 600
    rng = np.random.default_rng(7)
    R_gt = random_rotations(n, rng=8)
    S = axis_angle_to_matrix(np.array([0.6, 0.0, 0.8]) * np.pi)
    jitter = axis_angle_to_matrix(rng.normal(scale=np.radians(8.0) / np.sqrt(3), size=(n, 3)))
    pred = jitter @ R_gt
    draw = rng.random(n)
    mates, wrong = draw < 0.35, draw > 0.7
    pred[mates] = pred[mates] @ S.T
    pred[wrong] = random_rotations(int(wrong.sum()), rng=10)
    G = random_rotations(1, rng=9)[0]
    pred = F @ (pred @ G.T) @ F  # another frame and the other hand

    plain = align_rotations(pred, R_gt)
    err_plain, _ = symmetry_mate_errors(plain.aligned, R_gt, S[None])
    assert np.mean(err_plain < 15.0) < 0.4

    sym = align_rotations(pred, R_gt, operators=S[None])
    assert sym.flipped
    err, mate = symmetry_mate_errors(sym.aligned, R_gt, S[None])
    right = ~wrong
    assert np.median(err[right]) < 10.0 and np.mean(err[right] < 15.0) > 0.8
    # one alignment for the dataset: each group at one mate, and the larger group (here the
    # 35 % drawn at the mate or the 35 % at the truth, whichever came out larger) at the truth
    assert np.mean(mate[mates] == mate[mates][0]) > 0.9 and np.mean(mate[right & ~mates] != mate[mates][0]) > 0.9
    assert np.mean(mate[right] == 0) >= 0.5
