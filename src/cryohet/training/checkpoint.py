"""Weights-only checkpoints, written atomically, loaded without executing code.

A checkpoint is a ``torch.save`` of a dict whose values are tensors, numbers, strings
and nested dicts/lists of those (model ``state_dict``, optimizer ``state_dict``, epoch,
RNG states as uint8 tensors). It is written to a temporary file in the same folder and
moved into place with ``os.replace``, so a run killed mid-write leaves the previous
checkpoint intact. Loading uses ``torch.load(weights_only=True)``, which refuses
arbitrary pickled objects; a truncated or corrupt file raises a one-line
:class:`~cryohet.errors.RunDirError`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import RunDirError

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "checkpoint_path", "prune_checkpoints"]

_PATTERN = re.compile(r"^epoch_(\d{4,})\.pt$")


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """``RUN/checkpoints/epoch_0007.pt``: the state after ``epoch`` completed epochs."""
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:04d}.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (tensors and plain values only) to ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    torch.save(state, tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, p)
    return p


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (weights only, no code)."""
    p = Path(path)
    if not p.exists():
        raise RunDirError(f"{p}: checkpoint not found")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunDirError(f"{p}: corrupt or unreadable checkpoint ({first[:200]})") from None
    if not isinstance(state, dict):
        raise RunDirError(f"{p}: not a cryohet checkpoint (expected a dict, got {type(state).__name__})")
    return state


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest epoch under ``RUN/checkpoints``, or None."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), f) for f in folder.iterdir() if (m := _PATTERN.match(f.name))]
    return max(found)[1] if found else None


def prune_checkpoints(run_dir: str | Path, keep_last: int = 2, keep_every: int = 0) -> None:
    """Delete old epoch checkpoints, keeping the last ``keep_last`` (and every ``keep_every``-th)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return
    found = sorted((int(m.group(1)), f) for f in folder.iterdir() if (m := _PATTERN.match(f.name)))
    for epoch, f in found[:-keep_last] if keep_last > 0 else found:
        if keep_every and epoch % keep_every == 0:
            continue
        f.unlink(missing_ok=True)
