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

Nothing in this module knows about a particular method.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunDirError

__all__ = ["RunDir"]


class RunDir:
    """Paths and atomic readers/writers for one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- paths ---------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def model(self) -> Path:
        return self.path / "model.pt"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def latents(self) -> Path:
        return self.path / "latents.npy"

    @property
    def poses(self) -> Path:
        return self.path / "poses.npz"

    @property
    def train_log(self) -> Path:
        return self.path / "train_log.jsonl"

    @property
    def extras(self) -> Path:
        return self.path / "extras"

    # -- creation ------------------------------------------------------------
    def create(self, resume: bool = False, overwrite: bool = False) -> None:
        """Make the folder. An existing run is an error unless resuming or overwriting."""
        if self.path.exists() and any(self.path.iterdir()) and not (resume or overwrite):
            raise RunDirError(
                f"{self.path}: run directory exists and is not empty; pass --resume to continue it "
                "or choose another --out"
            )
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path}: exists and is not a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self.extras.mkdir(exist_ok=True)

    def require(self, *names: str) -> None:
        """Error (one line) when the run lacks any of the named files."""
        if not self.path.is_dir():
            raise RunDirError(f"{self.path}: not a run directory (folder not found)")
        missing = [n for n in names if not (self.path / n).exists()]
        if missing:
            raise RunDirError(f"{self.path}: incomplete run directory, missing {', '.join(missing)}")

    # -- arrays ----------------------------------------------------------------
    @staticmethod
    def _atomic_np_save(path: Path, array: np.ndarray) -> None:
        tmp = path.with_name(f".{path.name}.tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, path)

    def save_latents(self, z: np.ndarray) -> None:
        self._atomic_np_save(self.latents, np.asarray(z, dtype=np.float32))

    def load_latents(self) -> np.ndarray:
        self.require("latents.npy")
        try:
            return np.load(self.latents, allow_pickle=False)
        except Exception as err:  # noqa: BLE001
            raise RunDirError(f"{self.latents}: unreadable latents ({err})") from None

    def save_poses(self, rotations: np.ndarray, shifts_A: np.ndarray) -> None:
        tmp = self.poses.with_name(".poses.tmp.npz")
        np.savez(tmp, rotations=np.asarray(rotations, np.float32), shifts_A=np.asarray(shifts_A, np.float32))
        os.replace(tmp, self.poses)

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
        tmp = path.with_name(f".{name}.tmp.npz")
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
        os.replace(tmp, path)
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
        rows = [r for r in self.read_log() if int(r.get("epoch", 0)) <= after_epoch]
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
