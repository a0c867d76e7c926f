"""A run's identity, and what ``--resume`` may change.

Identity: every run gets an id when it starts and a hash of its config (the fields that
define the result; the ones a resume may change are left out). Both go into
``config.yaml`` (``_run``) and into every checkpoint, so a resume refuses a checkpoint of
another run, or of a run whose config was edited since.

Resume: a resumed run is the *same* run. The config asked for is compared with the run's
own: a field the method declares resumable (``RESUMABLE`` on its config class: the
device, the number of workers, mixed precision, more epochs) is applied and reported;
any other difference is refused in one line naming the fields. ``None`` in the request
means "as the run had it" (automatic values were resolved when the run started).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from ..errors import ConfigError

__all__ = ["new_run_id", "config_hash", "resumable_fields", "reconcile_resume", "flatten", "config_input_paths"]

M = TypeVar("M", bound=BaseModel)

#: Fields every method may change on resume (``out``: a run that was moved or copied).
ALWAYS_RESUMABLE = ("out", "device", "num_workers", "amp")


def new_run_id() -> str:
    return uuid.uuid4().hex


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b": value}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def resumable_fields(config: BaseModel) -> tuple[str, ...]:
    """The dotted fields ``config`` may change on resume."""
    return ALWAYS_RESUMABLE + tuple(getattr(type(config), "RESUMABLE", ()))


def config_hash(config: BaseModel, keys: Iterable[str] | None = None) -> str:
    """SHA-256 (16 hex digits) of the config's fields that define the run (resumable ones excluded).

    ``keys``: only these dotted fields (a resumed run's: those its ``config.yaml`` has), so
    that a field added to the method since the run started, which takes its default, the
    behaviour the run had, does not make the run's own config look edited."""
    skip = set(resumable_fields(config))
    wanted = None if keys is None else set(keys)
    flat = {
        k: v
        for k, v in flatten(config.model_dump(mode="json")).items()
        if k not in skip and (wanted is None or k in wanted)
    }
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _set(d: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for p in parents:
        d = d[p]
    d[last] = value


def reconcile_resume(saved: M, requested: M | None) -> tuple[M, list[str]]:
    """The config to resume with, and the applied changes (``"field: old -> new"``).

    Raises a one-line :class:`ConfigError` for a difference in a field that cannot change.
    """
    if requested is None:
        return saved, []
    old = flatten(saved.model_dump(mode="json"))
    new = flatten(requested.model_dump(mode="json"))
    allowed = set(resumable_fields(saved))
    changed = {
        k: (old.get(k), v)
        for k, v in new.items()
        if v is not None and old.get(k) != v and not _same_file(old.get(k), v)
    }
    refused = sorted(k for k in changed if k not in allowed)
    if refused:
        shown = "; ".join(f"{k}: {changed[k][0]!r} -> {changed[k][1]!r}" for k in refused[:4])
        more = f" (and {len(refused) - 4} more)" if len(refused) > 4 else ""
        raise ConfigError(
            f"--resume continues the same run, which was made with other settings ({shown}{more}); "
            "drop those options, or start a new run with another --out"
        )
    data = saved.model_dump(mode="json")
    for k, (_, v) in changed.items():
        _set(data, k, v)
    merged = type(saved).model_validate(data)
    return merged, [f"{k}: {changed[k][0]} -> {changed[k][1]}" for k in sorted(changed) if k != "out"]


def _same_file(a: Any, b: Any) -> bool:
    """Two strings that name the same existing file or folder ('data/p.star' given to the
    Python API, its absolute path given by the CLI): the same input, not a change."""
    if not (isinstance(a, str) and isinstance(b, str) and a and b):
        return False
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    try:
        return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
    except OSError:
        return False


def epochs_done_message(done: int, total: int, fields: Iterable[str]) -> str:
    return (
        f"the run has already trained {done} epochs, more than the {total} asked for; "
        f"{'/'.join(fields) or 'the epoch count'} can only grow on --resume"
    )


def config_input_paths(config: BaseModel) -> tuple[Path, ...]:
    """Files and folders a config reads (every string field naming an existing path, ``out`` aside)."""
    out = []
    for key, value in flatten(config.model_dump(mode="json")).items():
        if key == "out" or not isinstance(value, str) or not value:
            continue
        p = Path(value).expanduser()
        if p.exists():
            out.append(p)
    return tuple(out)
