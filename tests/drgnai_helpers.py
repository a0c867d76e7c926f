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


def small_config(tmp_path, **kw):
    """A small DRGN-AI config on the pinned dataset (homogeneous unless ``zdim`` is given)."""
    from pathlib import Path

    from cryohet.io.source import ParticleSource
    from cryohet.methods.drgnai.config import DrgnaiConfig

    pinned = Path(__file__).parent / "data" / "pinned" / "data"
    base = dict(
        data=ParticleSource(path=pinned / "particles.star"),
        out=str(tmp_path / "run"),
        zdim=0,
        pretrain_images=160,
        search_images=320,
        epochs_sgd=1,
        field={"hidden": 32, "blocks": 1, "features": 32},
        optim={"batch_size": 32},
    )
    base.update(kw)
    return DrgnaiConfig(**base)
