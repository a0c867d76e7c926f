"""Homogeneous reconstruction: CTF-weighted Fourier backprojection with a Wiener filter."""

from .backprojection import BackprojectionAccumulator
from .fsc import shell_average, shell_fsc
from .half_maps import HalfMapResult, HalfSetReconstructor, reconstruct, snr_from_fsc

__all__ = [
    "BackprojectionAccumulator",
    "HalfMapResult",
    "HalfSetReconstructor",
    "reconstruct",
    "shell_average",
    "shell_fsc",
    "snr_from_fsc",
]
