"""Rotation representations: every conversion round-trips and agrees with the others."""

from __future__ import annotations

import numpy as np
import torch

from cryohet.geometry.rotations import (
    axis_angle_to_matrix,
    euler_relion_to_matrix,
    is_rotation,
    matrix_to_axis_angle,
    matrix_to_euler_relion,
    matrix_to_quaternion,
    matrix_to_sixd,
    quaternion_to_matrix,
    random_rotations,
    rotation_angle_deg,
    sixd_to_matrix,
)


def test_random_rotations_are_proper_rotations():
    R = random_rotations(500, 0)
    assert is_rotation(R).all()
    assert np.allclose(np.linalg.det(R), 1.0, atol=1e-6)


def test_quaternion_round_trip_and_sign_ambiguity():
    R = random_rotations(200, 1)
    q = matrix_to_quaternion(R)
    assert np.allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-6)
    assert np.allclose(quaternion_to_matrix(q), R, atol=1e-6)
    assert np.allclose(quaternion_to_matrix(-q), R, atol=1e-6)  # q and -q are one rotation


def test_sixd_round_trip_and_gram_schmidt_of_noisy_input():
    R = torch.as_tensor(random_rotations(200, 2))
    assert torch.allclose(sixd_to_matrix(matrix_to_sixd(R)), R, atol=1e-6)
    noisy = matrix_to_sixd(R) + 0.01 * torch.randn(200, 6, generator=torch.Generator().manual_seed(0), dtype=R.dtype)
    out = sixd_to_matrix(noisy).numpy()
    assert is_rotation(out).all()
    assert rotation_angle_deg(out, R.numpy()).max() < 3.0


def test_axis_angle_and_euler_round_trips_agree():
    R = random_rotations(200, 3)
    assert np.allclose(axis_angle_to_matrix(matrix_to_axis_angle(R)), R, atol=1e-6)
    assert np.allclose(euler_relion_to_matrix(matrix_to_euler_relion(R)), R, atol=1e-5)
    # a rotation of 90 degrees about z, both ways
    Rz = axis_angle_to_matrix(np.array([0.0, 0.0, np.pi / 2]))
    assert np.allclose(Rz @ np.array([1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-12)
    assert np.isclose(rotation_angle_deg(Rz[None], np.eye(3)[None])[0], 90.0)
