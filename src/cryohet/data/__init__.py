"""Particle images for training: lazy memory-mapped datasets, batched loading,
train/validation splits and streaming downsampling."""

from __future__ import annotations

from .batch import ParticleBatch
from .dataset import ParticleDataset
from .downsample import downsample_particles, downsampled_paths
from .loader import BatchedParticleLoader, SortedBatchSampler
from .reader import StackReader
from .split import train_val_split

__all__ = [
    "BatchedParticleLoader",
    "ParticleBatch",
    "ParticleDataset",
    "SortedBatchSampler",
    "StackReader",
    "downsample_particles",
    "downsampled_paths",
    "train_val_split",
]
