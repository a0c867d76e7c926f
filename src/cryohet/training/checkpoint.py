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

import errno as _errno
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from ..errors import RunDirError

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "all_checkpoints",
    "load_latest_checkpoint",
    "checkpoint_path",
    "prune_checkpoints",
]

_PATTERN = re.compile(r"^epoch_(\d{4,})\.pt$")


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """``RUN/checkpoints/epoch_0007.pt``: the state after epoch 7, i.e. after 7 completed epochs
    (epochs are numbered from 1, as on the console and in ``train_log.jsonl``)."""
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:04d}.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (tensors and plain values only) to ``path``.

    A failed write (full disk, quota, read-only folder) removes its partial file and raises
    a one-line :class:`RunDirError`; the previous checkpoint stays as it was.
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except (OSError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)
        raise RunDirError(f"{p}: could not be written ({_write_failure(p, err)})") from None
    return p


def _write_failure(path: Path, err: BaseException) -> str:
    """Why a write failed, in words: torch reports a full disk as a zip-writer error."""
    errno_ = getattr(err, "errno", None)
    if errno_ in (_errno.ENOSPC, _errno.EDQUOT) or _disk_nearly_full(path.parent):
        return "no space left on the device; free some space, then --resume continues from the last checkpoint"
    if errno_ in (_errno.EACCES, _errno.EROFS, _errno.EPERM):
        return "the folder is not writable"
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no details'}"


def _disk_nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (weights only, no code)."""
    p = Path(path)
    if not p.exists():
        raise RunDirError(f"{p}: checkpoint not found")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means a bad file
        why = type(err).__name__
        raise RunDirError(f"{p}: corrupt or truncated checkpoint (torch cannot read it: {why})") from None
    if not isinstance(state, dict):
        raise RunDirError(f"{p}: not a cryohet checkpoint (expected a dict, got {type(state).__name__})")
    return state


def all_checkpoints(run_dir: str | Path) -> list[Path]:
    """The epoch checkpoints under ``RUN/checkpoints``, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = []
    for f in folder.iterdir():
        m = _PATTERN.match(f.name)
        if m:
            found.append((int(m.group(1)), f))
    return [f for _, f in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest epoch under ``RUN/checkpoints``, or None."""
    found = all_checkpoints(run_dir)
    return found[-1] if found else None


def load_latest_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The latest checkpoint's state, or None without any.

    A damaged latest checkpoint is a one-line error that names the previous intact one
    (if any) and how to fall back to it; nothing is deleted automatically.
    """
    found = all_checkpoints(run_dir)
    if not found:
        return None
    try:
        return load_checkpoint(found[-1], map_location)
    except RunDirError as err:
        for older in reversed(found[:-1]):
            try:
                load_checkpoint(older, "cpu")
            except RunDirError:
                continue
            raise RunDirError(
                f"{err}. The previous checkpoint {older.name} is intact: move {found[-1].name} away "
                "and --resume again to continue from it"
            ) from None
        raise


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
