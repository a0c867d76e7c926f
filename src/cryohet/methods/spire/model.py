"""A trained CryoSPIRE run through the common method interface (volumes at any latent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import RunDirError
from ...imaging.gaussians import voxelize_gaussians
from ...training.checkpoint import load_checkpoint
from ...training.rundir import RunDir, as_run_dir
from ..base import TrainedModel, read_run_config, register_method, resolved_geometry, state_dict_mismatch
from .config import SpireConfig
from .stage_b import StageBModel

__all__ = ["SpireModel"]


@register_method
class SpireModel(TrainedModel):
    """Volumes are the band-limited voxelisation of the part-aware mixture G(z)."""

    method = "spire"
    version = 1

    def __init__(self, run: RunDir, cfg: SpireConfig, model: StageBModel, apix: float, device: str) -> None:
        super().__init__(run, int(cfg.box), apix)
        self.cfg = cfg
        self.model = model.eval()
        self.device = device

    @classmethod
    def load(cls, run_dir: str | Path | RunDir, device: str = "cpu") -> SpireModel:
        run = as_run_dir(run_dir)
        run.require("config.yaml", "model.pt", "latents.npy")
        raw, cfg = read_run_config(run.path, SpireConfig)
        if cfg.box is None:
            raise RunDirError(f"{run.config}: missing the resolved box/pixel size; the run did not finish")
        _, apix = resolved_geometry(raw, run, box=cfg.box)
        state = load_checkpoint(run.model, map_location=device)
        if not isinstance(state.get("model_b"), dict):
            raise RunDirError(f"{run.model}: not a CryoSPIRE model file")
        try:
            model = StageBModel.from_state_dict(state["model_b"], cfg, apix).to(device)
        except (RuntimeError, KeyError, ValueError, AttributeError) as err:
            raise state_dict_mismatch(run.model, err) from None
        return cls(run, cfg, model, apix, device)

    def expected_zdim(self) -> int:
        return int(self.cfg.zdim)

    @torch.no_grad()
    def mixture(self, z: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Centres (G, 3) Å, amplitudes (G,), widths (G,) Å of G(z)."""
        zt = torch.as_tensor(np.asarray(z, dtype=np.float32).reshape(1, -1), device=self.device)
        mix = self.model.decode(zt)
        return mix.centres_px[0] * self.apix, mix.amplitudes[0], mix.sigmas_px * self.apix

    @torch.no_grad()
    def gaussians_at(self, z: np.ndarray) -> dict[str, np.ndarray]:
        zt = torch.as_tensor(np.asarray(z, dtype=np.float32).reshape(1, -1), device=self.device)
        mix = self.model.decode(zt)
        return {
            "centres_A": (mix.centres_px[0] * self.apix).cpu().numpy(),
            "amplitudes": mix.amplitudes[0].cpu().numpy(),
            "base_amplitudes": torch.exp(self.model.log_amplitudes).cpu().numpy(),
            "occupancy": mix.occupancy[0].cpu().numpy(),
            "sigmas_A": (mix.sigmas_px * self.apix).cpu().numpy(),
            "part": self.model.anchor_of.cpu().numpy(),
        }

    def _voxelize(self, centres, amps, sigmas, box, apix) -> np.ndarray:
        vol = voxelize_gaussians(centres, amps, sigmas, box, apix, band_limit=True)
        return np.asarray(vol.cpu() if isinstance(vol, torch.Tensor) else vol, dtype=np.float32)

    def volume(self, z: np.ndarray, box: int | None = None, apix: float | None = None) -> np.ndarray:
        c, a, s = self.mixture(z)
        return self._voxelize(c, a, s, box or self.box, apix or self.apix)

    def part_volumes(self, z: np.ndarray, box: int | None = None, apix: float | None = None) -> dict[str, np.ndarray]:
        c, a, s = self.mixture(z)
        part = self.model.anchor_of
        return {
            f"part_{k:02d}": self._voxelize(
                c[part == k], a[part == k], s[part == k], box or self.box, apix or self.apix
            )
            for k in range(self.model.n_parts)
        }

    def describe(self) -> dict:
        d = super().describe()
        d.update(
            {"gaussians": self.model.n_gaussians, "parts": self.model.n_parts, "decoder": self.cfg.stage_b.decoder}
        )
        return d
