"""Network building blocks shared by the methods: MLPs and Fourier features."""

from .features import GaussianFourierFeatures, fourier_position_features
from .mlp import ResidualMLP, mlp

__all__ = ["GaussianFourierFeatures", "ResidualMLP", "fourier_position_features", "mlp"]
