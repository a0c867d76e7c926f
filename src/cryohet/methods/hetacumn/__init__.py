"""HetACUMN: amortised heterogeneous reconstruction. An encoder predicts each image's pose
and conformation, a neural field decodes them, and an auxiliary task (images rendered at
random poses, decoder gradients stopped) separates pose from conformation. New particles
are inferred by the encoder without training (``cryohet infer``).

Only the config is imported eagerly (PEP 562), so the CLI reads its defaults without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
