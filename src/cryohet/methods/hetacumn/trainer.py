"""HetACUMN training: one run directory, every epoch the two tasks on every batch.

* **Task 1** (reconstruction): the encoder gives each image its pose(s) and a Gaussian over
  ``z``; the neural field's central slice at that pose and a draw of ``z``, times the
  image's CTF and shift phase, is scored by the shared likelihood
  (:class:`~cryohet.imaging.likelihood.WeightedL2`, unit pixel noise on the Nyquist disc),
  plus ``beta * KL(q(z|image) || N(0, I))``. With several pose heads the best-scoring head
  of each image is trained on it (winner takes all). ``fixed`` keeps the given poses.
* **Task 2** (the paper's auxiliary conditional pose task): images are rendered from the
  field at uniform random rotations and random shifts, from the batch's latents (the
  encoder's means) or prior draws, with the batch's CTFs and white noise at the data's
  background level; the decoder's gradients are stopped (rendered under ``no_grad``). The
  encoder must recover the rotation (squared Frobenius error, best head), the shift
  (relative to its range) and the latent (squared error). A latent that carried the
  viewing direction could not be recovered from a random view, so task 2 pushes pose out
  of ``z``.

Distributed: every rank runs its share of each batch, the gradients of the field and the
encoder are averaged over ranks (:func:`~cryohet.training.distributed.average_gradients`;
the encoder runs twice a step, which DDP's hooks do not allow), rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...console import get_logger, progress
from ...data.contrast import decide_invert
from ...data.dataset import ParticleDataset
from ...data.loader import BatchedParticleLoader
from ...device import resolve_device
from ...errors import InputError
from ...imaging.bands import FourierBand
from ...imaging.likelihood import WeightedL2
from ...networks.encoders import kl_standard_normal
from ...networks.pose_encoder import PoseConformationEncoder
from ...reconstruction.from_particles import dataset_pixel_size
from ...representations.envelope import data_envelope
from ...representations.neural_field import NeuralField
from ...training.distributed import all_reduce_sum_, average_gradients, get_dist
from ...training.identity import config_input_paths
from ...training.session import RunSession
from .config import HetacumnConfig
from .inference import background_std, data_terms
from .outputs import write_model_files, write_outputs
from .pose_task import pose_task_loss, render_at_random_poses

__all__ = ["HetacumnTrainer", "train_hetacumn"]

log = get_logger("hetacumn")


def build_networks(cfg: HetacumnConfig, box: int, apix: float) -> tuple[NeuralField, PoseConformationEncoder]:
    """The field and the encoder of a run (the same for training and loading)."""
    f, e = cfg.field, cfg.encoder
    field = NeuralField(
        box, apix, cfg.zdim, hidden=f.hidden, blocks=f.blocks, features=f.features, sigma=f.sigma, seed=cfg.seed
    )
    encoder = PoseConformationEncoder(
        box, apix, cfg.zdim, heads=e.heads, input_box=e.input_box, channels=tuple(e.channels), hidden=e.hidden
    )
    return field, encoder


class HetacumnTrainer:
    """The data, the field, the encoder and the two tasks of one run."""

    def __init__(self, cfg: HetacumnConfig, device: torch.device | None = None) -> None:
        self.cfg = cfg
        self.dist = get_dist()
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        meta = cfg.data.load()
        if meta.ctf is None:
            raise InputError(f"{cfg.data.path}: HetACUMN needs CTF parameters (a .star/.cs, or --ctf ctf.pkl)")
        if cfg.poses_mode == "fixed" and not meta.has_poses:
            raise InputError(
                f"{cfg.data.path}: --poses-mode fixed needs input poses (a refined .star/.cs or --poses); "
                "use --poses-mode abinit to let the encoder predict them"
            )
        self.invert, self.contrast = decide_invert(meta, cfg.invert, cfg.box, cfg.seed)
        self.dataset = ParticleDataset(meta, box=cfg.box, normalize=True, invert=self.invert, seed=cfg.seed)
        self.box = int(self.dataset.box)
        if self.box < 16:
            raise InputError(f"{cfg.data.path}: a box of {self.box} px is too small (use at least 16, -D/--box)")
        self.apix = dataset_pixel_size(self.dataset)
        self.n = len(self.dataset)
        self.band = FourierBand.disc(self.box, self.apix, device=self.device)
        self.full = FourierBand.full_plane(self.box, self.apix, device=self.device)
        self.likelihood = WeightedL2.white_noise(self.band)
        self.loader = BatchedParticleLoader(
            self.dataset, cfg.optim.batch_size, shuffle=True, seed=cfg.seed, num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda", rank=self.dist.rank, world_size=self.dist.world_size,
        )  # fmt: skip
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            field, encoder = build_networks(cfg, self.box, self.apix)
        self.field, self.encoder = field.to(self.device), encoder.to(self.device)
        self.field.init_envelope(data_envelope(self.dataset, self.band, seed=cfg.seed).to(self.device))
        self.opt = torch.optim.Adam(
            [
                {"params": self.field.parameters(), "lr": cfg.optim.lr_field},
                {"params": self.encoder.parameters(), "lr": cfg.optim.lr_encoder},
            ]
        )
        self.noise_std = background_std(self.dataset, seed=cfg.seed)
        log.info("white noise of the rendered images (task 2): %.3g per pixel (normalised units)", self.noise_std)

    # -- epochs ---------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict:
        self.loader.set_epoch(epoch)
        # the draws of an epoch depend on (seed, epoch, rank) only: a resumed run repeats them
        torch.manual_seed((self.cfg.seed * 1_000_003 + epoch * 7_919 + self.dist.rank) % 2**63)
        rng = np.random.default_rng([self.cfg.seed, epoch, self.dist.rank])
        self.field.train()
        self.encoder.train()
        totals = torch.zeros(6, dtype=torch.float64)
        for batch in progress(self.loader, total=len(self.loader), description=f"epoch {epoch + 1}", unit="batch"):
            totals += self.train_step(batch, rng)
        if self.dist.enabled:
            all_reduce_sum_(totals)
        n, m = max(1.0, float(totals[4])), max(1.0, float(totals[5]))
        return {
            "data": float(totals[0]) / n,
            "kl": float(totals[1]) / n,
            "task2_rotation_error": float(totals[2]) / m,
            "task2_latent_error": float(totals[3]) / m,
            "n_images": int(totals[4]),
        }

    def train_step(self, batch, rng: np.random.Generator) -> torch.Tensor:
        """Both tasks on one batch, one optimiser step; returns the sums for the epoch's log."""
        cfg = self.cfg
        b = batch.to(self.device, non_blocking=True)
        observed = self.band.observed(b.images)
        ctf = self.band.filters(b.ctf_params, None)
        enc = self.encoder(b.images)
        std = torch.exp(0.5 * enc.z_logvar)
        z = enc.z_mean + std * torch.randn_like(std)
        if cfg.poses_mode == "fixed":
            rot, shifts = b.rotations[:, None], b.shifts_A[:, None]
        else:
            rot, shifts = enc.rotations, enc.shifts_A
        terms = data_terms(self.field, self.band, self.likelihood, observed, ctf, rot, shifts, z)  # (B, H)
        data = terms.min(dim=1).values  # the best head of each image is trained on it
        kl = kl_standard_normal(enc.z_mean, std)
        loss = (data + cfg.optim.beta * kl).mean()
        rot_err = lat_err = torch.zeros((), device=self.device)
        n2 = 0
        if cfg.pose_task.weight > 0:
            rot_err, lat_err, n2 = self._pose_task(b, enc.z_mean.detach(), rng)
            loss = loss + cfg.pose_task.weight * (rot_err + cfg.pose_task.latent_weight * lat_err)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients([*self.field.parameters(), *self.encoder.parameters()])
        self.opt.step()
        n = len(b.images)
        return torch.tensor(
            [float(data.detach().sum()), float(kl.detach().sum()), float(rot_err.detach()) * n2,
             float(lat_err.detach()) * n2, float(n), float(n2)], dtype=torch.float64,
        )  # fmt: skip

    def _pose_task(self, b, z_batch: torch.Tensor, rng: np.random.Generator):
        """Task 2 on ``round(images x B)`` rendered images: mean rotation error (squared
        Frobenius, best head, plus the weighted shift error) and mean latent error."""
        pt = self.cfg.pose_task
        n = max(1, int(round(pt.images * len(z_batch))))
        pick = torch.as_tensor(rng.integers(0, len(z_batch), n), device=self.device)
        z = z_batch[pick].clone()
        prior = torch.as_tensor(rng.random(n) < pt.prior_fraction, device=self.device)
        z[prior] = torch.randn(int(prior.sum()), z.shape[1], device=self.device)
        limit = 0.5 * self.encoder.max_shift_A  # within the encoder's range, not at its edge
        images, rot, shifts = render_at_random_poses(
            self.field, self.full, n, rng, ctf_params=b.ctf_params[pick], z=z, max_shift_A=limit,
            noise_std=self.noise_std,
        )  # fmt: skip
        rot_err, lat_err = pose_task_loss(self.encoder(images), rot, shifts, limit, z, pt.shift_weight)
        return rot_err, lat_err, n

    # -- outputs and state ----------------------------------------------------------------
    def snapshot(self, run) -> None:
        """The run's model files as they are after this epoch (:mod:`cryohet.training.snapshots`)."""
        write_model_files(self, run)

    def get_state(self) -> dict:
        return {
            "field": self.field.state_dict(),
            "encoder": self.encoder.state_dict(),
            "optimizer": self.opt.state_dict(),
        }

    def set_state(self, state: dict) -> None:
        self.field.load_state_dict(state["field"])
        self.encoder.load_state_dict(state["encoder"])
        self.opt.load_state_dict(state["optimizer"])


def train_hetacumn(cfg: HetacumnConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Train HetACUMN into ``cfg.out``; returns the run directory."""
    with RunSession(
        cfg.out, resume=resume, overwrite=overwrite, label="hetacumn", device=cfg.device,
        protect=config_input_paths(cfg),
    ) as session:  # fmt: skip
        cfg = session.reconcile(cfg)
        session.epoch_fields = ("--epochs",)
        trainer = HetacumnTrainer(cfg, device=session.device)
        resolved = cfg.model_copy(deep=True)
        resolved.box = trainer.box
        resolved.invert = trainer.invert
        info = {"apix": trainer.apix, "n_particles": trainer.n, "image_std": float(trainer.dataset.std),
                "noise_std": trainer.noise_std}  # fmt: skip
        session.save_config(resolved, info)
        log.info("%d particles at box %d (%.3g Å/px), %d epochs, poses %s", trainer.n, trainer.box, trainer.apix,
                 cfg.epochs, "given" if cfg.poses_mode == "fixed" else "predicted")  # fmt: skip
        session.train(trainer, cfg.epochs)
        write_outputs(trainer, session)
        session.complete(epochs=cfg.epochs)
    return session.path
