"""Rotations (one convention: RELION's matrix A, see :mod:`.rotations`), SO(3) and shift grids."""

from .rotations import (
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

__all__ = [
    "axis_angle_to_matrix",
    "euler_relion_to_matrix",
    "is_rotation",
    "matrix_to_axis_angle",
    "matrix_to_euler_relion",
    "matrix_to_quaternion",
    "matrix_to_sixd",
    "quaternion_to_matrix",
    "random_rotations",
    "rotation_angle_deg",
    "sixd_to_matrix",
]
