"""Volume representations and the render seam.

Every representation answers central slices on a Fourier band (:mod:`.base`); CTF, shift
and likelihood are composed around that call in one place (:mod:`.render`).
"""

from .base import Representation, SliceSource
from .gaussian_mixture import GaussianMixture, peak_from_mass
from .neural_field import NeuralField
from .render import BandBatch, model_images, prepare_batch, render, score_batch
from .voxel import VoxelVolume, resample_volume

__all__ = [
    "BandBatch",
    "GaussianMixture",
    "NeuralField",
    "Representation",
    "SliceSource",
    "VoxelVolume",
    "model_images",
    "peak_from_mass",
    "prepare_batch",
    "render",
    "resample_volume",
    "score_batch",
]
