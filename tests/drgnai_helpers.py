"""Helpers shared by the DRGN-AI tests (CPU and CUDA)."""

from __future__ import annotations

import numpy as np


class AtLatent:
    """A slice source: the field at one latent (the search then scores each image against
    the field at its own latent, exactly what the training step renders)."""

    def __init__(self, field, z) -> None:
        self.field, self.z = field, z

    def slices(self, rotations, band, z=None):
        return self.field.slices(rotations, band, self.z.expand(len(rotations), -1))


def random_rot(n: int, seed: int = 7) -> np.ndarray:
    from cryohet.geometry.rotations import random_rotations

    return random_rotations(n, seed)
