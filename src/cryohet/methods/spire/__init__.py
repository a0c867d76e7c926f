"""CryoSPIRE: hierarchical part-aware Gaussian mixtures with part discovery.

``train_spire(SpireConfig)`` trains (stage A, part discovery, stage B) into a run
directory; :class:`SpireModel` loads one through the common method interface.
"""

from .config import OptimConfig, SpireConfig, StageAConfig, StageBConfig
from .model import SpireModel
from .trainer import train_spire

__all__ = ["SpireConfig", "StageAConfig", "StageBConfig", "OptimConfig", "SpireModel", "train_spire"]
