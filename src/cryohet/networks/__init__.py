"""Network building blocks shared by the methods: MLPs and Fourier features."""

from .features import fourier_position_features
from .mlp import mlp

__all__ = ["fourier_position_features", "mlp"]
