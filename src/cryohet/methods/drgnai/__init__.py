"""DRGN-AI: ab initio heterogeneous reconstruction (hierarchical pose search, then joint
gradient descent on poses, latents and a neural-field hypervolume).

``train_drgnai(DrgnaiConfig)`` trains into a run directory; :class:`DrgnaiModel` loads one
through the common method interface. Only the config is imported eagerly (PEP 562), so the
CLI can read its defaults without the trainer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import DrgnaiConfig, FieldConfig, OptimConfig, SearchConfig

if TYPE_CHECKING:
    from .model import DrgnaiModel
    from .trainer import train_drgnai

__all__ = ["DrgnaiConfig", "FieldConfig", "SearchConfig", "OptimConfig", "DrgnaiModel", "train_drgnai"]

_LAZY = {"DrgnaiModel": ".model", "train_drgnai": ".trainer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
