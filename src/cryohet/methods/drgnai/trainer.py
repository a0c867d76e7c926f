"""DRGN-AI training: pretrain -> search epochs -> joint gradient descent, one run directory.

Epochs, in order (each resumes from its checkpoint):

* **pretrain** (abinit; one epoch of ``pretrain_images`` images): random rotations, zero
  shifts, the field alone learns the rotational average at the starting band radius;
* **search epochs** (abinit; ``max(2, ceil(search_images / N))``): at the start of each,
  the field is cached as Fourier grids (one per latent k-means cluster, decided on rank
  0); every batch is searched (:func:`cryohet.pose.search_poses`: HEALPix x shifts,
  coarse to fine, scored by the training likelihood), the found poses go into the pose
  table, and one step trains the field and the latents at those poses. The band radius
  marches from the search's start radius to its end radius over these epochs (DRGN-AI's
  12 and 32 px at D=128, scaled to the box);
* **joint gradient descent** (``epochs_sgd``): poses (6D + shift), latents and field
  together, on the full band (``fixed``: poses stay; ``refine``: they start from the
  given ones). A heterogeneous run first seeds its latents (``latent_init``):
  each image's coordinates in a linear subspace of the heterogeneity (probabilistic PCA,
  :mod:`cryohet.reconstruction.linear_subspace`) fitted at the table's poses — the
  auto-decoded latents of the search carry little of the state at low SNR, the subspace's
  do, and the joint descent takes them from there.
  Every ``frame_align_every`` joint epochs (ab initio, heterogeneous) each latent
  cluster's poses are turned into one common frame (:mod:`cryohet.pose.frames`): the
  search, scoring against maps that average the states, leaves each state's poses a few
  degrees off the others'.

The data term is the shared likelihood (:class:`~cryohet.imaging.likelihood.WeightedL2`
on the Nyquist disc, unit pixel noise) through the render seam: the field answers central
slices, the seam multiplies CTF and the shift phase, so the search and every training
step score an image the same way. Distributed as CryoSPIRE (:mod:`..spire.trainer`): DDP
around the field, the loss scaled to one process at ``batch x world``, latent and pose
tables synchronised by their updated rows, rank 0 writes.
"""

from __future__ import annotations

import contextlib
import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from ...console import get_logger, progress
from ...data.loader import BatchedParticleLoader
from ...device import resolve_device
from ...geometry.rotations import random_rotations
from ...imaging.likelihood import WeightedL2
from ...imaging.shifts import phase_ramp
from ...pose.abinit_schedule import AbinitSchedule, count_epochs
from ...pose.field_search import field_sources
from ...pose.frames import cluster_frames, poses_in_common_frame, rigid_region
from ...pose.search_tables import SearchTables
from ...pose.table import PoseTable
from ...reconstruction.linear_subspace import SubspaceSettings, seed_latents_at_poses
from ...representations.envelope import data_envelope
from ...representations.neural_field import NeuralField
from ...training.distributed import all_reduce_sum_, get_dist, wrap_ddp
from ...training.identity import config_input_paths
from ...training.session import RunSession
from ...training.weight_average import WeightAverage
from ..base import load_weights, weights_mismatch
from ..particles import open_particles
from .config import DrgnaiConfig
from .outputs import write_model_files, write_outputs

__all__ = ["DrgnaiTrainer", "train_drgnai"]

log = get_logger("drgnai")


class DrgnaiTrainer:
    """The data, the field, the per-image tables and the schedule of one run."""

    def __init__(self, cfg: DrgnaiConfig, device: torch.device | None = None) -> None:
        self.cfg = cfg
        self.dist = get_dist()
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        opened = open_particles(
            cfg, "DRGN-AI", min_box=16,
            poses_needed=None if cfg.poses_mode == "abinit" else (
                f"with --poses-mode {cfg.poses_mode} needs input poses (a refined .star/.cs or --poses); "
                "use --poses-mode abinit to estimate them"
            ),
            box_advice="for the pose grid: use at least {min_box}, -D/--box {min_box} or more, or particles "
            "extracted larger",
        )  # fmt: skip
        meta = opened.meta
        self.poses_given = bool(meta.has_poses)
        self.invert, self.contrast, self.dataset = opened.invert, opened.contrast, opened.dataset
        self.box, self.apix, self.n = opened.box, opened.apix, opened.n
        self.band = _disc(self.box, self.apix, self.device)
        self.likelihood = WeightedL2.white_noise(self.band)
        self.loader = BatchedParticleLoader(
            self.dataset, cfg.optim.batch_size, shuffle=True, seed=cfg.seed, num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda", rank=self.dist.rank, world_size=self.dist.world_size,
        )  # fmt: skip
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            f = cfg.field
            self.field = NeuralField(
                self.box,
                self.apix,
                cfg.zdim,
                hidden=f.hidden,
                blocks=f.blocks,
                features=f.features,
                sigma=f.sigma,
                seed=cfg.seed,
            ).to(self.device)
        self.field.init_envelope(data_envelope(self.dataset, self.band, seed=cfg.seed).to(self.device))
        if cfg.load is not None:  # warm start: another run's field (its envelope too)
            weights, path = load_weights(cfg.load, "drgnai", "field", device=str(self.device))
            try:
                self.field.load_state_dict(weights)
            except RuntimeError as err:
                raise weights_mismatch(path, err) from None
            log.info("field weights from %s", path)
        self.ddp = wrap_ddp(self.field, self.device)
        self.opt = torch.optim.Adam(self.field.parameters(), lr=cfg.optim.lr_field)
        # the outputs' field: its weights averaged over the joint epochs' last steps
        memory = cfg.field_average_epochs * len(self.loader)
        self.field_average = WeightAverage(memory) if memory > 0 else None
        # per-image poses, latents and best scores, outside DDP (shared with HetACUMN's warm start)
        self.tables = SearchTables(self.n, cfg.zdim, seed=cfg.seed, device=self.device)
        self.poses, self.latents = self.tables.poses, self.tables.latents
        if cfg.poses_mode != "abinit":
            shifts = meta.shifts_A if meta.shifts_A is not None else np.zeros((self.n, 2))
            rot = torch.tensor(np.array(meta.rotations, dtype=np.float32))
            self.poses.set(torch.arange(self.n, device=self.device), rot, torch.tensor(np.array(shifts, np.float32)))
        self.n_pretrain = cfg.pretrain_epochs(self.n)
        self.n_search = cfg.search_epochs(self.n)
        self.total_epochs = self.n_pretrain + self.n_search + cfg.epochs_sgd
        self.schedule = cfg.search.schedule(self.box, self.apix)
        self.local_schedule = cfg.search.local_schedule(refine=cfg.poses_mode == "refine")
        self.radius_start_px, self.radius_end_px = self.schedule.radius_start_px, self.schedule.radius_end_px
        self.epochs = AbinitSchedule(self.n_pretrain, self.n_search, cfg.epochs_sgd, self.radius_start_px,
                                     self.radius_end_px, self.box)  # fmt: skip

    # -- schedule -------------------------------------------------------------------------
    def phase(self, epoch: int) -> str:
        return self.epochs.phase(epoch)

    def radius(self, epoch: int) -> float:
        """Band radius (Fourier px) of the data term in ``epoch`` and of the search's last round:
        the search's start radius in pretraining, marching to its end radius over the search
        epochs (frequency marching), Nyquist in the joint descent."""
        return self.epochs.radius(epoch)

    def _local_refinement(self, epoch: int) -> bool:
        """Whether the poses of ``epoch`` are refined by a local search: joint epochs with a
        local step, after the search epochs (abinit) or once the field has been fitted to the
        given poses by ``search.local_after_images`` images of gradient-only joint epochs
        (refine: a local search against an untrained field makes poses worse)."""
        if self.phase(epoch) != "sgd" or self.cfg.poses_mode == "fixed" or self.local_schedule is None:
            return False
        if self.cfg.poses_mode == "abinit":
            return True
        return epoch >= self.n_pretrain + self.n_search + count_epochs(self.cfg.search.local_after_images, self.n, 1)

    # -- epochs ---------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict:
        phase = self.phase(epoch)
        radius = self.radius(epoch)
        self.loader.set_epoch(epoch)
        sizes = self.loader.sampler.global_batch_sizes() if self.dist.enabled else None
        local = self._local_refinement(epoch)
        centres = self._cluster_centres() if phase == "search" or local else None
        seeded = self._seed_latents() if self._seeds_latents(epoch) else None
        framed = self._align_frames() if self._aligns_frames(epoch) else None
        refresh = max(1, self.cfg.search.refresh_batches)
        totals = torch.zeros(3, dtype=torch.float64)
        budget = self.cfg.pretrain_images if phase == "pretrain" else None
        batches = iter(
            progress(self.loader, total=len(self.loader), description=f"{phase} epoch {epoch + 1}", unit="batch")
        )
        step = 0
        while budget is None or float(totals[1]) * self.dist.world_size < budget:
            window = list(islice(batches, refresh if phase == "search" or local else 1))
            if not window:
                break
            if phase == "search":
                # the field re-cached as it is trained so far (online), then the window's
                # images searched together (each cluster's base-grid slices made once)
                self._search_batches(window, self._search_sources(radius, centres), radius)
            elif local:  # the window's poses refined locally against the field as it is now
                self._local_batches(window, self._search_sources(radius, centres))
            for batch in window:
                gsize = None if sizes is None else sizes[step]
                data = self.train_step(batch, radius, phase, gsize, seed=epoch * 100003 + step)
                totals += torch.tensor([float(data.sum()), float(len(data)), 0.0], dtype=torch.float64)
                step += 1
        if self.dist.enabled:
            all_reduce_sum_(totals)
        n = max(1, int(totals[1]))
        stats = {"phase": phase, "radius_px": radius, "data": float(totals[0]) / n, "n_images": n}
        median = self.tables.median_score() if phase != "pretrain" else None
        if median is not None:
            stats["search_score_median"] = median
        if seeded is not None:
            stats["latent_init_s"] = seeded
        if framed is not None:
            stats["frame_align_s"], stats["frame_turn_deg_median"] = framed
        return stats

    def _aligns_frames(self, epoch: int) -> bool:
        """Whether ``epoch`` starts by moving the clusters' poses into one frame: every
        ``frame_align_every``-th joint epoch of a heterogeneous ab initio run (not the first)."""
        every, joint = self.cfg.frame_align_every, epoch - self.n_pretrain - self.n_search
        if self.cfg.zdim == 0 or self.cfg.poses_mode != "abinit" or every == 0 or self.phase(epoch) != "sgd":
            return False
        return joint > 0 and joint % every == 0

    @torch.no_grad()
    def _align_frames(self) -> tuple[float, float]:
        """Turn each latent cluster's poses into the frame of the field's map at the mean latent
        (:mod:`cryohet.pose.frames`: cluster maps aligned on the rigid region); the poses' Adam
        moments restart. Every rank computes the same (centres decided on rank 0). Returns the
        seconds it took and the median turn in degrees."""
        t0 = time.perf_counter()
        centres = self.tables.cluster_centres(self.cfg.frame_clusters, self.cfg.seed)
        centres = torch.as_tensor(centres, dtype=torch.float32, device=self.device)
        z = self.latents.z
        labels = torch.cdist(z, centres).argmin(dim=1).cpu().numpy()
        ref = self.field.to_volume(self.box, self.apix, z.mean(dim=0, keepdim=True)).cpu().numpy()
        maps = [self.field.to_volume(self.box, self.apix, c[None]).cpu().numpy() for c in centres]
        fit = cluster_frames(ref, maps, rigid_region(ref, maps))
        rot, shifts_A = self.poses.poses()
        moved = poses_in_common_frame(rot.cpu().double().numpy(), labels, fit.rotations)
        self.poses.set(torch.arange(self.n, device=self.device), torch.from_numpy(moved).float(), shifts_A)
        seconds, turn = time.perf_counter() - t0, float(np.median(fit.angles_deg))
        log.info("poses of %d latent clusters turned into one frame (median %.2f°, max %.2f°; %.0f s)",
                 len(maps), turn, float(fit.angles_deg.max()), seconds)  # fmt: skip
        return seconds, turn

    def _seeds_latents(self, epoch: int) -> bool:
        """Whether ``epoch`` starts by seeding the latents: the first joint epoch of a
        heterogeneous run with ``latent_init`` subspace (after the search; the first epoch
        with given poses)."""
        seeded = self.cfg.zdim > 0 and self.cfg.latent_init == "subspace"
        return seeded and epoch == self.n_pretrain + self.n_search

    def _seed_latents(self) -> float:
        """Set every latent to its image's coordinates in a linear subspace of the heterogeneity
        (``zdim`` components) fitted at the pose table's poses
        (:func:`~cryohet.reconstruction.linear_subspace.seed_latents_at_poses`); the latents'
        Adam moments restart. Returns the seconds it took."""
        t0 = time.perf_counter()
        cfg = self.cfg
        rot, shifts_A = self.poses.poses()
        settings = SubspaceSettings(components=cfg.zdim, batch_size=4 * cfg.optim.batch_size, seed=cfg.seed)
        z = seed_latents_at_poses(self.dataset, rot.cpu().numpy(), shifts_A.cpu().numpy(), settings,
                                  cfg.latent_init_iterations, self.device)  # fmt: skip
        z = torch.from_numpy(z).to(self.device)
        self.latents.assign(torch.arange(self.n, device=self.device), z)
        seconds = time.perf_counter() - t0
        log.info("latents seeded from a %d-component linear subspace at the table's poses (%.0f s)", cfg.zdim,
                 seconds)  # fmt: skip
        return seconds

    def _observe(self, batch, radius: float):
        """Images' DFTs and CTFs on the band of ``radius`` (the data term's sub-band)."""
        b = batch.to(self.device, non_blocking=True)
        sub = self.band.lowpass(min(1.0, radius / (self.box / 2)))
        return b.index, sub, sub.observed(b.images), sub.filters(b.ctf_params, None)

    def data_term(self, sub, observed, ctf, rotations, shifts_A, z=None) -> torch.Tensor:
        """Per-image data term ``(B,)`` on the sub-band ``sub`` at the given poses (differentiable):
        the field's slices through the DDP wrapper, times CTF and the shift phase, scored by the
        run's likelihood — the very expression the pose search expands into matrix products."""
        amp = self.cfg.amp and self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=amp):
            slices = self.ddp(rotations, sub, z)  # always through the DDP wrapper
        model = slices.to(torch.complex64) * ctf * phase_ramp(sub.kx_per_A, sub.ky_per_A, shifts_A)
        return self.likelihood.on(sub).score(observed, model)

    def _image_chunks(self, n: int, sub) -> list[tuple[int, int]]:
        """Image ranges of one step: at most as many band points per range as a full batch has
        on the search's end band (one range in pretraining and searching; several on a wider band)."""
        budget = self.cfg.optim.batch_size * _band_points(self.band, self.radius_end_px)
        per_image = max(1, int((sub.weights > 0).sum()))
        size = max(1, budget // per_image)
        return [(a, min(n, a + size)) for a in range(0, n, size)] or [(0, 0)]

    def train_step(self, batch, radius: float, phase: str, global_size: int | None = None, seed: int = 0):
        """One step at band ``radius``: the field (and latents; and poses in the joint descent)."""
        cfg, world = self.cfg, self.dist.world_size
        index, sub, observed, ctf = self._observe(batch, radius)
        train_poses = phase == "sgd" and cfg.poses_mode != "fixed"
        if phase == "pretrain":
            rot = torch.as_tensor(random_rotations(len(index), seed), dtype=torch.float32, device=self.device)
            shifts = torch.zeros(len(index), 2, device=self.device)
            rows = None
        else:
            rows = self.poses.batch(index) if train_poses else None
            rot, shifts = self.poses.poses(index) if rows is None else (None, None)  # trained: unpacked per chunk
        z = self.latents.batch(index) if self.latents is not None else None
        scale = (1.0 / max(1, len(index))) if world == 1 else world / float(global_size)
        self.opt.zero_grad(set_to_none=True)
        parts = []
        chunks = self._image_chunks(len(index), sub)
        for i, (a, b) in enumerate(chunks):
            # the band's points of a step bounded by the search's (no memory jump when the
            # joint descent trains on the full band): chunks' gradients accumulate
            sync = i == len(chunks) - 1 or not hasattr(self.ddp, "no_sync")
            with contextlib.nullcontext() if sync else self.ddp.no_sync():
                r, t = PoseTable.unpack(rows[a:b]) if rows is not None else (rot[a:b], shifts[a:b])
                part = self.data_term(sub, observed[a:b], ctf[a:b], r, t, None if z is None else z[a:b])
                loss = part.sum() * scale
                if world > 1 and b == a:  # an empty share of the last step: zero gradients, same collectives
                    loss = loss + 0.0 * sum(p.sum() for p in self.field.parameters())
                loss.backward()
            parts.append(part.detach())
        data = torch.cat(parts)
        self.opt.step()
        if self.field_average is not None and phase == "sgd":
            self.field_average.update(self.field)
        if z is not None:
            self.tables.step_latents(index, z.grad, cfg.optim.lr_latents, world)
        if rows is not None:
            grad = rows.grad / world if world > 1 else rows.grad
            self.poses.step(index, grad, cfg.optim.lr_rotations, cfg.optim.lr_shifts_px * self.apix)
            self.poses.sync_rows(index)
        return data.detach()

    # -- search -----------------------------------------------------------------------------
    def _cluster_centres(self) -> np.ndarray | None:
        """k-means centres of the latents (rank 0 decides, every rank gets them); None when homogeneous."""
        return self.tables.cluster_centres(self.cfg.search.clusters, self.cfg.seed)

    def _search_sources(self, radius: float, centres: np.ndarray | None) -> tuple[list, torch.Tensor | None]:
        """The field cached as Fourier grids for the search: one per latent cluster centre."""
        return field_sources(self.field, radius, self.box, centres, **self.cfg.search.grid_options(), amp=self.cfg.amp)

    def _window(self, batches: list):
        """The images of ``batches`` together on the full band: (index, DFTs, CTFs), or None
        when the window is empty (a rank's empty share)."""
        seen = [self._observe(b, self.box / 2) for b in batches]
        index = torch.cat([s[0] for s in seen])
        if not len(index):
            return None
        return index, torch.cat([s[2] for s in seen]), torch.cat([s[3] for s in seen])

    @torch.no_grad()
    def _search_batches(self, batches: list, sources, radius: float) -> None:
        """Search the images of ``batches`` together; their poses go into the pose table."""
        window = self._window(batches)
        if window is None:
            return
        chunk = self.cfg.search.chunk_images or (256 if self.device.type == "cuda" else 32)
        self.tables.search(*window, sources, self.likelihood, self.schedule, radius, chunk)

    @torch.no_grad()
    def _local_batches(self, batches: list, sources) -> None:
        """Refine the poses of the images of ``batches`` by a local search on the full band."""
        window = self._window(batches)
        if window is None:
            return
        self.tables.refine(*window, sources, self.likelihood, self.local_schedule)

    def snapshot(self, run) -> None:
        """The run's model files as they are after this epoch (:mod:`cryohet.training.snapshots`)."""
        write_model_files(self, run)

    # -- state ----------------------------------------------------------------------------
    def get_state(self) -> dict:
        state = {"field": self.field.state_dict(), "optimizer": self.opt.state_dict(), "invert": self.invert}
        state.update(self.tables.state_dict())  # poses, best_scores, latents
        if self.field_average is not None:
            state["field_average"] = self.field_average.state_dict()
        return state

    def set_state(self, state: dict) -> None:
        self.field.load_state_dict(state["field"])
        self.opt.load_state_dict(state["optimizer"])
        self.tables.load_state_dict(state)
        if self.field_average is not None and "field_average" in state:
            self.field_average.load_state_dict(state["field_average"])

    def output_field(self):
        """Context: the field with the weights the outputs hold (the average over the joint
        epochs' last steps, ``field_average_epochs``; its own weights before or without one)."""
        if self.field_average is None:
            return contextlib.nullcontext(self.field)
        return self.field_average.applied(self.field)


def _band_points(band, radius_px: float) -> int:
    """Points of ``band`` with non-zero weight inside ``radius_px``."""
    sub = band.lowpass(min(1.0, radius_px / (band.box / 2)))
    return int((sub.weights > 0).sum())


def _disc(box: int, apix: float, device):
    from ...imaging.bands import FourierBand

    return FourierBand.disc(box, apix, device=device)


def train_drgnai(cfg: DrgnaiConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Train DRGN-AI into ``cfg.out``; returns the run directory."""
    with RunSession(
        cfg.out, resume=resume, overwrite=overwrite, label="drgnai", device=cfg.device, protect=config_input_paths(cfg)
    ) as session:
        cfg = session.reconcile(cfg)
        session.epoch_fields = ("--epochs-sgd",)
        trainer = DrgnaiTrainer(cfg, device=session.device)
        resolved = cfg.model_copy(deep=True)
        resolved.box = trainer.box
        resolved.invert = trainer.invert
        info = {"apix": trainer.apix, "n_particles": trainer.n, "image_std": float(trainer.dataset.std),
                "pretrain_epochs": trainer.n_pretrain, "search_epochs": trainer.n_search}  # fmt: skip
        if trainer.contrast is not None:
            info["contrast_z"] = round(trainer.contrast.z, 2)
        session.save_config(resolved, info)
        log.info("%d particles at box %d (%.3g Å/px): %d pretrain, %d search and %d joint epochs", trainer.n,
                 trainer.box, trainer.apix, trainer.n_pretrain, trainer.n_search, cfg.epochs_sgd)  # fmt: skip
        session.train(trainer, trainer.total_epochs)
        write_outputs(trainer, session)
        session.complete(epochs=trainer.total_epochs)
    return session.path
