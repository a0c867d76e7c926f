"""Typed configuration objects shared by the CLI and the Python API.

Every config is a pydantic model with ``extra="forbid"``, so a misspelt option is an
error, not a silent default. :func:`save_config` writes the fully resolved config to
YAML with a ``_provenance`` stamp (cryohet version, command line, time); :func:`load_config`
reads it back into the same model, which is how run directories rebuild their model.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from . import __version__
from .errors import ConfigError, RunDirError

__all__ = ["StrictModel", "save_config", "load_config", "provenance", "validation_message"]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for cryohet configs: unknown keys are errors; paths serialise as strings."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def validation_message(err: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """One line from a pydantic error: ``field: problem; field: problem``.

    ``names`` renames fields (dotted, ``optim.batch_size``), e.g. to the command-line flags
    that set them (``-b/--batch-size``), so a hint names what the user typed.
    """
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "config"
        loc = (names or {}).get(loc, loc)
        msg = str(e["msg"]).removeprefix("Value error, ")  # pydantic's prefix for our own checks
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def provenance() -> dict[str, Any]:
    """Version, command line, time, host: stamped into every saved config."""
    return {
        "cryohet_version": __version__,
        "command": " ".join(sys.argv),
        "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cwd": os.getcwd(),
    }


def save_config(path: str | Path, config: BaseModel, extra: dict[str, Any] | None = None) -> Path:
    """Write ``config`` (resolved) plus a provenance stamp to YAML, atomically."""
    p = Path(path)
    data = {**config.model_dump(mode="json"), "_provenance": provenance()}
    if extra:
        data.update(extra)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, p)
    return p


def load_config(path: str | Path, model: type[M], drop: tuple[str, ...] = ()) -> M:
    """Read a YAML written by :func:`save_config` back into ``model``.

    Keys starting with ``_`` (provenance) and those in ``drop`` are ignored.
    """
    p = Path(path)
    if not p.exists():
        raise RunDirError(f"{p}: missing config file")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise RunDirError(f"{p}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise RunDirError(f"{p}: expected a mapping at top level")
    data = {k: v for k, v in raw.items() if not k.startswith("_") and k not in drop}
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{p}: {validation_message(err)}") from None
