"""HetACUMN's latent seed (ours; ``latent_init`` subspace): the field first learns at each
image's coordinates in a linear subspace of the heterogeneity, and the encoder learns to
predict them; then the encoder's latents take over.

An amortised encoder trained by reconstruction alone finds the conformation late or not at
all at low SNR: on simulated igg-1d (SNR 0.05) its latent's k-means ARI was 0.001 after 12
amortised epochs, while a linear subspace fitted at the searched poses (3DVA-like
probabilistic PCA, :func:`~cryohet.reconstruction.linear_subspace.seed_latents_at_poses`)
already predicts the state (what DRGN-AI's ``latent_init`` seeds its table with). So,
once the run's poses are known (after the search, at the start of the warm start's
encoder epoch; with given poses, at the start of an encoder epoch of the seed's own,
:meth:`LatentSeed.fit_encoder`) every particle gets its subspace coordinates ``z_seed``
(std :data:`~cryohet.reconstruction.linear_subspace.SEED_LATENT_STD`). The encoder learns
them (``weight * |E_z(image) - z_seed|^2``) in the encoder epoch and in the first
``latent_init_epochs`` amortised epochs, and in those epochs task 1 decodes the
seed in place of the encoder's mean (plus the encoder's std times a normal draw, so that
the std is learnt too), and task 2 trains poses only, from renders at the batch's seed
latents and, for its prior draws, at the seed latents of random particles (N(0, I) is not
the seed's scale). On igg-1d (SNR 0.05, box 32) the encoder's k-means ARI (k=20) fell
from 0.139 to 0.107 over a 4-epoch hold with task 2's latent term and N(0, I) draws,
to 0.116 with seed draws, and stayed at 0.136-0.140 without the latent term: renders
from a field that is only learning what the seed means carry little of it, and asking
the encoder to read it from them unteaches it. The field learns the seed's meaning the way the
semi-amortised field learns at the searched poses, and the encoder is not dragged by a
data term whose field does not yet use ``z`` (pulled beside it, on the pinned two-state
set, the encoder's latent stayed 0.35 from a seed it learns alone in 200 steps). After
them task 1 and task 2 alone shape the encoder's latent (the seed is a start, as in
DRGN-AI, not a target). The encoder epoch is what teaches it: beside task 1 and task 2
in the held epochs the encoder did not learn the seed (given poses, igg-1d box 32: its
error stayed at 1.94 of the seed's 2.0 over 4 epochs; the data term's gradients through
the std and task 2's are far larger), alone it learnt it in ~2 000 steps (error 0.06,
ARI 0.52 against the seed's 0.56).

It learnt each training particle's seed, not the function that makes it: trained on
1 000 of 4 000 particles (igg-1d SNR 0.05, given poses) its ARI was 0.31 on them and 0.000
on the other 3 000, and an encoder trained on the seeds alone (no field) had error 0.06 on
its particles and 2.8 on the others (the seed's variance 2.0); the seed depends on the
image through its pose, which the encoder does not see. So with ``latent_readout`` (method
version 9) the latent is the encoder's own output plus the image's coordinates in the
seed's subspace at the image's pose (:class:`~cryohet.reconstruction.linear_subspace.SubspaceReadout`,
the EM's E-step kept with the run: mean, components, band and noise; a k x k solve per
image, no gradient): at the poses the seed was fitted at it *is* the seed, so the encoder's
part starts near 0 and task 1 and task 2 shape it from there; new particles get their own
coordinates at their poses (given, or the encoder's, refined or searched), in the space
the field decodes.

The encoder's own part then learnt the training particles again, not a function of the
image: in version-9 runs on 1 000 / 3 000 splits (box 32) it classified simulated
assembly's trained particles at ARI 0.284 (k=10) and the unseen at 0.153, igg-1d's at
0.019 and 0.001 (k=20), and the coordinates alone classified the unseen better than the
sum (assembly 0.493 against 0.401, igg-1d 0.209 against 0.168, at the same refined
poses). So by default (method version 10, ``latent_encoder_part`` false) the latent *is*
the coordinates at the pose: the encoder predicts the poses (and the latent's spread), the
readout is the amortised E-step of the conformation, and with given poses the seed needs
no encoder epoch (the latent is the seed at the poses it was fitted at).

The seed is a per-image table outside DDP, kept in the checkpoints (a run resumed after
the seed does not fit it again; one killed before its epoch's checkpoint fits the same
seed again: the fit is deterministic given the poses and the run's seed).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ...console import get_logger, progress
from ...reconstruction.linear_subspace import SubspaceReadout, SubspaceSettings, seed_subspace_at_poses
from ...training.distributed import average_gradients
from .warm_start import latent_distill_loss

__all__ = ["LatentSeed", "own_latent", "read_latents"]

log = get_logger("hetacumn")


class LatentSeed:
    """The seed latents of one run and the epochs in which they hold.

    ``seed_epoch``: the epoch at whose start the seed is fitted; the seed holds from it to
    the end of the ``latent_init_epochs``-th epoch from ``first_amortised_epoch``. ``seed_epoch`` None:
    no poses to fit it at (ab initio without search epochs), no seed."""

    def __init__(self, trainer, seed_epoch: int | None, first_amortised_epoch: int) -> None:
        cfg = trainer.cfg
        self.enabled = cfg.latent_init == "subspace" and seed_epoch is not None
        self.seed_epoch, self.first_amortised_epoch = seed_epoch, first_amortised_epoch
        self.weight, self.hold_epochs = cfg.latent_init_weight, cfg.latent_init_epochs
        self.device = trainer.device
        self.z: torch.Tensor | None = None  # (N, zdim) once fitted
        self.keep_readout = self.enabled and cfg.latent_readout
        self.encoder_part = cfg.latent_encoder_part  # False: the readout alone is the latent
        self.readout: SubspaceReadout | None = None  # the subspace's E-step (latent_readout), once fitted

    def holds(self, epoch: int) -> bool:
        """Whether the seed holds in ``epoch``: the encoder learns it (and task 1 decodes it)."""
        return self.enabled and self.seed_epoch <= epoch < self.first_amortised_epoch + self.hold_epochs

    def weight_at(self, epoch: int) -> float:
        """The weight of the encoder's error on the seed in ``epoch`` (0 when it does not hold)."""
        return self.weight if self.holds(epoch) else 0.0

    def fit_if_due(self, trainer, epoch: int) -> float | None:
        """Fit the seed at the start of its epoch (or of a later one, resumed without it) at
        the run's poses; returns the seconds it took, or None when nothing was fitted."""
        if self.z is not None or not self.holds(epoch):
            return None
        t0 = time.perf_counter()
        cfg = trainer.cfg
        if cfg.poses_mode == "fixed":
            rotations, shifts_A = trainer.dataset.meta.rotations, trainer.dataset.meta.shifts_A
        else:
            rot, shifts = trainer.searched.poses()
            rotations, shifts_A = rot.cpu().numpy(), shifts.cpu().numpy()
        settings = SubspaceSettings(components=cfg.zdim, batch_size=4 * cfg.optim.batch_size, seed=cfg.seed)
        z, readout = seed_subspace_at_poses(trainer.dataset, rotations, shifts_A, settings,
                                            cfg.latent_init_iterations, trainer.device)  # fmt: skip
        self.z = torch.from_numpy(z).to(trainer.device)
        self.readout = readout if self.keep_readout else None
        seconds = time.perf_counter() - t0
        log.info("latent seed: a %d-component linear subspace at the %s poses (%.0f s)", cfg.zdim,
                 "given" if cfg.poses_mode == "fixed" else "searched", seconds)  # fmt: skip
        return seconds

    def read(self, z_encoder: torch.Tensor, images, ctf_params, rotations, shifts_A) -> torch.Tensor:
        """The latent means: the encoder's own ``z_encoder`` ``(B, zdim)`` plus, with the readout,
        the images' subspace coordinates at the poses (rotations ``(B, 3, 3)`` or per head
        ``(B, H, 3, 3)``, RELION ``A``; origins ``(B, 2)``/``(B, H, 2)`` Å; then ``(B, H, zdim)``)."""
        return read_latents(self.readout, z_encoder, images, ctf_params, rotations, shifts_A, self.encoder_part)

    def fit_encoder(self, trainer, steps: int) -> dict:
        """With given poses, the seed's encoder epoch: ``steps`` (> 0) steps in which the encoder
        learns the seed alone (the field untouched). Returns the epoch's log (the mean error
        on the seed over the steps and over the last tenth of them)."""
        trainer.encoder.train()
        batches = trainer.loader.endless()
        errors = np.zeros(steps)
        for step in progress(range(steps), total=steps, description="seed fit", unit="step"):
            b = next(batches).to(trainer.device, non_blocking=True)
            z_mean = self.read(trainer.encoder(b.images).z_mean, b.images, b.ctf_params, b.rotations, b.shifts_A)
            error = self.loss(z_mean, b.index)
            trainer.opt.zero_grad(set_to_none=True)
            (self.weight * error).backward()
            average_gradients(list(trainer.encoder.parameters()))
            trainer.opt.step()
            errors[step] = float(error.detach())
        last = errors[-max(1, steps // 10) :]
        return {"phase": "encoder", "latent_seed_error": float(errors.mean()),
                "latent_seed_error_end": float(last.mean()), "steps": steps}  # fmt: skip

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """The seed latents ``(B, zdim)`` of the images ``index (B,)`` (dataset rows)."""
        return self.z[index.to(self.z.device)]

    def loss(self, z_mean: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Mean ``|E_z(image) - z_seed|^2`` over a batch: the encoder's latent means
        ``(B, zdim)`` of the images ``index (B,)`` (dataset rows) against their seed."""
        return latent_distill_loss(z_mean, self.batch(index).to(z_mean.device))

    def state_dict(self) -> dict:
        state = {} if self.z is None else {"z": self.z.detach().cpu()}
        if self.readout is not None:
            state["readout"] = self.readout.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.z = state["z"].to(self.device) if "z" in state else None
        readout = state.get("readout")
        self.readout = SubspaceReadout.from_state_dict(readout, self.device) if readout and self.keep_readout else None


def own_latent(z_encoder: torch.Tensor, readout: SubspaceReadout | None, encoder_part: bool) -> torch.Tensor:
    """The encoder's own part of the latent: ``z_encoder``, or zeros where a ``readout`` gives
    the latent alone (``latent_encoder_part`` false)."""
    return z_encoder if encoder_part or readout is None else torch.zeros_like(z_encoder)


def read_latents(readout: SubspaceReadout | None, z_encoder: torch.Tensor, images, ctf_params, rotations,
                 shifts_A, encoder_part: bool = True) -> torch.Tensor:  # fmt: skip
    """``z_encoder`` plus the images' coordinates in ``readout``'s subspace at the poses
    (:meth:`LatentSeed.read`); ``z_encoder`` as it is without a readout (with per-head poses,
    expanded to ``(B, H, zdim)``). The coordinates carry no gradient (the poses are detached).
    ``encoder_part`` False (``latent_encoder_part``): with a readout, the coordinates alone."""
    z_encoder = own_latent(z_encoder, readout, encoder_part)
    if rotations.dim() == 3:
        return z_encoder if readout is None else z_encoder + readout(images, ctf_params, rotations, shifts_A)
    heads = rotations.shape[1]
    if readout is None:
        return z_encoder[:, None].expand(-1, heads, -1)
    coords = [readout(images, ctf_params, rotations[:, h], shifts_A[:, h]) for h in range(heads)]
    return z_encoder[:, None] + torch.stack(coords, dim=1)
