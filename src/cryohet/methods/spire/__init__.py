"""CryoSPIRE: hierarchical part-aware Gaussian mixtures with part discovery.

``train_spire(SpireConfig)`` trains (stage A, part discovery, stage B) into a run
directory; :class:`SpireModel` loads one through the common method interface.

Only the config is imported eagerly: ``SpireModel`` and ``train_spire`` load on first
use (PEP 562), so the CLI can read ``SpireConfig``'s defaults without the trainer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import OptimConfig, SpireConfig, StageAConfig, StageBConfig

if TYPE_CHECKING:
    from .model import SpireModel
    from .trainer import train_spire

__all__ = ["SpireConfig", "StageAConfig", "StageBConfig", "OptimConfig", "SpireModel", "train_spire"]

_LAZY = {"SpireModel": ".model", "train_spire": ".trainer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
