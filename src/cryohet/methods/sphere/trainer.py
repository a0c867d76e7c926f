"""cryoSPHERE training: an atomic model, checked against the consensus, then moved per image.

Before any training the run (rank 0 and every other rank alike):

1. reads the particles (poses and CTF required) and decides the contrast sign;
2. reads the atomic model, places a centred one on the box centre when told to
   (``centred_model``), and builds its residue Gaussians (:func:`residue_model`);
3. compares the model with the consensus map (given, or backprojected from the particles
   with their poses): correlation and the resolution where their FSC falls to 0.5 are
   logged and kept in ``config.yaml``; a model that does not overlap is refused with one
   line naming the frame expected (:func:`check_model_in_map`);
4. sets the amplitude scale by least squares of the input model's images against the
   data, so that training starts with the right contrast scale.

At the starts of the epochs listed by ``domain_search_at``, every image's moving domains
are searched over turns about their hinges; from the first search on (``domain_turns``)
the searched domains turn by their latent ring angles, and later searches choose their
hinges again on the data (:mod:`.search_steps`).

Each epoch then trains the encoder (or the latent table), the decoder and the
segmentation on the batch objective (:func:`.objective.batch_objective`: the shared
likelihood through the render seam, KL terms annealed as in the paper, restraints).
Distributed: every rank builds the same network (same seed), the per-rank loss is scaled
to the global batch and the gradients are averaged over ranks by all-reduce (the network
is not called through ``forward``, so no DDP hooks); a latent table stays outside and is
synchronised by its updated rows. Rank 0 writes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ...console import get_logger, progress
from ...data.loader import BatchedParticleLoader
from ...device import resolve_device
from ...errors import InputError
from ...imaging.bands import FourierBand
from ...imaging.likelihood import WeightedL2
from ...io.atomic import AtomicModel
from ...io.mrc import read_volume
from ...latents.table import LatentTable
from ...reconstruction.from_particles import reconstruct_particles
from ...reconstruction.model_fit import ModelMapFit, check_model_in_map
from ...representations.render import model_images, prepare_batch
from ...representations.residue_model import ResidueModel
from ...representations.voxel import resample_volume
from ...training.distributed import all_reduce_sum_, average_gradients, get_dist
from ...training.identity import config_input_paths
from ...training.session import RunSession
from ..base import load_weights, weights_mismatch
from ..particles import open_particles
from .body_targets import BodyTargets
from .build import build_network, load_residues
from .config import SphereConfig
from .objective import ObjectiveWeights, batch_objective, cyclic_beta, linear_beta
from .outputs import write_model_files, write_outputs
from .restraints import clash_pairs
from .search_steps import DomainSearchSteps

__all__ = ["SphereTrainer", "train_sphere"]

log = get_logger("sphere")


class SphereTrainer(DomainSearchSteps):
    """The data, the model, the network and the optimiser of one run (module docstring)."""

    def __init__(self, cfg: SphereConfig, device: torch.device | None = None) -> None:
        self.cfg = cfg
        self.dist = get_dist()
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        opened = open_particles(
            cfg, "cryoSPHERE", poses_needed="needs poses (a refined .star/.cs or --poses); without them run "
            "`cryohet train drgnai` first and `cryohet export` its poses",
        )  # fmt: skip
        self.invert, self.contrast, self.dataset = opened.invert, opened.contrast, opened.dataset
        self.box, self.apix, self.n = opened.box, opened.apix, opened.n
        self.residues = load_residues(cfg, self.box, self.apix)
        self.fit = self._check_model()
        self.band = FourierBand.disc(self.box, self.apix, device=self.device)
        self.likelihood = WeightedL2.white_noise(self.band)
        self.net = build_network(cfg, self.residues, self.box, self.apix).to(self.device)
        self.scale = self._initial_scale()
        with torch.no_grad():
            self.net.log_scale.fill_(math.log(self.scale))
        if cfg.load is not None:  # warm start: another run's network (encoder, decoder, segmentation)
            weights, path = load_weights(cfg.load, "sphere", "network", device=str(self.device))
            try:
                self.net.load_weights(weights)
            except RuntimeError as err:
                raise weights_mismatch(path, err) from None
            log.info("network weights from %s", path)
        seg = list(self.net.segmentation.parameters())
        seg_ids = {id(p) for p in seg}
        rest = [p for p in self.net.parameters() if id(p) not in seg_ids]
        self.opt = torch.optim.Adam(
            [{"params": rest, "lr": cfg.optim.lr_network}, {"params": seg, "lr": cfg.optim.lr_segmentation}]
        )
        self.latents = (
            LatentTable(self.n, cfg.zdim, seed=cfg.seed, device=self.device) if cfg.encoder == "autodecode" else None
        )
        self.bonded = torch.as_tensor(self.residues.bonded_to_next, device=self.device)
        self.targets: BodyTargets | None = None
        self.targets_epoch = -1
        self.pairs = clash_pairs(self.net.base_A).to(self.device)
        self.loader = BatchedParticleLoader(
            self.dataset, cfg.optim.batch_size, shuffle=True, seed=cfg.seed, num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda", rank=self.dist.rank, world_size=self.dist.world_size,
        )  # fmt: skip

    # -- before training ----------------------------------------------------------------
    def consensus_map(self) -> np.ndarray:
        """The map the model is checked against: ``cfg.consensus`` (resampled to the run's box
        and pixel size when they differ), or the particles backprojected with their poses."""
        if self.cfg.consensus:
            vol, info = read_volume(self.cfg.consensus)
            if vol.ndim != 3 or len(set(vol.shape)) != 1:
                raise InputError(f"{self.cfg.consensus}: a consensus map must be a cubic volume, got {vol.shape}")
            apix_in = float(info.apix) if info.apix else self.apix
            if vol.shape[0] != self.box or abs(apix_in - self.apix) > 1e-3 * self.apix:
                vol = resample_volume(torch.as_tensor(vol, dtype=torch.float32), apix_in, self.box, self.apix).numpy()
            return np.asarray(vol, dtype=np.float32)
        return reconstruct_particles(self.dataset, device=self.device, seed=self.cfg.seed).full.cpu().numpy()

    def _check_model(self) -> ModelMapFit:
        fit = check_model_in_map(self.residues, self.consensus_map(), self.apix, name=str(self.cfg.model))
        r = self.residues
        log.info("%s: %d residues (%d movable, chains %s); correlation with the consensus %.2f, FSC 0.5 at %.1f Å",
                 Path(self.cfg.model).name, len(r), int(r.movable.sum()), ",".join(r.chains), fit.correlation,
                 fit.fsc_05_A)  # fmt: skip
        return fit

    @torch.no_grad()
    def _initial_scale(self, n_images: int = 256) -> float:
        """Least-squares amplitude of the input model's images against the data (same for all ranks)."""
        rows = np.linspace(0, self.n - 1, min(n_images, self.n)).round().astype(np.int64)
        num = den = 0.0
        mix = self.net.mixture(self.net.base_A)
        for a in range(0, len(rows), 64):
            bb = prepare_batch(self.dataset.get_batch(rows[a : a + 64]), self.band, self.device)
            model = model_images(mix, bb.rotations, bb.band, bb.filters) / math.exp(float(self.net.log_scale))
            w = bb.band.weights
            num += float((w * (model.conj() * bb.observed).real).sum())
            den += float((w * model.abs() ** 2).sum())
        if not num > 0:
            raise InputError(
                f"{self.cfg.model}: the model's projections anti-correlate with the images; the contrast sign is "
                "probably wrong (pass --invert or --no-invert)"
            )
        return num / den

    # -- epochs ---------------------------------------------------------------------------
    def weights(self, epoch: int) -> ObjectiveWeights:
        """The paper's annealed KL weights at ``epoch`` and the restraint weights."""
        progress_ = epoch / max(1, self.cfg.epochs)
        b = linear_beta(progress_)
        return ObjectiveWeights(
            beta_z=b, beta_segmentation=b, beta_proportions=cyclic_beta(progress_),
            continuity=self.cfg.continuity, clash=self.cfg.clash, body=self.body_weight(epoch),
            rigidity=self.cfg.domain_rigidity if self.targets is not None and self.targets_epoch >= 0 else 0.0,
            latent_ring=self.cfg.domain_latent_ring * self.body_weight(epoch) / max(self.cfg.domain_search_weight,
                                                                                    1e-12),
        )  # fmt: skip

    def search_epochs(self) -> list[int]:
        """The epochs at whose start the domains are searched (``domain_search_at``)."""
        return sorted({int(round(f * self.cfg.epochs)) for f in self.cfg.domain_search_at})

    def body_weight(self, epoch: int) -> float:
        """The pull towards the last search's targets: ``domain_search_weight`` falling linearly
        to 0 over a fifth of the run."""
        if self.targets is None or self.targets_epoch < 0:
            return 0.0
        span = max(1.0, 0.2 * self.cfg.epochs)
        return self.cfg.domain_search_weight * max(0.0, 1.0 - (epoch - self.targets_epoch) / span)

    def radius_px(self, epoch: int) -> float:
        """Band radius (Fourier px) of the data term at ``epoch``: frequency marching from the
        radius of ``cfg.start_resolution_A`` to Nyquist over the first half of the run (the
        half over which the KL weights rise), then Nyquist."""
        start = min(self.box / 2, max(4.0, self.box * self.apix / self.cfg.start_resolution_A))
        t = min(1.0, epoch / max(1.0, 0.5 * self.cfg.epochs))
        return start + (self.box / 2 - start) * t

    def train_epoch(self, epoch: int) -> dict:
        # the reparameterisation and segmentation draws of an epoch depend on (seed, epoch,
        # rank) alone, so a resumed run draws what an uninterrupted one would
        torch.manual_seed((self.cfg.seed * 1_000_003 + epoch * 7_919 + self.dist.rank) % 2**63)
        if epoch in self.search_epochs() and epoch != self.targets_epoch:
            self.search_bodies(epoch)
        self.net.train()
        sub = self.band.lowpass(min(1.0, self.radius_px(epoch) / (self.box / 2)))
        likelihood = self.likelihood.on(sub)
        self.loader.set_epoch(epoch)
        world = self.dist.world_size
        sizes = self.loader.sampler.global_batch_sizes() if self.dist.enabled else None
        weights = self.weights(epoch)
        totals = torch.zeros(8, dtype=torch.float64)
        it = progress(self.loader, total=len(self.loader), description=f"epoch {epoch + 1}", unit="batch")
        for step, batch in enumerate(it):
            bb = prepare_batch(batch, self.band, self.device).restrict(sub)
            z = self.latents.batch(bb.index) if self.latents is not None else None
            images = batch.images.to(self.device, non_blocking=True) if z is None else None
            self.opt.zero_grad(set_to_none=True)
            if len(bb):
                terms = batch_objective(self.net, bb, images, likelihood, weights, self.n, self.bonded,
                                        self.pairs, z=z, targets=self.targets)  # fmt: skip
                scale = 1.0 if sizes is None else len(bb) * world / float(sizes[step])
                (terms.loss * scale).backward()
                totals += torch.tensor(
                    [float(terms.data.sum()), float(terms.kl_z.sum()), float(terms.continuity.sum()),
                     float(terms.clash.sum()), float(len(bb)), float(terms.body.sum()), float(terms.rigidity.sum()),
                     float(terms.latent_ring.sum())],
                    dtype=torch.float64,
                )  # fmt: skip
            if self.dist.enabled:
                self._average_gradients()
            self.opt.step()
            if z is not None and z.grad is not None:
                self.latents.step(bb.index, z.grad / world if world > 1 else z.grad, self.cfg.optim.lr_latents)
            if self.latents is not None:
                self.latents.sync_rows(bb.index)
        if self.dist.enabled:
            all_reduce_sum_(totals)
        n = max(1.0, float(totals[4]))
        return {
            "data": float(totals[0]) / n,
            "kl_z": float(totals[1]) / n,
            "continuity_A2": float(totals[2]) / n,
            "clash_A2": float(totals[3]) / n,
            "body_pull_A2": float(totals[5]) / n,
            "body_weight": weights.body,
            "body_rigidity_A2": float(totals[6]) / n,
            "latent_ring": float(totals[7]) / n,
            "latent_ring_weight": weights.latent_ring,
            "beta": weights.beta_z,
            "radius_px": self.radius_px(epoch),
            "n_images": int(n),
        }

    def _average_gradients(self) -> None:
        """Mean of every parameter's gradient over ranks (zeros where a rank had none)."""
        average_gradients(self.net.parameters())

    # -- after training -------------------------------------------------------------------
    @torch.no_grad()
    def latent_means(self, chunk: int = 256) -> np.ndarray:
        """``(N, zdim)``: the encoder's means of every image (or the latent table)."""
        if self.latents is not None:
            return self.latents.z.detach().cpu().numpy().astype(np.float32)
        self.net.eval()
        out = []
        for a in range(0, self.n, chunk):
            images = self.dataset.get_batch(np.arange(a, min(self.n, a + chunk))).images.to(self.device)
            out.append(self.net.encoder(images)[0].cpu())
        return torch.cat(out).numpy().astype(np.float32)

    # -- state ----------------------------------------------------------------------------
    def snapshot(self, run) -> None:
        """The run's model files as they are after this epoch (:mod:`cryohet.training.snapshots`)."""
        write_model_files(self, run)

    def get_state(self) -> dict:
        state = {"network": self.net.state_dict(), "optimizer": self.opt.state_dict()}
        if self.latents is not None:
            state["latents"] = self.latents.state_dict()
        if self.targets is not None:
            state["body_targets"] = {**self.targets.state_dict(), "epoch": self.targets_epoch}
        return state

    def set_state(self, state: dict) -> None:
        self.net.load_weights(state["network"])
        self.opt.load_state_dict(state["optimizer"])
        if self.latents is not None:
            self.latents.load_state_dict(state["latents"])
        if "body_targets" in state:
            self.targets = BodyTargets.from_state(state["body_targets"], self.device)
            self.targets_epoch = int(state["body_targets"]["epoch"])


def copy_input_model(source: AtomicModel | str | Path, run_dir: Path) -> Path:
    """The run's own copy of the input model (``input_model.<suffixes>``), so that the run
    reloads and writes models after the original file moved."""
    import shutil

    src = Path(source.source if isinstance(source, AtomicModel) else source)
    suffixes = "".join(s for s in src.suffixes[-2:] if s.lower() in (".pdb", ".cif", ".mmcif", ".ent", ".gz"))
    dst = run_dir / f"input_model{suffixes or '.pdb'}"
    if not dst.exists():
        shutil.copyfile(src, dst)
    return dst


def train_sphere(cfg: SphereConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Train cryoSPHERE into ``cfg.out``; returns the run directory."""
    with RunSession(
        cfg.out, resume=resume, overwrite=overwrite, label="sphere", device=cfg.device, protect=config_input_paths(cfg)
    ) as session:
        cfg = session.reconcile(cfg)
        session.epoch_fields = ("--epochs",)
        trainer = SphereTrainer(cfg, device=session.device)
        resolved = cfg.model_copy(deep=True)
        resolved.box = trainer.box
        resolved.invert = trainer.invert
        r, fit = trainer.residues, trainer.fit
        info = {
            "apix": trainer.apix, "n_particles": trainer.n, "image_std": float(trainer.dataset.std),
            "residues": len(r), "movable_residues": int(r.movable.sum()), "atoms": len(r.atoms),
            "segments_per_chain": dict(zip(_movable_chains(r), trainer.net.segmentation.share)),
            "model_correlation": round(fit.correlation, 4), "model_fsc05_A": round(float(fit.fsc_05_A), 2),
            "amplitude_scale": trainer.scale,
        }  # fmt: skip
        if trainer.contrast is not None:
            info["contrast_z"] = round(trainer.contrast.z, 2)
        session.save_config(resolved, info)
        if session.is_main:
            copy_input_model(cfg.model, session.path)
        log.info("%d particles at box %d (%.3g Å/px); %d segments over chains %s; %d epochs", trainer.n, trainer.box,
                 trainer.apix, cfg.segments, ",".join(_movable_chains(r)), cfg.epochs)  # fmt: skip
        session.train(trainer, cfg.epochs)
        write_outputs(trainer, session)
        session.complete(epochs=cfg.epochs)
    return session.path


def _movable_chains(r: ResidueModel) -> list[str]:
    return list(dict.fromkeys(np.asarray(r.chain_ids)[r.movable].tolist()))
