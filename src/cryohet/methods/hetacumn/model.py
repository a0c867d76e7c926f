"""A trained HetACUMN run through the common method interface, with its encoder for new particles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import RunDirError
from ...training.checkpoint import load_checkpoint
from ...training.rundir import RunDir, as_run_dir
from ..base import TrainedModel, read_run_config, register_method, resolved_geometry, state_dict_mismatch
from .config import HetacumnConfig

__all__ = ["HetacumnModel"]


@register_method
class HetacumnModel(TrainedModel):
    """The field (maps at any latent) and the encoder (pose and latent of any image)."""

    method = "hetacumn"
    version = 3

    def __init__(self, run: RunDir, cfg: HetacumnConfig, field, encoder, box: int, apix: float, device: str) -> None:
        super().__init__(run, box, apix)
        self.cfg = cfg
        self.field = field.eval()
        self.encoder = encoder.eval()
        self.device = device

    @classmethod
    def load(cls, run_dir: str | Path | RunDir, device: str = "cpu") -> HetacumnModel:
        from .trainer import build_networks

        run = as_run_dir(run_dir)
        run.require("config.yaml", "model.pt", "latents.npy")
        raw, cfg = read_run_config(run.path, HetacumnConfig)
        box, apix = resolved_geometry(raw, run, cfg.box)
        state = load_checkpoint(run.model, map_location=device)
        if "field" not in state or "encoder" not in state:
            raise RunDirError(f"{run.model}: not a HetACUMN model file")
        field, encoder = build_networks(cfg, box, apix)
        try:
            field.load_state_dict(state["field"])
            encoder.load_state_dict(state["encoder"])
        except RuntimeError as err:
            raise state_dict_mismatch(run.model, err) from None
        model = cls(run, cfg, field.to(device), encoder.to(device), box, apix, device)
        model.image_std = float(raw.get("resolved", {}).get("image_std", 1.0))
        return model

    def expected_zdim(self) -> int:
        return int(self.cfg.zdim)

    @torch.no_grad()
    def volume(self, z: np.ndarray, box: int | None = None, apix: float | None = None) -> np.ndarray:
        zz = np.asarray(z, dtype=np.float32).reshape(1, -1)
        if zz.shape[1] != self.cfg.zdim:
            raise RunDirError(f"latent has {zz.shape[1]} values but the run has zdim {self.cfg.zdim}")
        zt = torch.as_tensor(zz, device=self.device)
        return self.field.to_volume(box or self.box, apix or self.apix, zt).cpu().numpy().astype(np.float32)

    def encode_particles(self, meta, batch_size: int = 256):
        """The encoder's latents and poses for particles it never saw (:class:`EncodedDataset`,
        input order). The images are Fourier-cropped to the run's box, inverted as the run's
        were and scaled by the run's image std; particles that do not reach the run's pixel
        size at its box are refused in one line."""
        from ...data.dataset import ParticleDataset
        from ...errors import InputError
        from ...imaging.bands import FourierBand
        from ...imaging.likelihood import WeightedL2
        from .inference import encode_dataset

        apix = float(np.median(np.asarray(meta.apix, dtype=np.float64)))
        src = meta.source or "particles"
        if meta.box < self.box or abs(apix * meta.box / self.box - self.apix) > 1e-3 * self.apix:
            raise InputError(
                f"{src}: {meta.box} px images at {apix:.4g} Å/px; this run expects images that give {self.apix:.4g} "
                f"Å/px at its box of {self.box} px (the pixel size it was trained at: {self.apix * self.box:.4g} Å "
                "across the box)"
            )
        dataset = ParticleDataset(
            meta, box=self.box, normalize=True, std=self.image_std, invert=bool(self.cfg.invert)
        )  # fmt: skip
        band = FourierBand.disc(self.box, self.apix, device=self.device)
        return encode_dataset(
            self.encoder, self.field, band, WeightedL2.white_noise(band), dataset, self.device, batch_size
        )  # fmt: skip

    def describe(self) -> dict:
        d = super().describe()
        d.update({"poses_mode": self.cfg.poses_mode, "pose_heads": self.cfg.encoder.heads,
                  "pose_task_weight": self.cfg.pose_task.weight})  # fmt: skip
        return d
