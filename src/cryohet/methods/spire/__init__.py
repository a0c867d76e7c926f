"""CryoSPIRE: hierarchical part-aware Gaussian mixtures with part discovery.

``train_spire(SpireConfig)`` trains (stage A, part discovery, stage B) into a run
directory; :class:`SpireModel` loads one through the common method interface.

Only the config is imported eagerly: ``SpireModel`` and ``train_spire`` load on first
use (PEP 562), so the CLI can read ``SpireConfig``'s defaults without the trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports
from .config import OptimConfig, SpireConfig, StageAConfig, StageBConfig

if TYPE_CHECKING:
    from .model import SpireModel
    from .trainer import train_spire

__all__ = ["SpireConfig", "StageAConfig", "StageBConfig", "OptimConfig", "SpireModel", "train_spire"]

_LAZY = {"SpireModel": ".model", "train_spire": ".trainer"}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
