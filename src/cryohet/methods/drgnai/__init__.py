"""DRGN-AI: ab initio heterogeneous reconstruction (hierarchical pose search, then joint
gradient descent on poses, latents and a neural-field hypervolume).

``train_drgnai(DrgnaiConfig)`` trains into a run directory; :class:`DrgnaiModel` loads one
through the common method interface. Only the config is imported eagerly (PEP 562), so the
CLI can read its defaults without the trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports
from .config import DrgnaiConfig, FieldConfig, OptimConfig, SearchConfig

if TYPE_CHECKING:
    from .model import DrgnaiModel
    from .trainer import train_drgnai

__all__ = ["DrgnaiConfig", "FieldConfig", "SearchConfig", "OptimConfig", "DrgnaiModel", "train_drgnai"]

_LAZY = {"DrgnaiModel": ".model", "train_drgnai": ".trainer"}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
