"""Label-oracle baseline: per-state reconstructions from the TRUE state labels.

With the given poses and CTF, the particles of each state are reconstructed on their own
(:func:`~cryohet.reconstruction.from_particles.reconstruct_particles`, Wiener filter from
that state's half maps). Latents are one-hot ``(N, K)`` (column ``k`` = the ``k``-th
distinct label in sorted order), so the CryoBench nearest-to-mean protocol picks each
state's own map; ``volume(z)`` is the map of ``argmax(z)``.

This is a *reference* for what perfect classification alone gives at this data size,
not an upper bound: a method that shares information across states (a continuous
decoder, a Gaussian mixture with shared parts) can beat it, especially for small states.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...console import get_logger
from ...errors import InputError, file_error
from ...reconstruction.from_particles import reconstruct_particles
from ..base import register_method
from .common import BaselineData, BaselineOutputs, BaselineTrainer, MapSetModel, run_baseline
from .config import OracleConfig
from .homogeneous import half_map_resolution_A

__all__ = ["OracleConfig", "OracleModel", "train_oracle", "read_labels"]

log = get_logger("baselines.oracle")


def read_labels(path: str | Path, data: BaselineData) -> np.ndarray:
    """Labels of the dataset's particles (``(N,)`` int64).

    The file holds one label per particle of the *original* set; with an ``ind`` subset
    the labels of the kept rows (``meta.original_index``) are used.
    """
    p = Path(path)
    if not p.exists():
        raise file_error(p, "labels file not found")
    try:
        labels = np.load(p, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - any failure is a bad file
        raise file_error(p, f"not a readable .npy array ({type(err).__name__})") from None
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise file_error(p, f"expected a 1D integer array, got shape {labels.shape} ({labels.dtype})")
    orig = np.asarray(data.dataset.meta.original_index)
    subset = not np.array_equal(orig, np.arange(data.n))
    if subset and len(labels) > orig.max():
        return labels[orig].astype(np.int64)  # labels of the full set, particles chosen by ind
    if len(labels) == data.n:
        return labels.astype(np.int64)
    raise InputError(f"{p}: {len(labels)} labels but the particle set has {data.n} particles")


class OracleTrainer(BaselineTrainer):
    """One epoch per true state: that state's half-set reconstruction."""

    def __init__(self, cfg: OracleConfig, data: BaselineData) -> None:
        super().__init__(cfg, data)
        labels = read_labels(cfg.labels, data)
        self.states, self.index = np.unique(labels, return_inverse=True)
        self.maps: list[torch.Tensor] = []
        self.resolutions: list[float] = []

    @property
    def n_epochs(self) -> int:
        return len(self.states)

    def train_epoch(self, epoch: int) -> dict:
        cfg, data = self.cfg, self.data
        s = self.states[epoch]
        rows = np.flatnonzero(self.index == epoch)
        if len(rows) < 2:
            raise InputError(
                f"{cfg.labels}: state {int(s)} has {len(rows)} particle(s); need at least 2 to reconstruct"
            )
        res = reconstruct_particles(
            data.dataset, rows=rows, batch_size=cfg.batch_size, device=data.device, seed=cfg.seed, show_progress=False
        )
        self.maps.append(res.full.cpu())
        self.resolutions.append(half_map_resolution_A(res.fsc.cpu().numpy(), data.box, data.apix))
        log.info("state %d: %d particles, half-map FSC 0.143 at %.2f Å", int(s), len(rows), self.resolutions[-1])
        return {"state": int(s), "n_images": int(len(rows)), "resolution_A": self.resolutions[-1]}

    def get_state(self) -> dict:
        return {"maps": list(self.maps), "resolutions": torch.tensor(self.resolutions, dtype=torch.float64)}

    def set_state(self, state: dict) -> None:
        self.maps = list(state["maps"])
        self.resolutions = [float(r) for r in state["resolutions"]]

    def outputs(self) -> BaselineOutputs:
        data, states = self.data, self.states
        maps = [m.numpy() for m in self.maps]
        latents = np.zeros((data.n, len(states)), dtype=np.float32)
        latents[np.arange(data.n), self.index] = 1.0
        return BaselineOutputs(
            state={"maps": torch.from_numpy(np.stack(maps)), "states": torch.from_numpy(states.astype(np.int64))},
            latents=latents,
            maps={f"state_{int(s):03d}": m for s, m in zip(states, maps)},
            extras={
                "states": {
                    "labels": states,
                    "counts": np.bincount(self.index),
                    "resolution_A": np.array(self.resolutions),
                }
            },
            resolved={"n_states": int(len(states))},
        )


def train_oracle(cfg: OracleConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Reconstruct one map per true state into ``cfg.out``; returns the run directory."""
    return run_baseline(cfg, OracleTrainer, resume=resume, overwrite=overwrite)


@register_method
class OracleModel(MapSetModel):
    """The map of the state ``argmax(z)``."""

    method = "oracle"
    version = 1
    config_cls = OracleConfig
