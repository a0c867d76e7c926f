"""Lazy package exports (PEP 562): a package's ``__init__`` names what it offers, and the
heavy submodules behind some of those names are imported on first use, so that the CLI
can read configs and print help without importing torch-heavy trainers."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, lazy: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` (its ``__name__``),
    where ``lazy`` maps each lazily exported name to the submodule defining it (relative,
    ``".trainer"``). A name is imported once, then kept in the package's namespace.

    Use as ``__getattr__, __dir__ = lazy_exports(__name__, {"train_x": ".trainer"})``."""
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        if name in lazy:
            value = getattr(importlib.import_module(lazy[name], package), name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(lazy))

    return __getattr__, __dir__
