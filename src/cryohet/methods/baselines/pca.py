"""Linear-subspace baseline (3DVA-flavoured probabilistic PCA by EM), fixed poses and CTF.

The EM is the shared :class:`~cryohet.reconstruction.linear_subspace.LinearSubspaceEM`
(model, band, mask and updates are documented there); this baseline runs one EM iteration
per epoch and keeps the consensus ``mu`` and the k components as its model:
``volume(z) = mu + sum_j z_j V_j`` (components sorted by norm, largest first), latents
the images' posterior-mean coordinates ``(N, k)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...console import get_logger
from ...errors import InputError, RunDirError
from ...reconstruction.linear_subspace import LinearSubspaceEM, SubspaceSettings
from ...representations.voxel import resample_volume
from ..base import TrainedModel, register_method
from .common import BaselineData, BaselineOutputs, BaselineTrainer, load_resolved, load_state, run_baseline
from .config import PCAConfig

__all__ = ["PCAConfig", "PCAModel", "train_pca"]

log = get_logger("baselines.pca")


def subspace_settings(cfg: PCAConfig) -> SubspaceSettings:
    """The shared EM's settings from the baseline's config (fields of the same names)."""
    return SubspaceSettings(**{name: getattr(cfg, name) for name in SubspaceSettings.__dataclass_fields__})


class PCATrainer(BaselineTrainer):
    """Set-up (consensus, band, mask, initial noise) when built; one EM iteration per epoch;
    the final E-step in :meth:`outputs`."""

    def __init__(self, cfg: PCAConfig, data: BaselineData) -> None:
        super().__init__(cfg, data)
        self.em = LinearSubspaceEM(data.dataset, subspace_settings(cfg), data.device)
        log.info(
            "%d components, %d particles, band to shell %d (%.1f Å)",
            cfg.components,
            data.n,
            self.em.shell,
            data.box * data.apix / self.em.shell,
        )
        self.em.initial_noise()

    @property
    def n_epochs(self) -> int:
        return self.cfg.iterations

    def train_epoch(self, epoch: int) -> dict:
        _, msr = self.em.pass_(update=True)
        norms = [float(v.norm()) for v in self.em.V]
        return {"n_images": self.data.n, "mean_sq_residual": msr, "component_norms": norms}

    def get_state(self) -> dict:
        return {"components": self.em.V.cpu(), "sigma2": self.em.sigma2.cpu()}

    def set_state(self, state: dict) -> None:
        dev = self.data.device
        self.em.V = state["components"].to(dev)
        self.em.sigma2 = state["sigma2"].to(dev)

    def outputs(self) -> BaselineOutputs:
        em, k = self.em, self.cfg.components
        z, _ = em.pass_(update=False)
        comps = em.V.cpu()
        norms = comps.reshape(k, -1).norm(dim=1)
        maps: dict[str, Any] = {"mean": em.mean.cpu().numpy(), "mask": em.mask.cpu().numpy()}
        maps.update({f"component_{j:03d}": comps[j].numpy() for j in range(k)})
        return BaselineOutputs(
            state={"mean": em.mean.cpu(), "components": comps},
            latents=z,
            maps=maps,
            extras={
                "pca": {
                    "component_norms": norms.numpy(),
                    "latent_std": z.std(axis=0),
                    "band_shell": np.array(em.shell),
                    "mask": em.mask.cpu().numpy(),
                }
            },
            resolved={"band_shell": em.shell, "component_norms": norms.tolist()},
        )


def train_pca(cfg: PCAConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Fit k components of heterogeneity into ``cfg.out``; returns the run directory."""
    return run_baseline(cfg, PCATrainer, resume=resume, overwrite=overwrite)


@register_method
class PCAModel(TrainedModel):
    """``volume(z) = mean + sum_j z_j component_j``."""

    method = "pca"
    version = 1

    def __init__(self, run, mean: np.ndarray, components: np.ndarray, box: int, apix: float) -> None:
        super().__init__(run, box, apix)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.components = np.asarray(components, dtype=np.float32)
        cube = (self.box,) * 3
        if self.mean.shape != cube or self.components.ndim != 4 or self.components.shape[1:] != cube:
            raise RunDirError(
                f"{run.model}: mean {self.mean.shape} and components {self.components.shape} do not match "
                f"the box {self.box}"
            )

    def expected_zdim(self) -> int:
        return len(self.components)

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> PCAModel:
        run, cfg, resolved = load_resolved(run_dir, PCAConfig)
        state = load_state(run, ("mean", "components"))
        if len(state["components"]) != cfg.components:
            raise RunDirError(
                f"{run.model}: {len(state['components'])} components but {run.config} says {cfg.components}"
            )
        return cls(run, state["mean"].numpy(), state["components"].numpy(), resolved["box"], resolved["apix"])

    def volume(self, z: np.ndarray, box: int | None = None, apix: float | None = None) -> np.ndarray:
        zz = np.asarray(z, dtype=np.float32).reshape(-1)
        if zz.size != len(self.components):
            raise InputError(f"latent has {zz.size} values but the pca run has {len(self.components)} components")
        vol = self.mean + np.tensordot(zz, self.components, axes=1)
        b = self.box if box is None else int(box)
        a = self.apix if apix is None else float(apix)
        if b == self.box and abs(a - self.apix) < 1e-9 * self.apix:
            return vol.astype(np.float32)
        return resample_volume(torch.from_numpy(np.ascontiguousarray(vol)), self.apix, b, a).numpy().astype(np.float32)
