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

What a user can trust (issue 19): one writer per run (:mod:`.lock`); ``--overwrite``
empties the old run first; every checkpoint carries the run's identity and a resume
refuses another run's checkpoints (:mod:`.identity`); ``--resume`` continues the *same*
run (changes to resumable fields such as more epochs are applied and reported, others
refused); ``COMPLETED`` is removed when training starts and written last
(:meth:`RunSession.complete`), and readers require it; SIGINT/SIGTERM end the run with a
one-line message saying how to resume (the checkpoints are atomic, so stopping at once
is safe).

Under ``torchrun`` the session joins the process group (:func:`init_distributed`; the
device becomes ``cuda:LOCAL_RANK``); rank 0 alone creates the directory and writes the
config, the log and the checkpoints, and every rank reads the checkpoint it resumes from
(the run directory must be on a file system all nodes share). With one process all of
this is the plain single-process path.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import yaml
from pydantic import BaseModel

from ..config import load_config, provenance, save_config
from ..console import attach_run_log, detach_handler, get_logger
from ..errors import ConfigError, CryohetError, Interrupted, RunDirError
from .checkpoint import all_checkpoints
from .distributed import barrier, broadcast_object, init_distributed, quiet_non_main
from .identity import config_hash, epochs_done_message, flatten, new_run_id, reconcile_resume
from .lock import RunLock
from .loop import epochs_done, run_epochs
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
        protect: tuple[Path, ...] = (),
    ) -> None:
        self.run = RunDir(out)
        self.resume = resume
        self.overwrite = overwrite
        self.label = label
        self.protect = tuple(protect)
        self.dist, self.device = init_distributed(str(device))
        self.log = get_logger(label)
        self.t0 = time.perf_counter()
        self._handler = None
        self._lock: RunLock | None = None
        self._signals: dict[int, Any] = {}
        self._saved: dict[str, Any] = {}  # the run's config.yaml when resuming
        self.run_id: str | None = None
        self.changes: list[str] = []

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
        self._install_signal_handlers()
        try:
            if self.is_main:
                if self.path.exists() and not self.path.is_dir():
                    raise RunDirError(f"{self.path}: exists and is not a directory")
                self._fresh = not self.path.exists()
                self._lock = RunLock(self.path).acquire()
                self.run.create(resume=self.resume, overwrite=self.overwrite, protect=self.protect)
                self.run.unmark_complete()
                self._handler = attach_run_log(self.run.path)
            barrier()  # the directory exists (or rank 0 failed and torchrun stops the others)
            self._saved = self._read_saved() if self.resume else {}
            run_id = (self._saved.get("_run") or {}).get("id") or new_run_id()
            self.run_id = broadcast_object(run_id)  # one id for every rank
        except BaseException:
            self.__exit__()
            raise
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any = None, exc: Any = None, tb: Any = None) -> None:
        if self._handler is not None:
            detach_handler(self._handler)
            self._handler = None
        failed_fresh = (
            self.is_main
            and getattr(self, "_fresh", False)
            and exc_type is not None
            and issubclass(exc_type, CryohetError)
            and not issubclass(exc_type, Interrupted)
            and self.path.is_dir()
            and not all_checkpoints(self.path)
        )
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if failed_fresh:  # a new run that failed on its input before training: leave no half-made folder
            shutil.rmtree(self.path, ignore_errors=True)
        for signum, previous in self._signals.items():
            signal.signal(signum, previous)
        self._signals = {}

    # -- signals -------------------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM raise :class:`Interrupted` (a one-line message, exit 130/143)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            raise Interrupted(
                f"{self.path}: stopped by {name}; every finished epoch is checkpointed: continue with the same "
                "command and --resume",
                exit_code=128 + signum,
            )

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._signals[signum] = signal.signal(signum, stop)

    # -- config, identity, resume ---------------------------------------------------------
    def _read_saved(self) -> dict[str, Any]:
        if not self.run.config.exists():
            return {}
        try:
            raw = yaml.safe_load(self.run.config.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise RunDirError(f"{self.run.config}: unreadable ({type(err).__name__}); cannot resume") from None
        return raw if isinstance(raw, dict) else {}

    def reconcile(self, config: BaseModel) -> BaseModel:
        """The config to train with: ``config`` for a new run; on resume the run's own config
        with the allowed changes of ``config`` applied (reported) — other differences are
        refused in one line (:func:`.identity.reconcile_resume`)."""
        if not self.resume or not self._saved:
            return config
        saved = load_config(self.run.config, type(config), drop=("resolved",))
        merged, self.changes = reconcile_resume(saved, config)
        for change in self.changes:
            self.log.info("resume applies %s", change)
        return merged

    @property
    def identity(self) -> dict[str, str] | None:
        """Run id and config hash (set by :meth:`save_config`), stored in every checkpoint."""
        return getattr(self, "_identity", None)

    def save_config(self, config: BaseModel, resolved: dict[str, Any] | None = None) -> Path:
        """Write ``config.yaml`` (rank 0): the resolved config, the ``resolved`` block (what was
        derived from the data: box, pixel size, counts, timings), the run's identity
        (``_run``) and provenance (``_provenance``: the command that started the run;
        ``_resumes``: each resume, with the changes it applied)."""
        saved_run = self._saved.get("_run") or {}
        unhashed: list[str] = []
        basis = None
        if saved_run.get("config_hash"):
            # a resumed run is hashed over the fields it started with: fields added to the
            # method since then take their defaults (the run's behaviour) and are listed
            basis = set(flatten(self._saved)) - set(saved_run.get("unhashed") or ())
            unhashed = sorted(set(flatten(config.model_dump(mode="json"))) - basis)
        chash = config_hash(config, basis)
        if saved_run.get("config_hash") and saved_run["config_hash"] != chash:
            raise RunDirError(
                f"{self.run.config}: the run's config was edited since it started (hash {saved_run['config_hash']}, "
                f"now {chash}); restore it, or start a new run with --overwrite or another --out"
            )
        self._identity = {"id": self.run_id, "config_hash": chash}
        extra: dict[str, Any] = {"resolved": dict(resolved or {})}
        if self.dist.enabled:
            extra["resolved"].update(world_size=self.dist.world_size, backend=self.dist.backend)
        created = saved_run.get("created") or _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        extra["_run"] = {**self._identity, "created": created, **({"unhashed": unhashed} if unhashed else {})}
        if self._saved.get("_provenance"):
            extra["_provenance"] = self._saved["_provenance"]
            if not hasattr(self, "_resume_entry"):
                self._resume_entry = {**provenance(), "changes": list(self.changes)}
            extra["_resumes"] = [*(self._saved.get("_resumes") or []), self._resume_entry]
        self._pending_config = (config, extra)
        if self.is_main and (not self.resume or self._trained):
            # a resume writes its config only once the checkpoint checks passed (train), so a
            # refused resume leaves config.yaml as it was
            save_config(self.run.config, config, extra=extra)
        return self.run.config

    def complete(self, **info: Any) -> None:
        """Write ``COMPLETED`` (rank 0): call after the last output is written."""
        if self.is_main:
            self.run.mark_complete({"run_id": self.run_id, **info})

    def train(self, trainer: Trainer, n_epochs: int, keep_checkpoints: int = 2) -> list[dict[str, Any]]:
        """Run (or continue) ``trainer`` for epochs ``0 .. n_epochs - 1``; returns the log rows."""
        self._trained = True
        if self.resume:
            self._check_resume(n_epochs)
            pending = getattr(self, "_pending_config", None)
            if pending is not None and self.is_main:
                save_config(self.run.config, pending[0], extra=pending[1])
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
            identity=self.identity,
            epoch_fields=tuple(k for k in self.epoch_fields),
            snapshot=getattr(trainer, "snapshot", None),
            snapshot_every=int(getattr(getattr(trainer, "cfg", None), "snapshot_every", 0) or 0),
        )

    #: Options that set the number of epochs (named in the error when a resume asks for fewer).
    epoch_fields: tuple[str, ...] = ()
    _trained = False

    def _check_resume(self, n_epochs: int) -> None:
        """Before anything is written: the run has not done more epochs than asked for."""
        done = epochs_done(self.run)
        if done > n_epochs:
            raise ConfigError(f"{self.path}: {epochs_done_message(done, n_epochs, self.epoch_fields)}")
