"""Volume representations: voxel grids and Gaussian mixtures (each renderable)."""

from .base import Representation
from .gaussian_mixture import GaussianMixture
from .voxel import VoxelVolume, resample_volume

__all__ = ["GaussianMixture", "Representation", "VoxelVolume", "resample_volume"]
