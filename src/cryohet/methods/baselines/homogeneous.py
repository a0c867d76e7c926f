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
from typing import Literal

import numpy as np
import torch

from ...console import get_logger
from ...reconstruction.from_particles import reconstruct_particles
from ..base import register_method
from .common import BaselineConfig, MapSetModel, baseline_run, finish_run, load_baseline_data

__all__ = ["HomogeneousConfig", "HomogeneousModel", "train_homogeneous", "half_map_resolution_A"]

log = get_logger("baselines.homogeneous")


class HomogeneousConfig(BaselineConfig):
    """``cryohet train homogeneous``: consensus reconstruction (no options of its own)."""

    method: Literal["homogeneous"] = "homogeneous"


def half_map_resolution_A(fsc: np.ndarray, box: int, apix: float, threshold: float = 0.143) -> float:
    """Resolution (Å) where the half-map FSC (shells ``0 .. D//2``) first drops below
    ``threshold``; Nyquist ``2 apix`` when it never does."""
    below = np.flatnonzero(np.asarray(fsc)[1:] < threshold)
    shell = (int(below[0]) + 1) if below.size else box // 2
    return float(box * apix / max(shell, 1))


def train_homogeneous(cfg: HomogeneousConfig, overwrite: bool = False) -> Path:
    """Reconstruct the consensus map into ``cfg.out``; returns the run directory."""
    with baseline_run(cfg, overwrite) as ctx:
        data = load_baseline_data(cfg)
        log.info("consensus of %d particles at box %d, %.4g Å/px", data.n, data.box, data.apix)
        res = reconstruct_particles(data.dataset, batch_size=cfg.batch_size, device=data.device, seed=cfg.seed)
        fsc = res.fsc.cpu().numpy().astype(np.float64)
        resolution = half_map_resolution_A(fsc, data.box, data.apix)
        log.info("half-map FSC = 0.143 at %.2f Å", resolution)
        ctx.run.save_extra(
            "fsc", fsc=fsc, freq_per_A=np.arange(len(fsc)) / (data.box * data.apix), resolution_A=np.array(resolution)
        )
        full = res.full.cpu().numpy()
        ctx.run.append_log({"epoch": 0, "n_images": data.n, "resolution_A": resolution})
        return finish_run(
            ctx,
            data,
            {"maps": torch.from_numpy(full[None].copy())},
            np.zeros((data.n, 1), dtype=np.float32),
            {"consensus": full, "half1": res.half1.cpu().numpy(), "half2": res.half2.cpu().numpy()},
            {"resolution_A": resolution},
        )


@register_method
class HomogeneousModel(MapSetModel):
    """The consensus map for every latent."""

    method = "homogeneous"
    version = 1
    config_cls = HomogeneousConfig

    def select(self, z: np.ndarray) -> int:
        return 0
