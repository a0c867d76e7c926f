"""HetACUMN's ab initio warm start (ours): the shared pose search gives the first poses.

An encoder cannot learn poses from a field that knows no structure, and a field cannot
learn structure from an encoder that knows no poses: trained together from scratch they
settled on a wrong, blurred solution (median pose error 123° on the test set). The warm
start breaks the circle the way DRGN-AI does, with the shared pieces
(:mod:`cryohet.pose.abinit_schedule`, :mod:`cryohet.pose.field_search`):

* **pretrain** epochs: random rotations, zero shifts, the field learns the rotational average;
* **search** epochs: each window of batches is searched against the field cached as a
  Fourier grid, on a band marching from 32 Å to 12 Å resolution; the field learns at the
  found poses and the encoder learns to predict them (best head, squared Frobenius +
  shift error);
* one **encoder** epoch: the field frozen, the encoder trained for ``encoder_steps`` steps
  on images rendered from it at random poses (task 2, from the field cached as a grid, so
  a step costs about what the encoder does) and on the real images at their searched
  poses (each turned in plane by a random angle, its pose with it, when
  ``in_plane_augment``): an encoder needs thousands of steps to learn poses, far more
  than the search epochs give.

The warm start's field is homogeneous (``z = 0``, no KL, no task 2 in the search epochs):
with the encoder's latent in the field, the latent took up the viewing direction (the
encoder's trunk was learning poses) and the search against the latent clusters went
astray (one state, D=32: median error of the searched poses 94° against 3° with the
homogeneous field). Heterogeneity is learnt in the amortised epochs, where task 2 keeps
the viewing direction out of the latent.

Then the encoder's poses take over: the amortised epochs never search again, and new
particles are inferred by the encoder alone.
"""

from __future__ import annotations

import numpy as np
import torch

from ...console import progress
from ...imaging.in_plane import rotate_images, rotate_poses_in_plane
from ...pose.field_search import field_sources, search_against_field
from ...training.distributed import average_gradients
from .pose_task import pose_task_loss, render_at_random_poses

__all__ = [
    "SearchedPoses",
    "fit_encoder",
    "in_plane_views",
    "search_window",
]


class SearchedPoses:
    """Poses found for the batches of one window: ``rotations (B, 3, 3)`` RELION ``A`` and
    origins ``shifts_A (B, 2)`` per batch, in the batches' order."""

    def __init__(self, rotations: list[torch.Tensor], shifts_A: list[torch.Tensor]) -> None:
        self.rotations, self.shifts_A = rotations, shifts_A


@torch.no_grad()
def search_window(trainer, batches: list, radius_px: float) -> SearchedPoses:
    """Search the images of ``batches`` together against ``trainer``'s field at ``z = 0`` as
    it is now (cached once for the window)."""
    cfg = trainer.cfg.warm_start.search
    sources = field_sources(trainer.field, radius_px, trainer.box, _homogeneous(trainer), **cfg.grid_options())
    seen = [b.to(trainer.device, non_blocking=True) for b in batches]
    sizes = [len(b.images) for b in seen]
    images = torch.cat([b.images for b in seen])
    ctf_params = torch.cat([b.ctf_params for b in seen])
    band = trainer.band
    chunk = cfg.chunk_images or (256 if trainer.device.type == "cuda" else 32)
    res = search_against_field(
        band.observed(images), band.filters(ctf_params, None), None, sources, trainer.likelihood, trainer.schedule,
        radius_px, chunk,
    )  # fmt: skip
    return SearchedPoses(list(res.rotations.split(sizes)), list(res.shifts_A.split(sizes)))


def _homogeneous(trainer) -> np.ndarray:
    """The one 'cluster centre' of the warm start: ``z = 0``."""
    return np.zeros((1, trainer.cfg.zdim), np.float32)


def held_out(index: torch.Tensor, share: float) -> torch.Tensor:
    """Which particles (``index (B,)``, rows of the dataset) the encoder never learns poses
    from: a fixed pseudo-random ``share`` of the rows, the same on every rank, epoch and
    resume (Knuth's multiplicative hash of the row)."""
    if share <= 0:
        return torch.zeros(index.shape, dtype=torch.bool, device=index.device)
    h = (index.to(torch.int64) * 2654435761) % 4294967296
    return h.to(torch.float64) / 4294967296.0 < share


def in_plane_views(
    images: torch.Tensor, rotations: torch.Tensor, shifts_A: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images turned, rotations turned, shifts_A turned)``: each image ``(B, D, D)`` turned
    in plane by a uniform random angle (:mod:`cryohet.imaging.in_plane`) and its pose
    (RELION ``A (B, 3, 3)``, origin ``shifts_A (B, 2)`` in Å) turned with it
    (:func:`~cryohet.imaging.in_plane.rotate_poses_in_plane`), so the encoder meets a
    particle at a new pose every time it learns it."""
    angles = torch.as_tensor(rng.uniform(0.0, 2 * np.pi, len(images)), dtype=images.dtype, device=images.device)
    turned_rotations, turned_shifts_A = rotate_poses_in_plane(rotations, shifts_A, angles)
    return rotate_images(images, angles), turned_rotations, turned_shifts_A


def fit_encoder(trainer, rng: np.random.Generator, steps: int) -> dict:
    """The warm start's last epoch: the field frozen (at ``z = 0``, cached as a Fourier grid
    out to the search's end radius), the encoder trained for ``steps`` steps on images
    rendered from it at random poses (task 2's pose error; none when task 2's weight is 0,
    the ablation) and on the real images at their searched poses. Returns the epoch's log."""
    cfg = trainer.cfg
    ws, pt = cfg.warm_start, cfg.pose_task
    grids, _ = field_sources(trainer.field, trainer.schedule.radius_end_px, trainer.box, _homogeneous(trainer),
                             **ws.search.grid_options())  # fmt: skip
    limit = 0.5 * trainer.encoder.max_shift_A
    real = _cycle(trainer.loader)
    trainer.encoder.train()
    totals = np.zeros(4)
    for step in progress(range(steps), total=steps, description="encoder fit", unit="step"):
        # a curriculum: the poses of clean renders first, then the data's noise level
        noise_scale = pt.noise_start + (1.0 - pt.noise_start) * min(1.0, 2.0 * step / max(1, steps))
        b = next(real).to(trainer.device, non_blocking=True)
        rot_err = lat_err = torch.zeros((), device=trainer.device)
        if pt.weight > 0:  # --pose-task 0 (the ablation): the encoder learns the searched poses only
            n = max(1, int(round(pt.images * len(b.images))))
            pick = torch.as_tensor(rng.integers(0, len(b.images), n), device=trainer.device)
            images, rot, shifts = render_at_random_poses(
                grids[0], trainer.render_band, n, rng, ctf_params=b.ctf_params[pick], max_shift_A=limit,
                noise_std=trainer.noise_std * noise_scale,
            )  # fmt: skip
            rot_err, lat_err = pose_task_loss(trainer.encoder(images), rot, shifts, limit, None, pt.shift_weight)
        found_rot, found_shift = trainer.searched.poses(b.index)
        real_images = b.images
        if ws.in_plane_augment:
            real_images, found_rot, found_shift = in_plane_views(b.images, found_rot, found_shift, rng)
        learnt = ~held_out(b.index, ws.holdout).to(trainer.device)
        distill, _ = pose_task_loss(trainer.encoder(real_images), found_rot, found_shift, trainer.encoder.max_shift_A,
                                    None, pt.shift_weight, learnt)  # fmt: skip
        loss = rot_err + pt.latent_weight * lat_err + ws.distill_weight * distill
        trainer.opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(list(trainer.encoder.parameters()))
        trainer.opt.step()
        totals += [float(rot_err.detach()), float(lat_err), float(distill.detach()), 1.0]
    s = max(1.0, totals[3])
    return {"phase": "encoder", "task2_rotation_error": totals[0] / s, "distill_error": totals[2] / s,
            "steps": int(totals[3])}  # fmt: skip


def _cycle(loader):
    epoch = 10_000
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1
