"""HetACUMN: amortised heterogeneous reconstruction. An encoder predicts each image's pose
and conformation, a neural field decodes them, and an auxiliary task (images rendered at
random poses, decoder gradients stopped) separates pose from conformation. New particles
are inferred by the encoder without training (``cryohet infer``).

Only the config is imported eagerly (PEP 562), so the CLI reads its defaults without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports
from .config import EncoderConfig, HetacumnConfig, HetacumnOptimConfig, PoseTaskConfig

if TYPE_CHECKING:
    from .model import HetacumnModel
    from .trainer import train_hetacumn

__all__ = [
    "EncoderConfig",
    "HetacumnConfig",
    "HetacumnModel",
    "HetacumnOptimConfig",
    "PoseTaskConfig",
    "train_hetacumn",
]

_LAZY = {"HetacumnModel": ".model", "train_hetacumn": ".trainer"}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
