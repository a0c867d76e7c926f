"""The shared tail of every ``cryohet train METHOD`` command: build the config, check the
run directory, take the run's own config on ``--resume``, train, and say where the run is.

Each train command only gathers its options into a config (a zero-argument ``build``), so
the refusals (``--resume`` with ``--overwrite``, invalid options named by their flags, an
``--out`` that is an input or another method's run) read the same for every method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from ..io.source import ParticleSource
from .options import config_error, resume_config

__all__ = ["run_training"]


def run_training(
    config_cls: type[BaseModel],
    build: Callable[[], BaseModel],
    train: Callable[..., Any],
    *,
    resume: bool,
    overwrite: bool,
    command: Callable[..., Any] | None = None,
    more_inputs: Callable[[Any], Iterable[Path]] | None = None,
    renamed: dict[str, str] | None = None,
) -> None:
    """Run ``train(cfg, resume=, overwrite=)`` on the config ``build()`` makes.

    ``config_cls`` names the flags of invalid options; ``command`` is the typer function, so
    that on ``--resume`` only the options typed now ask for changes (``renamed`` maps
    option names that differ from their config fields); ``more_inputs(cfg)`` lists input
    files besides the particles (an atomic model), which ``--out`` must not be (it may raise
    :class:`~cryohet.errors.ConfigError` for a missing one)."""
    from ..methods.base import check_train_out

    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    try:
        cfg = build()
    except ValidationError as err:
        raise config_error(err, config_cls, {ParticleSource: "data."}) from None
    inputs = [*cfg.data.files(), *(more_inputs(cfg) if more_inputs is not None else ())]
    check_train_out(cfg.out, inputs, cfg.method, resume)  # --out not an input; a run this cryohet reads
    if resume:  # a moved run resumes where it now is
        cfg = resume_config(cfg.out, cfg, command, renamed)
    typer.echo(f"wrote {train(cfg, resume=resume, overwrite=overwrite)}")
