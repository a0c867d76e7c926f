"""A trained DRGN-AI run through the common method interface (volumes at any latent and box)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import RunDirError
from ...representations.neural_field import NeuralField
from ...training.checkpoint import load_checkpoint
from ...training.rundir import RunDir, as_run_dir
from ..base import TrainedModel, read_run_config, register_method, resolved_geometry, state_dict_mismatch
from .config import DrgnaiConfig

__all__ = ["DrgnaiModel"]


@register_method
class DrgnaiModel(TrainedModel):
    """Volumes are the hypervolume V(k, z) inverse-transformed at the requested box and pixel size."""

    method = "drgnai"
    version = 2

    def __init__(self, run: RunDir, cfg: DrgnaiConfig, field: NeuralField, box: int, apix: float, device: str) -> None:
        super().__init__(run, box, apix)
        self.cfg = cfg
        self.field = field.eval()
        self.device = device

    @classmethod
    def load(cls, run_dir: str | Path | RunDir, device: str = "cpu") -> DrgnaiModel:
        run = as_run_dir(run_dir)
        run.require("config.yaml", "model.pt", "latents.npy")
        raw, cfg = read_run_config(run.path, DrgnaiConfig)
        box, apix = resolved_geometry(raw, run, cfg.box)
        state = load_checkpoint(run.model, map_location=device)
        if "field" not in state:
            raise RunDirError(f"{run.model}: not a DRGN-AI model file")
        f = cfg.field
        field = NeuralField(
            box, apix, cfg.zdim, hidden=f.hidden, blocks=f.blocks, features=f.features, sigma=f.sigma, seed=cfg.seed
        )
        try:
            field.load_state_dict(state["field"])
        except RuntimeError as err:
            raise state_dict_mismatch(run.model, err) from None
        return cls(run, cfg, field.to(device), box, apix, device)

    @torch.no_grad()
    def volume(self, z: np.ndarray, box: int | None = None, apix: float | None = None) -> np.ndarray:
        zt = None
        if self.cfg.zdim:
            zz = np.asarray(z, dtype=np.float32).reshape(1, -1)
            if zz.shape[1] != self.cfg.zdim:
                raise RunDirError(f"latent has {zz.shape[1]} values but the run has zdim {self.cfg.zdim}")
            zt = torch.as_tensor(zz, device=self.device)
        vol = self.field.to_volume(box or self.box, apix or self.apix, zt)
        return vol.cpu().numpy().astype(np.float32)

    def describe(self) -> dict:
        d = super().describe()
        d.update({"zdim_field": self.cfg.zdim, "poses_mode": self.cfg.poses_mode})
        return d
