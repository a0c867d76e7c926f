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
from .shift_grid import grid_1d, refine_shift_grid, shift_grid
from .so3_grid import (
    base_grid,
    children,
    grid_size,
    grid_spacing_deg,
    index_to_euler,
    index_to_matrix,
    matrix_to_index,
    n_psi,
    n_views,
    nearest_distance_deg,
    neighbors,
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
    # SO(3) grid
    "base_grid",
    "children",
    "grid_size",
    "grid_spacing_deg",
    "index_to_euler",
    "index_to_matrix",
    "matrix_to_index",
    "n_psi",
    "n_views",
    "nearest_distance_deg",
    "neighbors",
    # shift grid
    "grid_1d",
    "refine_shift_grid",
    "shift_grid",
]
