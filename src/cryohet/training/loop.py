"""The epoch loop every method runs in: checkpoint each epoch, resume, log, time.

A method hands :func:`run_epochs` three callables (on every rank of a distributed run;
only rank 0 writes the checkpoint and the log row):

* ``train_epoch(epoch) -> dict`` runs one epoch and returns numbers to log
  (it must report ``n_images`` so the loop can compute images/s);
* ``get_state() -> dict`` returns everything needed to continue (model and optimizer
  state dicts, latent tables, stage, ...) as tensors and plain values;
* ``set_state(dict)`` restores it.

After every epoch the state is written atomically to ``RUN/checkpoints/epoch_NNNN.pt``
and a row appended to ``RUN/train_log.jsonl``. With ``resume=True`` the latest
checkpoint is loaded and training continues with the next epoch, so a killed run
finishes with the same number of epochs. Data order should be a function of
``(seed, epoch)`` so that a resumed run sees what an uninterrupted one would.

Epochs are numbered from 1 wherever a person or a file sees them: the console
(``epoch 3/10``), the log row (``"epoch": 3``) and the checkpoint (``epoch_0003.pt``,
the state after 3 epochs) agree. Only ``train_epoch`` receives the 0-based index (``2``
for epoch 3), which methods use for schedules and seeds. Runs written before this
numbering (rows and checkpoints from 0) still resume: :func:`epochs_done` tells them apart.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

import torch

from ..console import get_logger
from ..errors import ConfigError, RunDirError
from .checkpoint import all_checkpoints, checkpoint_path, load_latest_checkpoint, prune_checkpoints, save_checkpoint
from .distributed import get_dist
from .identity import epochs_done_message
from .rundir import RunDir
from .snapshots import snapshot_dir, wants_snapshot

__all__ = ["run_epochs", "epochs_done", "peak_rss_mb", "gpu_peak_mb"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def gpu_peak_mb(device: torch.device | str | None = None) -> float | None:
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def _legacy_numbering(run: RunDir, state: dict[str, Any] | None = None) -> bool:
    """Whether the run numbers epochs from 0 (written before epochs were numbered from 1):
    its checkpoint has no ``epochs_done``, or (without a checkpoint at hand) its log has a row 0."""
    if state is not None:
        return "epochs_done" not in state
    return any(r.get("epoch") == 0 for r in run.read_log())


def epochs_done(run: RunDir) -> int:
    """How many epochs the run's latest checkpoint holds (0 without one), from its file name."""
    found = all_checkpoints(run.path)
    if not found:
        return 0
    number = int(found[-1].stem.split("_")[1])
    return number + 1 if _legacy_numbering(run) else number


def _epochs_in(state: dict[str, Any]) -> int:
    """How many epochs a loaded checkpoint holds."""
    return int(state["epochs_done"]) if "epochs_done" in state else int(state["epoch"]) + 1


def _resume_log(run: RunDir, state: dict[str, Any], main: bool) -> int:
    """Epochs done in a loaded checkpoint; the log cut back to them (rank 0; a run from
    before 1-based numbering gets its rows renumbered)."""
    legacy = _legacy_numbering(run, state)
    done = _epochs_in(state)
    if main:
        rows = run.read_log()
        if legacy:
            rows = [{**r, "epoch": int(r["epoch"]) + 1} if isinstance(r.get("epoch"), int) else r for r in rows]
        run.rewrite_log([r for r in rows if int(r.get("epoch", 0)) <= done])
        row = state.get("log_row")
        if row and not any(r.get("epoch") == done for r in rows):
            run.append_log({**row, "epoch": done})  # killed between the checkpoint and its log row
    return done


def run_epochs(
    run: RunDir,
    n_epochs: int,
    train_epoch: Callable[[int], dict[str, Any]],
    get_state: Callable[[], dict[str, Any]],
    set_state: Callable[[dict[str, Any]], None],
    resume: bool = False,
    keep_checkpoints: int = 2,
    device: torch.device | str = "cpu",
    label: str = "train",
    is_done: Callable[[], bool] | None = None,
    identity: dict[str, str] | None = None,
    epoch_fields: tuple[str, ...] = (),
    snapshot: Callable[[RunDir], None] | None = None,
    snapshot_every: int = 0,
) -> list[dict[str, Any]]:
    """Run the epochs not done yet (up to ``n_epochs``) with a checkpoint after each; returns the log rows.

    ``is_done`` (checked after restoring a checkpoint and after every epoch) ends training
    early, e.g. when an EM has converged. ``identity`` (run id and config hash,
    :mod:`.identity`) goes into every checkpoint; on resume a checkpoint of another run,
    or of this run with another config, is refused. Each checkpoint also holds its
    epoch's log row, so a kill between the checkpoint and the log leaves no hole.
    ``epoch_fields`` names the options that set ``n_epochs`` (for the error when a resume
    asks for fewer epochs than the run has done). ``snapshot(view)`` (rank 0) writes the
    method's model files into ``RUN/epochs/epoch_NNNN`` after every ``snapshot_every``-th
    epoch and the last (:mod:`.snapshots`).
    """
    log = get_logger(label)
    main = get_dist().is_main  # only rank 0 writes checkpoints and the log; every rank reads them
    start = 0
    if resume:
        state = load_latest_checkpoint(run.path, map_location=device)
        if state is not None:
            _check_identity(run, state, identity)
            if _epochs_in(state) > n_epochs:
                raise ConfigError(f"{run.path}: {epochs_done_message(_epochs_in(state), n_epochs, epoch_fields)}")
            set_state(state["state"])
            start = _resume_log(run, state, main)
            log.info("resuming after epoch %d/%d", start, n_epochs)
        else:
            log.info("no checkpoint in %s; starting from scratch", run.checkpoints)
    done = is_done or (lambda: False)
    if done():
        log.info("the run had converged; nothing left to train")
        return run.read_log()
    for epoch in range(start, n_epochs):  # 0-based index; epoch + 1 is its number
        t0 = time.perf_counter()
        stats = train_epoch(epoch)
        seconds = time.perf_counter() - t0
        n_images = int(stats.get("n_images", 0))
        row = {
            "epoch": epoch + 1,
            **{k: (float(v) if isinstance(v, (int, float)) else v) for k, v in stats.items()},
            "seconds": round(seconds, 3),
            "images_per_s": round(n_images / seconds, 2) if seconds > 0 else None,
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
        gpu = gpu_peak_mb(device)
        if gpu is not None:
            row["gpu_peak_mb"] = round(gpu, 1)
        state = get_state()  # every rank (a trainer may gather for it)
        if main:
            ckpt = {"epoch": epoch + 1, "epochs_done": epoch + 1, "state": state, "log_row": row}
            if identity:
                ckpt["run"] = dict(identity)
            save_checkpoint(checkpoint_path(run.path, epoch + 1), ckpt)
            prune_checkpoints(run.path, keep_last=keep_checkpoints)
            run.append_log(row)
            if snapshot is not None and wants_snapshot(epoch + 1, n_epochs, snapshot_every):
                folder = snapshot_dir(run.path, epoch + 1)
                folder.mkdir(parents=True, exist_ok=True)
                snapshot(RunDir(run.path, epoch=epoch + 1))
                if not any(folder.iterdir()):  # the method had nothing to keep yet (CryoSPIRE's stage A)
                    folder.rmdir()
        shown = ", ".join(f"{k}={v:.5g}" for k, v in row.items() if isinstance(v, float) and k not in ("epoch",))
        log.info("epoch %d/%d: %s", epoch + 1, n_epochs, shown)
        if done():
            log.info("converged after epoch %d of %d", epoch + 1, n_epochs)
            break
    return run.read_log()


def _check_identity(run: RunDir, state: dict[str, Any], identity: dict[str, str] | None) -> None:
    """Refuse a checkpoint of another run, or of this run under another config."""
    mine = state.get("run")
    if not identity or not mine:
        return  # checkpoints written before run identities existed
    if mine.get("id") != identity.get("id"):
        raise RunDirError(
            f"{run.checkpoints}: the checkpoints belong to another run (id {mine.get('id')}, this run is "
            f"{identity.get('id')}); start a new run with --overwrite or another --out"
        )
    if mine.get("config_hash") != identity.get("config_hash"):
        raise RunDirError(
            f"{run.config}: the config differs from the one the checkpoints were trained with "
            "(config.yaml was edited?); restore it, or start a new run with --overwrite or another --out"
        )
