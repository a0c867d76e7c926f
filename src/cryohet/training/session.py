"""A training run's session: its run directory, provenance, log, checkpoints and epochs.

Every method trains through a :class:`RunSession` and a :class:`Trainer`::

    with RunSession(cfg.out, resume=resume, overwrite=overwrite, label="spire") as session:
        trainer = SpireTrainer(cfg, session)
        session.save_config(cfg, resolved={...})
        session.train(trainer, n_epochs)
        trainer.write_outputs()

The session creates (or reopens, with ``resume``) the run directory, mirrors the log to
``RUN/run.log``, stamps the config with provenance (:func:`cryohet.config.save_config`),
and runs the epochs (:func:`cryohet.training.loop.run_epochs`): a weights-only
checkpoint after every epoch, a row in ``train_log.jsonl``, and on ``resume`` the latest
checkpoint restored before the next epoch.

Under ``torchrun`` the session joins the process group (:func:`init_distributed`; the
device becomes ``cuda:LOCAL_RANK``); rank 0 alone creates the directory and writes the
config, the log and the checkpoints, and every rank reads the checkpoint it resumes from
(the run directory must be on a file system all nodes share). With one process all of
this is the plain single-process path.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from pydantic import BaseModel

from ..config import save_config
from ..console import attach_run_log, detach_handler, get_logger
from .distributed import barrier, init_distributed, quiet_non_main
from .loop import run_epochs
from .rundir import RunDir

__all__ = ["RunSession", "Trainer"]


@runtime_checkable
class Trainer(Protocol):
    """What a method hands the session: one epoch at a time, and its state to checkpoint.

    ``train_epoch`` returns numbers to log and must report ``n_images``; ``get_state``
    returns tensors and plain values only (weights-only checkpoints); ``set_state``
    restores them. A trainer that converges early sets ``done = True`` (checkpointed with
    its state), and the session stops after that epoch.
    """

    def train_epoch(self, epoch: int) -> dict[str, Any]: ...

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: dict[str, Any]) -> None: ...


class RunSession:
    """Context manager owning one run directory while a method trains into it.

    Args:
        out: the run directory.
        resume: continue a run from its latest checkpoint.
        overwrite: reuse a non-empty directory for a new run.
        label: logger name and log prefix (the method).
        device: where checkpoints are loaded to.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        label: str = "train",
        device: torch.device | str = "cpu",
    ) -> None:
        self.run = RunDir(out)
        self.resume = resume
        self.overwrite = overwrite
        self.label = label
        self.dist, self.device = init_distributed(str(device))
        self.log = get_logger(label)
        self.t0 = time.perf_counter()
        self._handler = None

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def elapsed_s(self) -> float:
        """Seconds since the session opened (this process)."""
        return time.perf_counter() - self.t0

    @property
    def is_main(self) -> bool:
        """Rank 0 (always, with one process): the process that writes."""
        return self.dist.is_main

    def __enter__(self) -> RunSession:
        quiet_non_main()
        if self.is_main:
            self.run.create(resume=self.resume, overwrite=self.overwrite)
            self._handler = attach_run_log(self.run.path)
        barrier()  # the directory exists (or rank 0 failed and torchrun stops the others)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handler is not None:
            detach_handler(self._handler)
            self._handler = None

    def save_config(self, config: BaseModel, resolved: dict[str, Any] | None = None) -> Path:
        """Write ``config.yaml`` (rank 0): the resolved config, provenance, and the ``resolved``
        block (what was derived from the data: box, pixel size, counts, timings)."""
        extra = {"resolved": dict(resolved or {})}
        if self.dist.enabled:
            extra["resolved"].update(world_size=self.dist.world_size, backend=self.dist.backend)
        if self.is_main:
            save_config(self.run.config, config, extra=extra)
        return self.run.config

    def train(self, trainer: Trainer, n_epochs: int, keep_checkpoints: int = 2) -> list[dict[str, Any]]:
        """Run (or continue) ``trainer`` for epochs ``0 .. n_epochs - 1``; returns the log rows."""
        return run_epochs(
            self.run,
            n_epochs,
            trainer.train_epoch,
            trainer.get_state,
            trainer.set_state,
            resume=self.resume,
            keep_checkpoints=keep_checkpoints,
            device=self.device,
            label=self.label,
            is_done=lambda: bool(getattr(trainer, "done", False)),
        )
