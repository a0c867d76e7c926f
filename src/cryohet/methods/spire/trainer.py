"""CryoSPIRE training: consensus -> stage A -> part discovery -> stage B -> run directory.

Epochs ``0 .. E_A - 1`` train stage A, epochs ``E_A .. E_A + E_B - 1`` stage B; the switch
(part discovery, fine seeding, motion warm start) happens at the start of epoch ``E_A``
and is deterministic, so a run resumed from any checkpoint ends where an uninterrupted
one would. Every epoch writes a weights-only checkpoint (:mod:`cryohet.training`).

Distributed (``torchrun``): each rank trains on its share of every global batch (the
networks are wrapped in DistributedDataParallel, the loss is scaled so that the averaged
gradients are those of one process at ``batch_size x world_size``), the latent table
stays outside DDP and is kept identical on every rank by gathering the rows each step
updated; the consensus, the latent initialisation, the latent searches and the outputs
are computed on each rank's shard of the images and gathered; k-means and part
discovery run on rank 0 and are broadcast. Rank 0 alone writes.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ...console import get_logger, progress
from ...data.loader import BatchedParticleLoader
from ...device import resolve_device
from ...errors import InputError
from ...io.mrc import read_volume, write_volume
from ...latents.table import LatentTable
from ...reconstruction.from_particles import reconstruct_particles
from ...representations.gaussian_seeding import auto_gaussian_count, seed_from_map
from ...representations.render import BandBatch, prepare_batch, score_batch
from ...training.distributed import all_reduce_sum_, broadcast_object, get_dist, wrap_ddp
from ...training.identity import config_input_paths
from ...training.per_image import my_rows
from ...training.rundir import RunDir
from ...training.session import RunSession
from ..particles import open_particles
from .config import SpireConfig
from .latent_init import regional_latents
from .latent_search import search_latents
from .memory import check_step_memory
from .objective import data_band, data_likelihood, occupancy_energy_weights, occupancy_prior
from .outputs import write_model_files, write_outputs
from .parts import PartAssignment, discover_parts
from .stage_a import OCCUPANCY_BIAS, StageAModel
from .stage_b import StageBModel
from .transition import build_stage_b, medoid_latent, warm_start_motion

__all__ = ["train_spire", "SpireTrainer"]

log = get_logger("spire")


def _param_groups(model: torch.nn.Module, cfg: SpireConfig) -> list[dict]:
    gauss_names = ("centres_px", "log_amplitudes", "log_sigmas_px", "delta_centres_px")
    gauss, nets = [], []
    for name, p in model.named_parameters():
        (gauss if name in gauss_names else nets).append(p)
    return [
        {"params": gauss, "lr": cfg.optim.lr_gaussians},
        {"params": nets, "lr": cfg.optim.lr_networks},
    ]


@contextmanager
def _seeded(seed: int):
    """Torch's default generator seeded for the block (network initialisation), restored after:
    a run is a function of its config, and a resumed run builds the same stage-B networks
    as an uninterrupted one."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class SpireTrainer:
    """Holds the data, the models and the optimisers of one run."""

    def __init__(self, cfg: SpireConfig, resume: bool = False, device: torch.device | None = None) -> None:
        self.cfg = cfg
        self.run = RunDir(cfg.out)
        self.dist = get_dist()
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        opened = open_particles(cfg, "CryoSPIRE", poses_needed="needs poses (give a refined .star/.cs or --poses)")
        self.invert, self.contrast, self.dataset = opened.invert, opened.contrast, opened.dataset
        self.box, self.apix, self.n = opened.box, opened.apix, opened.n
        self.band = data_band(self.box, self.apix, device=self.device)
        self.likelihood = data_likelihood(self.band)
        self.loader = BatchedParticleLoader(
            self.dataset,
            cfg.optim.batch_size,
            shuffle=True,
            seed=cfg.seed,
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.latents = LatentTable(self.n, cfg.zdim, seed=cfg.seed, device=self.device)
        self.rng = np.random.default_rng(cfg.seed)
        self.model_a: StageAModel | None = None
        self.model_b: StageBModel | None = None
        self.ddp: torch.nn.Module | None = None  # the active model as trained (DDP-wrapped when distributed)
        self.parts: PartAssignment | None = None
        self.opt: torch.optim.Optimizer | None = None
        self.consensus = self._consensus(resume)
        self._build_stage_a()

    # -- setup -----------------------------------------------------------------------
    def _consensus(self, resume: bool) -> np.ndarray:
        path = self.run.path / "consensus.mrc"
        if resume and path.exists():
            return read_volume(path)[0]
        if self.cfg.init_map:
            vol, info = read_volume(self.cfg.init_map)
            if vol.shape[0] != self.box:
                raise InputError(
                    f"{self.cfg.init_map}: box {vol.shape[0]} differs from the training box {self.box} "
                    f"(resample the map or pass --box {vol.shape[0]})"
                )
            if info.apix > 0 and abs(info.apix - self.apix) > 0.01 * self.apix:
                log.warning(
                    "%s: pixel size %.4g Å differs from the data's %.4g Å", self.cfg.init_map, info.apix, self.apix
                )
        else:
            log.info("consensus map: backprojecting %d particles", self.n)
            vol = reconstruct_particles(self.dataset, device=self.device).full.cpu().numpy()
        if self.dist.is_main:
            write_volume(path, vol, self.apix)
        return vol

    def _gaussian_counts(self) -> tuple[int, int]:
        """Configured counts, or the paper's density of Gaussians per protein voxel."""
        a = self.cfg.stage_a.gaussians or auto_gaussian_count(self.consensus, 0.3, 256, 4096)
        b = self.cfg.stage_b.gaussians or auto_gaussian_count(self.consensus, 1.2, 1024, 16384)
        return a, b

    def _build_stage_a(self) -> None:
        n_a, _ = self._gaussian_counts()
        seed = seed_from_map(self.consensus, n_a, np.random.default_rng(self.cfg.seed))
        sa = self.cfg.stage_a
        with _seeded(self.cfg.seed):
            self.model_a = StageAModel(
                torch.as_tensor(seed.centres_px),
                torch.as_tensor(seed.amplitudes),
                torch.as_tensor(seed.sigmas_px),
                self.cfg.zdim,
                sa.feature_dim,
                sa.hidden,
                self.box,
                self.apix,
                positional_encoding=sa.positional_encoding,
                seed=self.cfg.seed,
            ).to(self.device)
        self.ddp = self._wrap(self.model_a)
        self.opt = torch.optim.Adam(_param_groups(self.model_a, self.cfg))

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around ``model`` when distributed (rank 0's weights broadcast); the model otherwise."""
        unused = isinstance(model, StageBModel) and not model.anchor_motion  # ablation: motion MLP unused
        return wrap_ddp(model, self.device, find_unused_parameters=unused)

    def _pass_loader(self) -> BatchedParticleLoader:
        """This rank's share of the images, in storage order (a per-image pass)."""
        return BatchedParticleLoader(
            self.dataset,
            self.cfg.optim.batch_size,
            shuffle=False,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            rows=my_rows(self.n),
        )

    def _begin_stage_b(self) -> None:
        assert self.model_a is not None
        cfg = self.cfg
        if cfg.latent_search and cfg.stage_a.epochs > 0:
            self._search(self.model_a, "latent search (end of stage A)")
        self.model_a.eval()
        z_all = self.latents.z
        n_probe = min(64, self.n)
        probe = z_all[
            torch.randperm(self.n, generator=torch.Generator().manual_seed(cfg.seed))[:n_probe].to(z_all.device)
        ]
        offsets, occ = self.model_a.responses(probe.float())
        base = self.model_a.centres_px.detach()
        positions = (base[None] + offsets).cpu().numpy()
        feats = None if self.model_a.positional_encoding else self.model_a.features.detach().cpu().numpy()
        max_r = None if cfg.max_part_radius_A is None else cfg.max_part_radius_A / self.apix
        parts = None
        if self.dist.is_main:  # k-means: decided once, broadcast
            parts = discover_parts(
                positions,
                occ.cpu().numpy(),
                base.cpu().numpy(),
                torch.exp(self.model_a.log_amplitudes).detach().cpu().numpy(),
                features=feats,
                n_parts=cfg.parts,
                max_radius_px=max_r,
                seed=cfg.seed,
            )
        self.parts = broadcast_object(parts)
        log.info("parts: %d (%s)", self.parts.n_parts, self.parts.criterion)
        z_ref = medoid_latent(z_all)
        _, n_b = self._gaussian_counts()
        sb = cfg.stage_b
        present = (occ.max(dim=0).values > 0.1).float().cpu()
        with _seeded(cfg.seed + 1):
            self.model_b = build_stage_b(
                self.model_a.cpu(),
                self.parts,
                z_ref.cpu(),
                n_b,
                self.box,
                self.apix,
                np.random.default_rng(cfg.seed + 1),
                present,
                cfg.zdim,
                sb.hidden,
                sb.layers,
                decoder=sb.decoder,
                rank=sb.rank,
                anchor_motion=sb.anchor_motion,
                local_flex=sb.local_flex,
                learn_widths=sb.learn_widths,
            )
        fit = warm_start_motion(self.model_b, self.model_a, self.parts, z_all.cpu(), z_ref.cpu(), seed=cfg.seed)
        log.info(
            "stage B: %d Gaussians in %d parts; motion warm start fit %.4g",
            self.model_b.n_gaussians,
            self.parts.n_parts,
            fit,
        )
        self.model_a.to(self.device)
        self.model_b.to(self.device)
        self.ddp = self._wrap(self.model_b)
        self.opt = torch.optim.Adam(_param_groups(self.model_b, cfg))
        self.latents.reset_optimizer()

    def _init_latents(self) -> None:
        """Regional-occupancy latents (see :mod:`.latent_init`); runs at the start of epoch 0."""
        m = self.model_a
        loader = self._pass_loader()
        amps = torch.exp(m.log_amplitudes.detach()) * torch.sigmoid(torch.tensor(OCCUPANCY_BIAS))
        z = regional_latents(
            m.centres_px.detach(),
            amps,
            m.sigmas_px,
            loader,
            self.band,
            self.device,
            self.cfg.zdim,
            self.cfg.init_regions,
            seed=self.cfg.seed,
        )
        self.latents.assign(torch.arange(self.n, device=self.device), torch.as_tensor(z, device=self.device))

    def _search(self, model: torch.nn.Module, label: str) -> None:
        """Discrete latent search over all images (see :mod:`.latent_search`)."""
        search_latents(
            model,
            self.latents,
            self._pass_loader(),
            self.likelihood,
            self.device,
            self.cfg.latent_search,
            self.cfg.lambda_z,
            seed=self.cfg.seed,
            label=label,
            band=self.cfg.search_band,
        )

    # -- training ----------------------------------------------------------------------
    def _active(self) -> torch.nn.Module:
        return self.model_b if self.model_b is not None else self.model_a

    def train_epoch(self, epoch: int) -> dict:
        cfg = self.cfg
        if epoch >= cfg.stage_a.epochs and self.model_b is None:
            self._begin_stage_b()
        model = self._active()
        stage = "B" if self.model_b is not None else "A"
        if stage == "A" and epoch == 0 and cfg.init_regions:
            self._init_latents()
        if stage == "B" and epoch in cfg.stage_b_search_epochs:
            self._search(model, f"latent search (stage B, before epoch {epoch + 1})")
        model.train()
        self.loader.set_epoch(epoch)
        sizes = self.loader.sampler.global_batch_sizes() if self.dist.enabled else None
        tot_data = tot_z = 0.0
        count = 0
        for step, batch in enumerate(
            progress(self.loader, total=len(self.loader), description=f"stage {stage} epoch {epoch + 1}", unit="batch")
        ):
            data, zpen = self.train_step(
                prepare_batch(batch, self.band, self.device), None if sizes is None else sizes[step]
            )
            tot_data += float(data.sum())
            tot_z += float(zpen.sum())
            count += len(data)
        if self.dist.enabled:
            totals = all_reduce_sum_(torch.tensor([tot_data, tot_z, float(count)], dtype=torch.float64))
            tot_data, tot_z, count = float(totals[0]), float(totals[1]), int(totals[2])
        return {"stage": stage, "data": tot_data / count, "z_sq": tot_z / count, "n_images": count}

    def train_step(self, fb: BandBatch, global_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step of the active stage on one batch.

        ``global_size``: images of this step over all ranks (distributed runs; the local
        batch may even be empty). Per-image terms are summed and divided by it, times the
        world size, so that DDP's averaged gradients equal one process's mean over the
        global batch; the latents' gradients (outside DDP) are divided by the world size.
        Returns the per-image data term and ``||z||^2`` (detached, shape ``(B,)``).
        """
        cfg = self.cfg
        world = self.dist.world_size
        amp = cfg.amp and self.device.type == "cuda"
        z = self.latents.batch(fb.index)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=amp):
            mix = self.ddp(z)  # always through the DDP wrapper (its hooks sync the gradients)
        data = score_batch(mix, fb, self.likelihood) if len(fb) else z.new_zeros(0)
        zpen = (z.float() ** 2).sum(dim=1)
        per_image = data + cfg.lambda_z * zpen
        if world == 1:
            loss = per_image.mean()
        else:
            loss = per_image.sum() * (world / float(global_size))
            if not len(fb):  # an empty share of the last step: zero gradients, same collectives
                loss = loss + 0.0 * (mix.centres_A.sum() + mix.amplitudes.sum() + mix.sigmas_A.sum())
        if self.model_b is not None:
            loss = loss + cfg.lambda_f * self.model_b.feature_penalty() / self.n
            if cfg.lambda_occ > 0:
                energy = occupancy_energy_weights(torch.exp(self.model_b.log_amplitudes), self.model_b.sigmas_px())
                prior = occupancy_prior(mix.occupancy, energy)
                loss = loss + cfg.lambda_occ * (prior.mean() if world == 1 else prior.sum() * (world / global_size))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        grad = z.grad if world == 1 else z.grad / world
        self.latents.step(fb.index, grad, cfg.optim.lr_latents)
        self.latents.sync_rows(fb.index)
        return data.detach(), zpen.detach()

    # -- state ----------------------------------------------------------------------------
    def snapshot(self, run) -> None:
        """The run's model files as they are after this epoch (stage B only;
        :mod:`cryohet.training.snapshots`)."""
        write_model_files(self, run)

    def get_state(self) -> dict:
        state = {
            "latents": self.latents.state_dict(),
            "model_a": self.model_a.state_dict(),
            "optimizer": self.opt.state_dict(),
            "stage": "B" if self.model_b is not None else "A",
        }
        if self.model_b is not None:
            state["model_b"] = self.model_b.state_dict()
            state["parts"] = {
                "labels": torch.as_tensor(self.parts.labels),
                "anchors": torch.as_tensor(self.parts.anchors),
                "groups": torch.as_tensor(self.parts.motion_groups),
            }
        return state

    def set_state(self, state: dict) -> None:
        self.latents.load_state_dict(state["latents"])
        self.model_a.load_state_dict(state["model_a"])
        if state["stage"] == "B":
            sd = state["model_b"]
            self.parts = PartAssignment(
                state["parts"]["labels"].numpy(),
                state["parts"]["anchors"].numpy(),
                state["parts"]["groups"].numpy(),
                "restored from checkpoint",
            )
            self.model_b = StageBModel.from_state_dict(sd, self.cfg, self.apix).to(self.device)
            self.ddp = self._wrap(self.model_b)
            self.opt = torch.optim.Adam(_param_groups(self.model_b, self.cfg))
        self.opt.load_state_dict(state["optimizer"])


def train_spire(cfg: SpireConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Train CryoSPIRE into ``cfg.out``; returns the run directory."""
    with RunSession(
        cfg.out, resume=resume, overwrite=overwrite, label="spire", device=cfg.device, protect=config_input_paths(cfg)
    ) as session:
        cfg = session.reconcile(cfg)
        session.epoch_fields = ("--epochs-b",)
        trainer = SpireTrainer(cfg, resume=resume, device=session.device)
        n_a, n_b = trainer._gaussian_counts()
        sb = cfg.stage_b
        need = check_step_memory(
            cfg.optim.batch_size, n_b, trainer.box, trainer.device, decoder=sb.decoder, hidden=sb.hidden,
            layers=sb.layers, n_particles=trainer.n, zdim=cfg.zdim,
        )  # fmt: skip
        log.info("memory: a stage-B step needs about %.2f GB", need / 2**30)
        resolved = cfg.model_copy(deep=True)
        resolved.box = trainer.box
        resolved.invert = trainer.invert
        resolved.stage_a.gaussians, resolved.stage_b.gaussians = n_a, n_b
        session.save_config(
            resolved, {"apix": trainer.apix, "n_particles": trainer.n, "image_std": float(trainer.dataset.std)}
        )
        session.train(trainer, cfg.total_epochs)
        if trainer.model_b is None:  # stage B had no epochs: still build it for the outputs
            trainer._begin_stage_b()
        write_outputs(trainer)  # every rank computes its share; rank 0 writes
        session.complete(epochs=cfg.total_epochs)
        log.info("done in %.1f min", session.elapsed_s / 60)
    return session.path
