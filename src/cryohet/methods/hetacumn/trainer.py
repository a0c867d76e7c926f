"""HetACUMN training: one run directory; ab initio, a warm start (:mod:`.warm_start`:
pretraining, then search epochs) before the amortised epochs; every epoch the two tasks
on every batch.

* **Task 1** (reconstruction): the encoder gives each image its pose(s) and a Gaussian over
  ``z``; the neural field's central slice at that pose and a draw of ``z``, times the
  image's CTF and shift phase, is scored by the shared likelihood
  (:class:`~cryohet.imaging.likelihood.WeightedL2`, unit pixel noise on the Nyquist disc),
  plus ``beta * KL(q(z|image) || N(0, I))``. With several pose heads the best-scoring head
  of each image is trained on it (winner takes all). ``fixed`` keeps the given poses; in
  the warm start's search epochs the field learns at the searched poses and the encoder's
  error on them is a third term (``warm_start.distill_weight``).
* **Task 2** (the paper's auxiliary conditional pose task): images are rendered from the
  field at uniform random rotations and random shifts, from the batch's latents (the
  encoder's means) or prior draws, with the batch's CTFs and white noise at the data's
  background level; the decoder's gradients are stopped (rendered under ``no_grad``). The
  encoder must recover the rotation (squared Frobenius error, best head), the shift
  (relative to its range) and the latent (squared error). A latent that carried the
  viewing direction could not be recovered from a random view, so task 2 pushes pose out
  of ``z``.

With ``latent_init`` subspace (the default) the latent starts from a seed: for the first
``latent_init_epochs`` amortised epochs task 1 decodes each image's subspace coordinates in
place of the encoder's mean, the encoder learns them, and task 2 trains poses only
(:mod:`.latent_seed`); the encoder first learns them alone, in the warm start's encoder
epoch or, with given poses, in an encoder epoch of ``latent_init_steps`` steps. With
``latent_readout`` (the default) every latent mean is the encoder's output plus the image's
coordinates in the seed's subspace at the pose it is scored at (task 1's pose, per head;
task 2's render pose; the searched pose in the encoder epoch).

Distributed: every rank runs its share of each batch, the gradients of the field and the
encoder are averaged over ranks (:func:`~cryohet.training.distributed.average_gradients`;
the encoder runs twice a step, which DDP's hooks do not allow), rank 0 writes.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import torch

from ...console import get_logger, progress
from ...data.loader import BatchedParticleLoader
from ...device import resolve_device
from ...geometry.rotations import random_rotations, rotation_angle_deg
from ...imaging.bands import FourierBand
from ...imaging.likelihood import WeightedL2
from ...networks.encoders import kl_standard_normal
from ...networks.pose_encoder import PoseConformationEncoder
from ...pose.abinit_schedule import AbinitSchedule
from ...pose.search_tables import SearchTables
from ...pose.table import PoseTable
from ...representations.envelope import data_envelope
from ...representations.neural_field import NeuralField
from ...training.distributed import all_reduce_sum_, average_gradients, get_dist
from ...training.identity import config_input_paths
from ...training.session import RunSession
from ..particles import open_particles
from .config import HetacumnConfig
from .inference import background_std, data_terms
from .latent_seed import LatentSeed
from .outputs import write_model_files, write_outputs
from .pose_task import pose_task_loss, render_at_random_poses
from .warm_start import fit_encoder, held_out, in_plane_views, latent_distill_loss, search_centres, search_window

__all__ = ["HetacumnTrainer", "train_hetacumn"]

log = get_logger("hetacumn")


def build_networks(cfg: HetacumnConfig, box: int, apix: float) -> tuple[NeuralField, PoseConformationEncoder]:
    """The field and the encoder of a run (the same for training and loading)."""
    f, e = cfg.field, cfg.encoder
    field = NeuralField(
        box, apix, cfg.zdim, hidden=f.hidden, blocks=f.blocks, features=f.features, sigma=f.sigma, seed=cfg.seed
    )
    encoder = PoseConformationEncoder(
        box,
        apix,
        cfg.zdim,
        heads=e.heads,
        input_box=e.input_box,
        channels=tuple(e.channels),
        hidden=e.hidden,
        rotation_grid_level=e.rotation_grid_level,
    )
    return field, encoder


class HetacumnTrainer:
    """The data, the field, the encoder and the two tasks of one run."""

    def __init__(self, cfg: HetacumnConfig, device: torch.device | None = None) -> None:
        self.cfg = cfg
        self.dist = get_dist()
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        opened = open_particles(
            cfg, "HetACUMN", min_box=16,
            poses_needed=None if cfg.poses_mode != "fixed" else (
                "with --poses-mode fixed needs input poses (a refined .star/.cs or --poses); "
                "use --poses-mode abinit to let the encoder predict them"
            ),
        )  # fmt: skip
        self.invert, self.contrast, self.dataset = opened.invert, opened.contrast, opened.dataset
        self.box, self.apix, self.n = opened.box, opened.apix, opened.n
        self.band = FourierBand.disc(self.box, self.apix, device=self.device)
        self.render_band = FourierBand.half_plane(self.box, self.apix, device=self.device)  # task 2 (real images)
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
        self.schedule = cfg.warm_start.search.schedule(self.box, self.apix)
        n_pretrain, n_search = cfg.warm_start_epochs(self.n)
        self.encoder_epoch = n_pretrain + n_search if n_search and cfg.warm_start.encoder_steps else None
        own_latent = cfg.latent_encoder_part or not cfg.latent_readout  # else the readout alone is the latent
        if cfg.poses_mode == "fixed" and cfg.latent_init == "subspace" and cfg.latent_init_steps and own_latent:
            self.encoder_epoch = 0  # with given poses the seed has an encoder epoch of its own (.latent_seed)
        later = cfg.epochs + (self.encoder_epoch is not None)
        self.epochs = AbinitSchedule(n_pretrain, n_search, later, self.schedule.radius_start_px,
                                     self.schedule.radius_end_px, self.box, later="amortised")  # fmt: skip
        self.first_amortised_epoch = n_pretrain + n_search + (self.encoder_epoch is not None)
        # the search epochs' poses (the encoder's targets) and latents (search_latents), outside DDP
        zdim_table = cfg.zdim if n_search and cfg.warm_start.search_latents else 0
        self.tables = SearchTables(self.n, zdim_table, seed=cfg.seed, device=self.device)
        self.searched = self.tables.poses
        # semi-amortised: task 1 at the searched poses (refined), the encoder distilled to them
        self.semi_amortised = cfg.warm_start.task1_poses == "searched" and n_search > 0
        # the latent seed (latent_init): fitted once the poses are known; the field decodes it a while
        posed_by = None if cfg.poses_mode != "fixed" and not n_search else self.first_amortised_epoch
        self.latent_seed = LatentSeed(self, self.encoder_epoch if self.encoder_epoch is not None else posed_by,
                                      self.first_amortised_epoch)  # fmt: skip
        self.seed_weight = 0.0  # the weight of the encoder's error on the seed in this epoch (0: no seed)
        self.epochs_done = 0  # epochs trained (by this process or before a resume)
        log.info("white noise of the rendered images (task 2): %.3g per pixel (normalised units)", self.noise_std)

    # -- epochs ---------------------------------------------------------------------------
    @property
    def trained_at_searched_poses(self) -> bool:
        """Whether the field is now trained at the searched poses (semi-amortised, past the
        search epochs): then they are the run's poses (:mod:`.outputs`)."""
        searched_by = self.epochs.pretrain_epochs + self.epochs.search_epochs
        return self.semi_amortised and self.epochs_done >= searched_by  # no search epochs with fixed poses

    def train_epoch(self, epoch: int) -> dict:
        self.epochs_done = epoch + 1  # as soon as it starts: a snapshot comes after it
        phase, radius = self.epochs.phase(epoch), self.epochs.radius(epoch)
        self.loader.set_epoch(epoch)
        # the draws of an epoch depend on (seed, epoch, rank) only: a resumed run repeats them
        torch.manual_seed((self.cfg.seed * 1_000_003 + epoch * 7_919 + self.dist.rank) % 2**63)
        rng = np.random.default_rng([self.cfg.seed, epoch, self.dist.rank])
        self.field.train()
        self.encoder.train()
        seeded = self.latent_seed.fit_if_due(self, epoch)
        self.seed_weight = self.latent_seed.weight_at(epoch)
        if epoch == self.encoder_epoch and self.cfg.poses_mode == "fixed":
            stats = self.latent_seed.fit_encoder(self, self.cfg.latent_init_steps)
        elif epoch == self.encoder_epoch:
            stats = fit_encoder(self, rng, self.cfg.warm_start.encoder_steps)
        if epoch == self.encoder_epoch:
            return stats if seeded is None else {**stats, "latent_seed_s": seeded}
        if (self.epochs.search_epochs or self.encoder_epoch is not None) and epoch == self.first_amortised_epoch:
            # Adam's moments of the warm start (or of the seed's encoder epoch) belong to other
            # losses (the encoder's were of pose or seed errors ~1, the data term's gradients
            # are ~1000x larger): its first steps would be ~1000x too long and wreck the
            # encoder's poses (or latents) in one epoch
            self.opt.state.clear()
        window_size = self.cfg.warm_start.search.refresh_batches if phase == "search" else 1
        budget = self.cfg.warm_start.pretrain_images if phase == "pretrain" else None
        totals = torch.zeros(_N_SUMS + 2 * _ANGLE_BINS, dtype=torch.float64)
        centres = search_centres(self) if phase == "search" else None  # once an epoch, as DRGN-AI's
        batches = iter(progress(self.loader, total=len(self.loader), description=f"{phase} epoch {epoch + 1}",
                                unit="batch"))  # fmt: skip
        while budget is None or float(totals[4]) * self.dist.world_size < budget:
            window = list(islice(batches, window_size))
            if not window:
                break
            found = search_window(self, window, radius, centres) if phase == "search" else None
            for i, batch in enumerate(window):
                targets = None if found is None else (found.rotations[i], found.shifts_A[i])
                totals += self.train_step(batch, rng, phase, radius, targets)
        if self.dist.enabled:
            all_reduce_sum_(totals)
        n, m = max(1.0, float(totals[4])), max(1.0, float(totals[5]))
        stats = {
            "phase": phase,
            "radius_px": radius,
            "data": float(totals[0]) / n,
            "kl": float(totals[1]) / n,
            "task2_rotation_error": float(totals[2]) / m,
            "task2_latent_error": float(totals[3]) / m,
            "n_images": int(totals[4]),
        }
        if self.seed_weight > 0:
            stats["latent_seed_weight"] = self.seed_weight
            stats["latent_seed_error"] = float(totals[11]) / n
        if seeded is not None:
            stats["latent_seed_s"] = seeded
        if phase == "search" or (phase == "amortised" and self.semi_amortised):
            learnt = max(1.0, float(totals[4] - totals[9]))
            learnt_hist, held_hist = totals[_N_SUMS:].view(2, _ANGLE_BINS)
            stats["encoder_vs_search_deg"] = float(totals[6]) / learnt
            stats["encoder_vs_search_median_deg"] = _median_of_histogram(learnt_hist)
            stats["encoder_vs_search_turned_share"] = _share_beyond(learnt_hist, _TURNED_DEG)
            stats["distill_error"] = float(totals[7]) / learnt
            if phase == "search" and self.tables.latents is not None and self.cfg.warm_start.latent_distill_weight > 0:
                stats["latent_distill_error"] = float(totals[10]) / max(1.0, float(totals[4]))
            if float(totals[9]) > 0:  # the particles the encoder never learns (warm_start.holdout)
                stats["encoder_vs_search_heldout_deg"] = float(totals[8]) / float(totals[9])
                stats["encoder_vs_search_heldout_median_deg"] = _median_of_histogram(held_hist)
                stats["encoder_vs_search_heldout_turned_share"] = _share_beyond(held_hist, _TURNED_DEG)
        return stats

    def train_step(self, batch, rng: np.random.Generator, phase: str = "amortised", radius: float | None = None,
                   targets: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
        """Both tasks on one batch, one optimiser step; returns the sums for the epoch's log.
        ``phase`` is the schedule's (pretrain: random rotations and no task 2; search: the
        field at the searched poses ``targets``, which the encoder learns); the data term is
        on the band of ``radius`` px (default Nyquist)."""
        cfg, ws = self.cfg, self.cfg.warm_start
        b = batch.to(self.device, non_blocking=True)
        sub = self.band if radius is None or radius >= self.box / 2 else self.band.lowpass(radius / (self.box / 2))
        observed = sub.observed(b.images)
        ctf = sub.filters(b.ctf_params, None)
        enc = self.encoder(b.images)
        std = torch.exp(0.5 * enc.z_logvar)
        warm = phase in ("pretrain", "search") and cfg.poses_mode != "fixed"
        rows = None
        if cfg.poses_mode == "fixed":
            rot, shifts = b.rotations[:, None], b.shifts_A[:, None]
        elif phase == "pretrain":
            draws = random_rotations(len(b.images), rng)
            rot = torch.as_tensor(draws, dtype=torch.float32, device=self.device)[:, None]
            shifts = torch.zeros(len(b.images), 1, 2, device=self.device)
        elif phase == "search":
            rot, shifts = targets[0][:, None], targets[1][:, None]
        elif self.semi_amortised:  # the searched poses, refined (the encoder learns them below)
            index = b.index.to(self.device)
            rows = self.searched.batch(index)
            table_rot, table_shifts = PoseTable.unpack(rows)
            targets = (table_rot.detach(), table_shifts.detach())
            rot, shifts = table_rot[:, None], table_shifts[:, None]
        else:
            rot, shifts = enc.rotations, enc.shifts_A
        # with the readout the latent is the encoder's plus the subspace coordinates at each head's pose (B, H, zdim)
        reads = self.latent_seed.readout is not None and not warm
        z_mean = self.latent_seed.read(enc.z_mean, b.images, b.ctf_params, rot, shifts) if reads else enc.z_mean
        # the warm start's field takes the table's latents (or z = 0); the encoder's latent in
        # the field took up the viewing direction and led the search astray (.warm_start doc)
        table = self.tables.latents if warm else None
        if warm:
            z = torch.zeros_like(std) if table is None else table.batch(b.index.to(self.device))
        elif self.seed_weight > 0:  # the seed holds: it stands for the encoder's mean (.latent_seed)
            z = self.latent_seed.batch(b.index) + std * torch.randn_like(std)
        else:
            draw = std * torch.randn_like(std)
            z = z_mean + (draw[:, None] if z_mean.dim() == 3 else draw)
        terms = data_terms(self.field, sub, self.likelihood.on(sub), observed, ctf, rot, shifts, z)  # (B, H)
        data, best = terms.min(dim=1)  # the best head of each image is trained on it
        if z_mean.dim() == 3:  # the best head's latent
            z_mean = z_mean[torch.arange(len(best), device=best.device), best]
        kl = torch.zeros_like(data) if warm else kl_standard_normal(z_mean, std)
        loss = (data + cfg.optim.beta * kl).mean()
        agree = distill = agree_held = latent_distill = torch.zeros((), device=self.device)
        n_held = 0
        histograms = torch.zeros(2, _ANGLE_BINS, dtype=torch.float64)
        if targets is not None:
            held = held_out(b.index, cfg.warm_start.holdout).to(self.device)
            n_held = int(held.sum())
            posed, seen = enc, targets
            if cfg.warm_start.in_plane_augment:
                # the poses are learnt from the images turned in plane (a second pass: the
                # latent and task 1 keep the images as they are; turned, the latent's
                # classification of simulated assembly fell from ARI 0.43 to 0.20)
                turned, *seen = in_plane_views(b.images, targets[0], targets[1], rng)
                posed = self.encoder(turned)
            distill, _ = pose_task_loss(posed, seen[0], seen[1], self.encoder.max_shift_A, None,
                                        cfg.pose_task.shift_weight, ~held)  # fmt: skip
            if table is not None and ws.latent_distill_weight > 0:  # the table's latents, from the images as they are
                latent_distill = latent_distill_loss(enc.z_mean, z)
            loss = loss + ws.distill_weight * distill + ws.latent_distill_weight * latent_distill
            with torch.no_grad():
                errors = rotation_angle_deg(posed.rotations, seen[0][:, None]).min(dim=1).values
                agree, agree_held = errors[~held].sum(), errors[held].sum()
                histograms[0] = _angle_histogram(errors[~held])
                histograms[1] = _angle_histogram(errors[held])
        seed_err = torch.zeros((), device=self.device)
        if self.seed_weight > 0 and not warm:
            seed_err = self.latent_seed.loss(z_mean, b.index)
            loss = loss + self.seed_weight * seed_err
        rot_err = lat_err = torch.zeros((), device=self.device)
        n2 = 0
        if cfg.pose_task.weight > 0 and not warm:  # the warm start's task 2 is the encoder epoch
            z_batch = self.latent_seed.batch(b.index) if self.seed_weight > 0 else z_mean.detach()
            rot_err, lat_err, n2 = self._pose_task(b, z_batch, rng)
            # while the seed holds the latent is the seed's: task 2 trains poses only (.latent_seed)
            latent_weight = 0.0 if self.seed_weight > 0 else cfg.pose_task.latent_weight
            loss = loss + cfg.pose_task.weight * (rot_err + latent_weight * lat_err)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients([*self.field.parameters(), *self.encoder.parameters()])
        self.opt.step()
        if table is not None:
            self.tables.step_latents(b.index.to(self.device), z.grad, cfg.warm_start.lr_latents)
        if rows is not None:
            self.searched.step(index, rows.grad, ws.lr_rotations, ws.lr_shifts_px * self.apix)
            self.searched.sync_rows(index)
        n = len(b.images)
        sums = torch.tensor(
            [float(data.detach().sum()), float(kl.detach().sum()), float(rot_err.detach()) * n2,
             float(lat_err.detach()) * n2, float(n), float(n2), float(agree), float(distill.detach()) * (n - n_held),
             float(agree_held), float(n_held), float(latent_distill.detach()) * n, float(seed_err.detach()) * n],
            dtype=torch.float64,
        )  # fmt: skip
        return torch.cat([sums, histograms.flatten()])

    def _pose_task(self, b, z_batch: torch.Tensor, rng: np.random.Generator):
        """Task 2 on ``round(images x B)`` rendered images: mean rotation error (squared
        Frobenius, best head, plus the weighted shift error) and mean latent error."""
        pt = self.cfg.pose_task
        n = max(1, int(round(pt.images * len(z_batch))))
        pick = torch.as_tensor(rng.integers(0, len(z_batch), n), device=self.device)
        z = z_batch[pick].clone()
        prior = torch.as_tensor(rng.random(n) < pt.prior_fraction, device=self.device)
        if self.seed_weight > 0:  # while the seed holds, its distribution is the prior (N(0, I) is not its scale)
            rows = torch.as_tensor(rng.integers(0, self.n, int(prior.sum())), device=self.device)
            z[prior] = self.latent_seed.batch(rows).to(z)
        else:
            z[prior] = torch.randn(int(prior.sum()), z.shape[1], device=self.device)
        limit = 0.5 * self.encoder.max_shift_A  # within the encoder's range, not at its edge
        images, rot, shifts = render_at_random_poses(
            self.field, self.render_band, n, rng, ctf_params=b.ctf_params[pick], z=z, max_shift_A=limit,
            noise_std=self.noise_std, radius_px=self.box / 2,
        )  # fmt: skip
        encoded = self.encoder(images)
        # with the readout the latent is read at the render's pose (the pose the latent is conditioned on)
        z_mean = self.latent_seed.read(encoded.z_mean, images, b.ctf_params[pick], rot, shifts)
        rot_err, lat_err = pose_task_loss(encoded, rot, shifts, limit, z, pt.shift_weight, z_mean=z_mean)
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
            "searched": self.searched.state_dict(),
            **({"search_latents": self.tables.latents.state_dict()} if self.tables.latents is not None else {}),
            "latent_seed": self.latent_seed.state_dict(),
        }

    def set_state(self, state: dict) -> None:
        self.field.load_state_dict(state["field"])
        self.encoder.load_state_dict(state["encoder"])
        self.opt.load_state_dict(state["optimizer"])
        if "searched" in state:
            self.searched.load_state_dict(state["searched"])
        if self.tables.latents is not None:
            self.tables.latents.load_state_dict(state["search_latents"])
        self.latent_seed.load_state_dict(state.get("latent_seed", {}))


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
                "noise_std": trainer.noise_std, "pretrain_epochs": trainer.epochs.pretrain_epochs,
                "search_epochs": trainer.epochs.search_epochs}  # fmt: skip
        session.save_config(resolved, info)
        log.info("%d particles at box %d (%.3g Å/px): %d pretrain, %d search and %d amortised epochs, poses %s",
                 trainer.n, trainer.box, trainer.apix, trainer.epochs.pretrain_epochs, trainer.epochs.search_epochs,
                 cfg.epochs, "given" if cfg.poses_mode == "fixed" else "predicted")  # fmt: skip
        info_epochs = trainer.epochs
        rows = session.train(trainer, info_epochs.total_epochs)
        trainer.epochs_done = info_epochs.total_epochs  # also when a resume found them all done
        _report_generalisation(rows)
        write_outputs(trainer, session)
        session.complete(epochs=info_epochs.total_epochs)
    return session.path


#: per-step sums of :meth:`HetacumnTrainer.train_step` before its two angle histograms
_N_SUMS = 12
#: 1-degree bins over [0, 180]: the encoder-vs-search angles of an epoch, summed over
#: steps and ranks, from which its medians are read
_ANGLE_BINS = 180
#: an encoder pose this far from the search's is about a half turn from it: a 180° mate of
#: a pseudo-two-fold particle (a uniformly random rotation is this far 22 % of the time)
_TURNED_DEG = 160.0


def _angle_histogram(angles_deg: torch.Tensor) -> torch.Tensor:
    """Counts ``(_ANGLE_BINS,)`` of the angles (degrees) in 1-degree bins over [0, 180]."""
    return torch.histc(angles_deg.detach().double().cpu(), bins=_ANGLE_BINS, min=0.0, max=180.0)


def _median_of_histogram(counts: torch.Tensor) -> float:
    """The median (degrees) of the angles counted by :func:`_angle_histogram`, interpolated
    inside its bin; NaN when there are none."""
    total = float(counts.sum())
    if total <= 0:
        return float("nan")
    cumulative = torch.cumsum(counts, 0)
    k = int(torch.searchsorted(cumulative, torch.tensor(0.5 * total, dtype=counts.dtype)))
    below = float(cumulative[k - 1]) if k > 0 else 0.0
    return (k + (0.5 * total - below) / max(float(counts[k]), 1e-12)) * 180.0 / _ANGLE_BINS


def _share_beyond(counts: torch.Tensor, angle_deg: float) -> float:
    """The share of the angles counted by :func:`_angle_histogram` beyond ``angle_deg``."""
    total = float(counts.sum())
    first = int(round(angle_deg * _ANGLE_BINS / 180.0))
    return float(counts[first:].sum()) / total if total > 0 else float("nan")


def _report_generalisation(rows: list[dict]) -> None:
    """Log how far the encoder's poses are from the search's on the particles it learnt and
    on the held-out ones (``warm_start.holdout``), and warn when it does not generalise.
    Medians where the log has them: a pseudo-symmetric particle (a dimer) puts a share of
    the poses at a 180° mate of the search's, which a mean counts at full weight. When the
    held-out particles' poses are often a half turn from the search's, the warning says so:
    on simulated assembly the encoder's poses of held-out particles were right modulo the
    dimer's two-fold (13-14° median, as on the learnt ones) while 35-115° (median) from the
    search's, which picks a mate of its own."""
    last = next((r for r in reversed(rows) if "encoder_vs_search_heldout_deg" in r), None)
    if last is None:
        return
    key = "median_deg" if "encoder_vs_search_heldout_median_deg" in last else "deg"
    learnt, held = float(last[f"encoder_vs_search_{key}"]), float(last[f"encoder_vs_search_heldout_{key}"])
    what = "median" if key == "median_deg" else "mean"
    log.info("encoder vs search (%s): %.1f deg on the particles it learnt, %.1f deg on held-out ones", what, learnt,
             held)  # fmt: skip
    if held > max(2.0 * learnt, learnt + 20.0):
        turned = float(last.get("encoder_vs_search_heldout_turned_share", 0.0))
        if turned > 0.3:  # twice what chance gives: the encoder and the search pick different mates
            log.warning(
                "on %.0f%% of the particles it did not learn, the encoder's pose is a half turn from the search's: "
                "a pseudo-symmetric particle (a two-fold)? Such poses are right up to that symmetry; check the "
                "map, or pose new particles with `cryohet infer --poses search`", 100 * turned,
            )  # fmt: skip
            return
        log.warning(
            "the encoder does not generalise: its poses are %.0f deg from the search's on particles it did not learn "
            "(%.0f deg on those it did); `cryohet infer` on new particles will be unreliable: train on more particles",
            held, learnt,
        )  # fmt: skip
