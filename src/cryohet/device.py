"""Which torch device a command runs on."""

from __future__ import annotations

import torch

from .errors import ConfigError, InputError

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``; a CUDA request without CUDA is a one-line error."""
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"--device {name}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but torch sees no CUDA device")
    return dev
