"""The run directory: the contract between training and everything after it.

Layout (every method)::

    RUN/
      config.yaml          fully resolved config + provenance (method, data, model, training)
      model.pt             final weights (weights only: torch.load(weights_only=True))
      checkpoints/         epoch_NNNN.pt after every epoch (atomic), for --resume
      latents.npy          (N, zdim) float32, one row per particle in input order
      poses.npz            rotations (N,3,3) RELION A, shifts_A (N,2) — when estimated/used
      train_log.jsonl      one JSON object per epoch (losses, timings, images/s)
      run.log              human-readable log of the run
      extras/              method-specific outputs (e.g. Gaussians and part labels)
      COMPLETED            written last: every output is there (removed while training)
      .lock                held by the process that writes the run (training/lock.py)

``config.yaml`` carries the run's identity (``_run``: id, config hash) and provenance
(``_provenance``: the first command; ``_resumes``: each resume). Checkpoints carry the
same identity, so a resume never picks up another run's state.

Nothing in this module knows about a particular method.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import RunDirError
from ..io.outputs import atomic_path
from .lock import LOCK_NAME

__all__ = ["RunDir", "COMPLETE_NAME", "as_run_dir"]

COMPLETE_NAME = "COMPLETED"


class RunDir:
    """Paths and atomic readers/writers for one run directory."""

    def __init__(self, path: str | Path, epoch: int | None = None) -> None:
        """``epoch`` (counted from 1): a view of the run as it was after that epoch; its
        ``model``, ``latents`` and ``poses`` are the snapshot's (:mod:`.snapshots`)."""
        self.path = Path(path)
        self.epoch = None if epoch is None else int(epoch)

    @property
    def _files(self) -> Path:
        """Where ``model.pt``, ``latents.npy`` and ``poses.npz`` are: the run, or its snapshot."""
        if self.epoch is None:
            return self.path
        from .snapshots import snapshot_dir

        return snapshot_dir(self.path, self.epoch)

    # -- paths ---------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def model(self) -> Path:
        return self._files / "model.pt"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def latents(self) -> Path:
        return self._files / "latents.npy"

    @property
    def poses(self) -> Path:
        return self._files / "poses.npz"

    @property
    def train_log(self) -> Path:
        return self.path / "train_log.jsonl"

    @property
    def extras(self) -> Path:
        return self.path / "extras"

    @property
    def completed(self) -> Path:
        return self.path / COMPLETE_NAME

    # -- creation ------------------------------------------------------------
    def is_run_directory(self) -> bool:
        """True when the folder holds a cryohet ``config.yaml`` (one with a ``method`` entry)."""
        try:
            raw = yaml.safe_load(self.config.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return False
        return isinstance(raw, dict) and "method" in raw

    def create(self, resume: bool = False, overwrite: bool = False, protect: tuple[Path, ...] = ()) -> None:
        """Make the folder for a new run (or reopen one with ``resume``).

        A non-empty folder is an error unless resuming, or overwriting a cryohet run;
        ``overwrite`` then empties it first (checkpoints, log, every output, ``analyze/``),
        so nothing of the old run can come back. A folder that is not a cryohet run is
        never emptied, nor one holding any of the ``protect`` paths (the new run's inputs).
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path}: exists and is not a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        contents = [e for e in self.path.iterdir() if e.name != LOCK_NAME]
        if contents and not resume:
            if not overwrite:
                raise RunDirError(
                    f"{self.path}: run directory exists and is not empty; pass --resume to continue it, "
                    "--overwrite to replace it, or choose another --out"
                )
            if not self.is_run_directory():
                raise RunDirError(
                    f"{self.path}: not empty and not a cryohet run directory; --overwrite only replaces a cryohet "
                    "run, choose another --out"
                )
            root = self.path.resolve()
            for p in protect:
                q = Path(p).expanduser().resolve()
                if q == root or root in q.parents:
                    raise RunDirError(f"{self.path}: holds an input of this run ({q}); --overwrite would delete it")
            self.clear()
        self.extras.mkdir(exist_ok=True)

    def clear(self) -> None:
        """Remove everything in the run directory (its lock file excepted)."""
        for entry in self.path.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # -- completion ------------------------------------------------------------
    def mark_complete(self, info: dict[str, Any]) -> None:
        """Write ``COMPLETED`` (last, atomically): the run's outputs are all there."""
        tmp = self.completed.with_name(f".{COMPLETE_NAME}.tmp")
        tmp.write_text(json.dumps({"time": time.time(), **info}))
        os.replace(tmp, self.completed)

    def unmark_complete(self) -> None:
        """Remove ``COMPLETED`` (training starts or resumes: outputs are about to change)."""
        self.completed.unlink(missing_ok=True)

    def is_complete(self) -> bool:
        """``COMPLETED`` is there, or the run predates completion stamps (no ``_run`` block in
        its config) and has its latents (written last by the versions before stamps)."""
        if self.completed.exists():
            return True
        try:
            raw = yaml.safe_load(self.config.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return False
        return isinstance(raw, dict) and "_run" not in raw and self.latents.exists()

    def require_complete(self, allow_unfinished: bool = False) -> None:
        """One-line error for a run that is still training, was killed or failed (unless allowed)."""
        if allow_unfinished or self.is_complete():
            return
        raise RunDirError(
            f"{self.path}: the run is unfinished (still training, killed or failed); continue it with --resume, "
            "or pass --allow-unfinished to look at it as it is"
        )

    def require(self, *names: str) -> None:
        """Error (one line) when the run lacks any of the named files."""
        if not self.path.is_dir():
            raise RunDirError(f"{self.path}: not a run directory (folder not found)")
        own = ("model.pt", "latents.npy", "poses.npz")
        missing = [n for n in names if not ((self._files if n in own else self.path) / n).exists()]
        if missing and self.epoch is not None and any(n in own for n in missing):
            from .snapshots import snapshot_epochs

            have = snapshot_epochs(self.path)
            raise RunDirError(
                f"{self.path}: no snapshot of epoch {self.epoch} (snapshots: "
                + (", ".join(map(str, have)) if have else "none; the run kept none")
                + ")"
            )
        if missing:
            raise RunDirError(f"{self.path}: incomplete run directory, missing {', '.join(missing)}")

    # -- arrays ----------------------------------------------------------------
    @staticmethod
    def _atomic_np_save(path: Path, array: np.ndarray) -> None:
        with atomic_path(path) as tmp:  # no partial file after a failure
            np.save(tmp, array)

    def save_latents(self, z: np.ndarray) -> None:
        self._atomic_np_save(self.latents, np.asarray(z, dtype=np.float32))

    def load_latents(self) -> np.ndarray:
        self.require("latents.npy")
        try:
            return np.load(self.latents, allow_pickle=False)
        except Exception as err:  # noqa: BLE001
            raise RunDirError(f"{self.latents}: unreadable latents ({err})") from None

    def save_poses(self, rotations: np.ndarray, shifts_A: np.ndarray) -> None:
        with atomic_path(self.poses) as tmp:
            np.savez(tmp, rotations=np.asarray(rotations, np.float32), shifts_A=np.asarray(shifts_A, np.float32))

    def load_poses(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(rotations (N, 3, 3), shifts_A (N, 2))`` float64, or None without ``poses.npz``."""
        arrays = _read_npz(self.poses)
        if arrays is None:
            return None
        rot, shifts = arrays.get("rotations"), arrays.get("shifts_A")
        if rot is None or shifts is None:
            raise RunDirError(f"{self.poses}: not a poses file (expected arrays rotations and shifts_A)")
        if rot.ndim != 3 or rot.shape[1:] != (3, 3) or shifts.shape != (len(rot), 2):
            raise RunDirError(
                f"{self.poses}: rotations {rot.shape} and shifts_A {shifts.shape} are not (N, 3, 3) and (N, 2)"
            )
        if rot.dtype.kind not in "fi" or shifts.dtype.kind not in "fi":
            raise RunDirError(f"{self.poses}: rotations and shifts_A must be numbers")
        return rot.astype(np.float64), shifts.astype(np.float64)

    def save_extra(self, name: str, **arrays: np.ndarray) -> Path:
        """Save method extras as ``extras/<name>.npz`` (plain arrays, no pickles)."""
        self.extras.mkdir(parents=True, exist_ok=True)
        path = self.extras / f"{name}.npz"
        with atomic_path(path) as tmp:
            np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
        return path

    def load_extra(self, name: str) -> dict[str, np.ndarray] | None:
        """The arrays of ``extras/<name>.npz`` (None when absent; a damaged file is an error)."""
        return _read_npz(self.extras / f"{name}.npz")

    # -- logs -----------------------------------------------------------------
    def append_log(self, record: dict[str, Any]) -> None:
        with open(self.train_log, "a") as fh:
            fh.write(json.dumps({"time": time.time(), **record}) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        """The rows of ``train_log.jsonl`` (a line cut by a kill is skipped; a file that is
        not text, as cryohet writes it, is a one-line error)."""
        if not self.train_log.exists():
            return []
        try:
            text = self.train_log.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise RunDirError(
                f"{self.train_log}: damaged training log (not UTF-8 text: byte 0x{err.object[err.start]:02x} "
                f"at offset {err.start})"
            ) from None
        except OSError as err:
            raise RunDirError(f"{self.train_log}: unreadable training log ({err.strerror or err})") from None
        rows = []
        for line in text.splitlines():
            line = line.strip()
            if line:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill; the next epoch rewrites it
                if isinstance(row, dict):
                    rows.append(row)
        return rows

    def truncate_log(self, after_epoch: int) -> None:
        """Drop log rows of epochs after ``after_epoch`` (used when resuming)."""
        self.rewrite_log([r for r in self.read_log() if int(r.get("epoch", 0)) <= after_epoch])

    def rewrite_log(self, rows: list[dict[str, Any]]) -> None:
        """Replace ``train_log.jsonl`` by ``rows``, atomically."""
        tmp = self.train_log.with_name(".train_log.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, self.train_log)


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    """Every array of an ``.npz`` (None when the file does not exist); a truncated or
    otherwise damaged file is a one-line :class:`RunDirError`."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as err:  # noqa: BLE001 - zipfile, zlib, numpy and OS errors all mean a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunDirError(f"{path}: damaged or unreadable ({type(err).__name__}: {first[:160]})") from None


def as_run_dir(run: str | Path | RunDir) -> RunDir:
    """``run`` itself when it is a :class:`RunDir` (e.g. a view of an epoch), else the run at that path."""
    return run if isinstance(run, RunDir) else RunDir(run)
