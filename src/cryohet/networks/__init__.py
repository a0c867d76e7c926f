"""Network building blocks shared by the methods: MLPs, Fourier features and image encoders
(:mod:`.encoders` for the latent, :mod:`.pose_encoder` for pose and latent)."""

from .features import GaussianFourierFeatures, fourier_position_features
from .mlp import ResidualMLP, mlp

__all__ = ["GaussianFourierFeatures", "ResidualMLP", "fourier_position_features", "mlp"]
