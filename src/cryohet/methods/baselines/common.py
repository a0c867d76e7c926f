"""What the baselines share: the config fields, the data set-up, the run-directory writer
and a :class:`TrainedModel` for "a set of voxel maps chosen by the latent".

Every baseline reads particles with known poses and CTF (:class:`ParticleSource`),
optionally Fourier-cropped to ``box``, **not** normalised (maps come out in the images'
units, so a simulated set's maps are on the scale of its ground-truth maps), and
inverted only when asked (``invert``: for dark-protein stacks; RELION/cryohet
simulations are protein-bright).

Run directory of a baseline (on top of :class:`~cryohet.training.rundir.RunDir`)::

    config.yaml    the method's config + ``resolved`` (box, apix, n_particles, seconds, peak RSS)
    model.pt       {"maps": (K, D, D, D) float32, ...} weights only
    latents.npy    (N, zdim) float32
    poses.npz      the poses used (given, not estimated)
    map_NNN.mrc    (or consensus.mrc / class_NNN.mrc / ...) for viewing
    train_log.jsonl, run.log
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...console import get_logger
from ...data.batch import ParticleBatch
from ...device import resolve_device
from ...errors import InputError, RunDirError
from ...io.mrc import write_volume
from ...representations.voxel import resample_volume
from ...training.checkpoint import load_checkpoint, save_checkpoint
from ...training.identity import config_input_paths
from ...training.loop import peak_rss_mb
from ...training.per_image import my_rows
from ...training.rundir import RunDir, as_run_dir
from ...training.session import RunSession
from ..base import TrainedModel, read_run_config, resolved_geometry
from ..particles import open_particles
from .config import BaselineConfig

__all__ = [
    "BaselineConfig",
    "BaselineData",
    "load_baseline_data",
    "BaselineOutputs",
    "BaselineTrainer",
    "run_baseline",
    "MapSetModel",
    "iter_batches",
    "resolve_device",
]

log = get_logger("baselines")


class BaselineData:
    """The particle dataset of a baseline run, with its working box and pixel size (Å)."""

    def __init__(self, cfg: BaselineConfig, device: torch.device | None = None) -> None:
        opened = open_particles(cfg, f"the {cfg.method} baseline", normalize=False,
                                poses_needed="needs poses (a refined .star/.cs or --poses)")  # fmt: skip
        self.invert, self.contrast, self.dataset = opened.invert, opened.contrast, opened.dataset
        self.box, self.apix, self.n = opened.box, opened.apix, opened.n
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)

    @property
    def rotations(self) -> np.ndarray:
        return self.dataset.meta.rotations

    @property
    def shifts_A(self) -> np.ndarray:
        sh = self.dataset.meta.shifts_A
        return sh if sh is not None else np.zeros((self.n, 2))


def load_baseline_data(cfg: BaselineConfig, device: torch.device | None = None) -> BaselineData:
    return BaselineData(cfg, device)


def iter_batches(
    data: BaselineData, batch_size: int, device: torch.device
) -> Iterator[tuple[np.ndarray, ParticleBatch]]:
    """``(rows, batch)`` over this rank's share of the particles in order (every particle with
    one process), tensors moved to ``device``. Results per row are gathered with
    :func:`~cryohet.training.per_image.gather_rows_into`, sums with ``all_reduce_sum_``."""
    mine = my_rows(data.n)
    for start in range(0, len(mine), batch_size):
        rows = mine[start : start + batch_size]
        batch = data.dataset.get_batch(rows)
        yield rows, batch.to(device)


@dataclass
class BaselineOutputs:
    """What a finished baseline writes: ``model.pt`` tensors, latents ``(N, zdim)``, viewing
    maps (``NAME.mrc``), method extras (``extras/NAME.npz``) and entries of ``resolved``."""

    state: dict[str, torch.Tensor]
    latents: np.ndarray
    maps: dict[str, np.ndarray]
    extras: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)


class BaselineTrainer(ABC):
    """A baseline as a session trainer (:class:`~cryohet.training.session.Trainer`).

    Its epochs are its EM iterations or reconstructions (``n_epochs``); every epoch is
    checkpointed, so ``--resume`` continues a killed baseline. An EM that converges sets
    ``done``. :meth:`outputs` gives what the run directory keeps.
    """

    done: bool = False

    def __init__(self, cfg: BaselineConfig, data: BaselineData) -> None:
        self.cfg = cfg
        self.data = data

    @property
    @abstractmethod
    def n_epochs(self) -> int:
        """Epochs (iterations) at most."""

    @abstractmethod
    def train_epoch(self, epoch: int) -> dict[str, Any]: ...

    @abstractmethod
    def get_state(self) -> dict[str, Any]: ...

    @abstractmethod
    def set_state(self, state: dict[str, Any]) -> None: ...

    @abstractmethod
    def outputs(self) -> BaselineOutputs: ...


def run_baseline(
    cfg: BaselineConfig,
    trainer_cls: Callable[[BaselineConfig, BaselineData], BaselineTrainer],
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train a baseline into ``cfg.out`` through a :class:`RunSession`; returns the run directory.

    Writes model.pt (weights only), latents, the poses used, the viewing maps, the extras
    and the resolved config (box, apix, timing, peak RSS).
    """
    with RunSession(
        cfg.out,
        resume=resume,
        overwrite=overwrite,
        label=f"baselines.{cfg.method}",
        device=cfg.device,
        protect=config_input_paths(cfg),
    ) as session:
        cfg = session.reconcile(cfg)
        session.epoch_fields = ("--iterations",)
        data = load_baseline_data(cfg, session.device)
        cfg = cfg.model_copy(update={"invert": data.invert})  # the contrast decision, kept for resume
        base = {"box": data.box, "apix": data.apix, "n_particles": data.n}
        session.save_config(cfg, base)
        log.info("%s baseline", cfg.method)
        trainer = trainer_cls(cfg, data)
        session.train(trainer, trainer.n_epochs)
        out = trainer.outputs()  # every rank (the final passes are split across ranks)
        if not session.is_main:
            return session.path
        run = session.run
        save_checkpoint(run.model, {k: v.detach().cpu().contiguous() for k, v in out.state.items()})
        run.save_latents(out.latents)
        run.save_poses(data.rotations, data.shifts_A)
        for name, arrays in out.extras.items():
            run.save_extra(name, **arrays)
        for name, vol in out.maps.items():
            write_volume(run.path / f"{name}.mrc", np.asarray(vol, dtype=np.float32), data.apix)
        seconds = session.elapsed_s
        resolved = {
            **base,
            "seconds": round(seconds, 3),
            "images_per_s": round(data.n / seconds, 2) if seconds > 0 else None,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            **out.resolved,
        }
        session.save_config(cfg, resolved)
        session.complete()
        log.info("%s done in %.1f s", cfg.method, seconds)
    return session.path


# ----------------------------------------------------------------------------- loading


def load_resolved(
    run_dir: str | Path | RunDir, config_cls: type[BaselineConfig]
) -> tuple[RunDir, BaselineConfig, dict[str, Any]]:
    """RunDir, config and ``resolved`` block of a finished baseline run (one-line errors;
    method, version, box and pixel size checked by :mod:`cryohet.methods.base`)."""
    run = as_run_dir(run_dir)
    run.require("config.yaml", "model.pt", "latents.npy")
    raw, cfg = read_run_config(run.path, config_cls)
    box, apix = resolved_geometry(raw, run)
    return run, cfg, {**raw["resolved"], "box": box, "apix": apix}


def load_state(run: RunDir, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run.model)
    missing = [k for k in keys if k not in state]
    if missing:
        raise RunDirError(f"{run.model}: not a model file of this method (missing {', '.join(missing)})")
    return state


class MapSetModel(TrainedModel):
    """Volumes are one of K stored maps: ``maps[select(z)]`` (resampled on request).

    Subclasses set ``config_cls`` (their run's config class); ``load`` is shared.
    """

    config_cls: type[BaselineConfig]

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> MapSetModel:
        run, cfg, resolved = load_resolved(run_dir, cls.config_cls)
        maps = load_state(run, ("maps",))["maps"].numpy()
        classes = getattr(cfg, "classes", None)
        if classes is not None and len(maps) != classes:
            raise RunDirError(f"{run.model}: {len(maps)} maps but {run.config} says {classes} classes")
        return cls(run, maps, resolved["box"], resolved["apix"])

    def __init__(self, run: RunDir, maps: np.ndarray, box: int, apix: float) -> None:
        super().__init__(run, box, apix)
        self.maps = np.asarray(maps, dtype=np.float32)
        if self.maps.ndim != 4 or self.maps.shape[1:] != (self.box,) * 3:
            raise RunDirError(f"{run.model}: maps of shape {self.maps.shape} do not match the box {self.box}")

    def expected_zdim(self) -> int:
        """One latent coordinate per map (the volume is the map of ``argmax(z)``)."""
        return len(self.maps)

    def select(self, z: np.ndarray) -> int:
        """Index of the map for latent ``z`` (default: argmax)."""
        return int(np.argmax(np.asarray(z).reshape(-1)))

    def _resample(self, vol: np.ndarray, box: int | None, apix: float | None) -> np.ndarray:
        b = self.box if box is None else int(box)
        a = self.apix if apix is None else float(apix)
        if b == self.box and abs(a - self.apix) < 1e-9 * self.apix:
            return vol.copy()
        out = resample_volume(torch.from_numpy(np.ascontiguousarray(vol)), self.apix, b, a)
        return out.numpy().astype(np.float32)

    def volume(self, z: np.ndarray, box: int | None = None, apix: float | None = None) -> np.ndarray:
        zz = np.asarray(z, dtype=np.float32).reshape(-1)
        if zz.size != self.zdim:
            raise InputError(f"latent has {zz.size} values but the {self.method} run has zdim {self.zdim}")
        return self._resample(self.maps[self.select(zz)], box, apix)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["n_maps"] = int(len(self.maps))
        return d
