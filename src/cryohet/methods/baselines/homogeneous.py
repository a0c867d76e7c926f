"""Homogeneous baseline: one consensus map for every particle.

The consensus is :func:`~cryohet.reconstruction.from_particles.reconstruct_particles`
(half-set backprojection with the FSC-derived Wiener filter) with the given poses and
CTF. Latents are zeros ``(N, 1)``; ``volume(z)`` is the consensus for any ``z``. The run
also holds both half maps (``half1.mrc``, ``half2.mrc``), the full map
(``consensus.mrc``) and the half-map FSC (``extras/fsc.npz``: ``fsc`` per shell
``0 .. D//2``, ``freq_per_A``, ``resolution_A`` at 0.143).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...console import get_logger
from ...metrics.fsc import shell_resolution_A
from ...reconstruction.from_particles import reconstruct_particles
from ..base import register_method
from .common import BaselineOutputs, BaselineTrainer, MapSetModel, run_baseline
from .config import HomogeneousConfig

__all__ = ["HomogeneousConfig", "HomogeneousModel", "train_homogeneous", "half_map_resolution_A"]

log = get_logger("baselines.homogeneous")


def half_map_resolution_A(fsc: np.ndarray, box: int, apix: float, threshold: float = 0.143) -> float:
    """Resolution (Å) of the half-map FSC (shells ``0 .. D//2``) at ``threshold``: cryohet's one
    rule (:func:`cryohet.metrics.fsc.resolution_A`, the interpolated first crossing, as
    ``cryohet backproject`` and ``cryohet fsc`` report it); Nyquist ``2 apix`` when it never
    crosses."""
    return shell_resolution_A(fsc, box, apix, threshold)


class HomogeneousTrainer(BaselineTrainer):
    """One epoch: the half-set reconstruction."""

    n_epochs = 1

    def train_epoch(self, epoch: int) -> dict:
        cfg, data = self.cfg, self.data
        log.info("consensus of %d particles at box %d, %.4g Å/px", data.n, data.box, data.apix)
        res = reconstruct_particles(data.dataset, batch_size=cfg.batch_size, device=data.device, seed=cfg.seed)
        self.full, self.half1, self.half2 = (m.cpu() for m in (res.full, res.half1, res.half2))
        self.fsc = res.fsc.cpu().to(torch.float64)
        self.resolution = half_map_resolution_A(self.fsc.numpy(), data.box, data.apix)
        log.info("half-map FSC = 0.143 at %.2f Å", self.resolution)
        return {"n_images": data.n, "resolution_A": self.resolution}

    def get_state(self) -> dict:
        return {"full": self.full, "half1": self.half1, "half2": self.half2, "fsc": self.fsc}

    def set_state(self, state: dict) -> None:
        self.full, self.half1, self.half2, self.fsc = state["full"], state["half1"], state["half2"], state["fsc"]
        self.resolution = half_map_resolution_A(self.fsc.numpy(), self.data.box, self.data.apix)

    def outputs(self) -> BaselineOutputs:
        data, fsc = self.data, self.fsc.numpy()
        full = self.full.numpy()
        return BaselineOutputs(
            state={"maps": torch.from_numpy(full[None].copy())},
            latents=np.zeros((data.n, 1), dtype=np.float32),
            maps={"consensus": full, "half1": self.half1.numpy(), "half2": self.half2.numpy()},
            extras={
                "fsc": {
                    "fsc": fsc,
                    "freq_per_A": np.arange(len(fsc)) / (data.box * data.apix),
                    "resolution_A": np.array(self.resolution),
                }
            },
            resolved={"resolution_A": self.resolution},
        )


def train_homogeneous(cfg: HomogeneousConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Reconstruct the consensus map into ``cfg.out``; returns the run directory."""
    return run_baseline(cfg, HomogeneousTrainer, resume=resume, overwrite=overwrite)


@register_method
class HomogeneousModel(MapSetModel):
    """The consensus map for every latent."""

    method = "homogeneous"
    version = 1
    config_cls = HomogeneousConfig

    def select(self, z: np.ndarray) -> int:
        return 0
