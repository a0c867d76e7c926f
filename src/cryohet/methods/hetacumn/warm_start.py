"""HetACUMN's ab initio warm start (ours): the shared pose search gives the first poses.

An encoder cannot learn poses from a field that knows no structure, and a field cannot
learn structure from an encoder that knows no poses: trained together from scratch they
settled on a wrong, blurred solution (median pose error 123° on the test set). The warm
start breaks the circle the way DRGN-AI does, with the shared pieces
(:mod:`cryohet.pose.abinit_schedule`, :mod:`cryohet.pose.field_search`):

* **pretrain** epochs: random rotations, zero shifts, the field learns the rotational average;
* **search** epochs: each window of batches is searched against the field cached as
  Fourier grids, on a band marching from 32 Å to 12 Å resolution; the field learns at the
  found poses and the encoder learns to predict them (best head, squared Frobenius +
  shift error);
* one **encoder** epoch: the field frozen, the encoder trained for ``encoder_steps`` steps
  on images rendered from it at random poses (task 2, from the field cached as grids, so
  a step costs about what the encoder does) and on the real images at their searched
  poses (each turned in plane by a random angle, its pose with it, when
  ``in_plane_augment``): an encoder needs thousands of steps to learn poses, far more
  than the search epochs give.

The warm start's field takes each image's latent from a per-image table, auto-decoded
as DRGN-AI's (:class:`~cryohet.pose.search_tables.SearchTables`, ``search_latents``), and
the search scores each image against the field at the k-means centre of its latent. The
table serves the search: the encoder learns the searched poses, and the table's latents
only when ``latent_distill_weight`` > 0 (off: on one-state data it made the encoder
memorise the particles). In the encoder epoch, task 2 renders from the grids at the
centres, each centre the latent target of its renders. No KL and no task 2 in the
search epochs. One design failed, one was improved on:

* the *encoder's* latent in the field: the latent took up the viewing direction (the
  encoder's trunk was learning poses) and the search went astray (one state, D=32:
  median error of the searched poses 94° against 3° with a homogeneous field);
* a homogeneous field (``z = 0``, method version 3): on simulated assembly (2 000 images,
  10 states) its search posed 81-82 % of the particles within 15° modulo the dimer's
  mate, the table's 86 %, and the run's latent ARI was 0.40 against 0.43-0.45.

Heterogeneity is then learnt in the amortised epochs, where task 2 keeps the viewing
direction out of the encoder's latent.

Then the encoder's poses take over: the amortised epochs never search again, and new
particles are inferred by the encoder alone.
"""

from __future__ import annotations

import numpy as np
import torch

from ...console import progress
from ...imaging.in_plane import rotate_images, rotate_poses_in_plane
from ...pose.field_search import field_sources
from ...training.distributed import average_gradients
from .pose_task import pose_task_loss, render_at_random_poses

__all__ = [
    "SearchedPoses",
    "fit_encoder",
    "in_plane_views",
    "latent_distill_loss",
    "search_centres",
    "search_window",
]


class SearchedPoses:
    """Poses found for the batches of one window: ``rotations (B, 3, 3)`` RELION ``A`` and
    origins ``shifts_A (B, 2)`` per batch, in the batches' order (already in ``trainer.tables``)."""

    def __init__(self, rotations: list[torch.Tensor], shifts_A: list[torch.Tensor]) -> None:
        self.rotations, self.shifts_A = rotations, shifts_A


def search_centres(trainer) -> np.ndarray:
    """The latents ``(k, zdim)`` the warm start's field is cached at: the k-means centres of
    the latent table (``search_latents``), or the one centre ``z = 0`` (homogeneous)."""
    centres = trainer.tables.cluster_centres(trainer.cfg.warm_start.search.clusters, trainer.cfg.seed)
    return np.zeros((1, trainer.cfg.zdim), np.float32) if centres is None else centres


@torch.no_grad()
def search_window(trainer, batches: list, radius_px: float, centres: np.ndarray) -> SearchedPoses:
    """Search the images of ``batches`` together against ``trainer``'s field as it is now,
    cached once for the window at ``centres`` (:func:`search_centres`), each image against
    the centre nearest its table latent; the poses go into ``trainer.tables``."""
    cfg = trainer.cfg.warm_start.search
    sources = field_sources(trainer.field, radius_px, trainer.box, centres, **cfg.grid_options())
    seen = [b.to(trainer.device, non_blocking=True) for b in batches]
    sizes = [len(b.images) for b in seen]
    index = torch.cat([b.index for b in seen]).to(trainer.device)
    images = torch.cat([b.images for b in seen])
    ctf_params = torch.cat([b.ctf_params for b in seen])
    band = trainer.band
    chunk = cfg.chunk_images or (256 if trainer.device.type == "cuda" else 32)
    res = trainer.tables.search(
        index, band.observed(images), band.filters(ctf_params, None), sources, trainer.likelihood, trainer.schedule,
        radius_px, chunk,
    )  # fmt: skip
    return SearchedPoses(list(res.rotations.split(sizes)), list(res.shifts_A.split(sizes)))


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
    """The warm start's last epoch: the field frozen (cached as Fourier grids out to the
    search's end radius at :func:`search_centres`), the encoder trained for ``steps`` steps
    on images rendered from one grid a step at random poses (task 2's pose error, and the
    grid's centre as the latent; none when task 2's weight is 0, the ablation) and on the
    real images at their searched poses and table latents. Returns the epoch's log."""
    cfg = trainer.cfg
    ws, pt = cfg.warm_start, cfg.pose_task
    grids, centres = field_sources(trainer.field, trainer.schedule.radius_end_px, trainer.box,
                                   search_centres(trainer), **ws.search.grid_options())  # fmt: skip
    table = trainer.tables.latents
    limit = 0.5 * trainer.encoder.max_shift_A
    real = trainer.loader.endless()
    trainer.encoder.train()
    totals = np.zeros(6)
    for step in progress(range(steps), total=steps, description="encoder fit", unit="step"):
        # a curriculum: the poses of clean renders first, then the data's noise level
        noise_scale = pt.noise_start + (1.0 - pt.noise_start) * min(1.0, 2.0 * step / max(1, steps))
        b = next(real).to(trainer.device, non_blocking=True)
        rot_err = lat_err = torch.zeros((), device=trainer.device)
        if pt.weight > 0:  # --pose-task 0 (the ablation): the encoder learns the searched poses only
            n = max(1, int(round(pt.images * len(b.images))))
            pick = torch.as_tensor(rng.integers(0, len(b.images), n), device=trainer.device)
            g = int(rng.integers(0, len(grids)))
            images, rot, shifts = render_at_random_poses(
                grids[g], trainer.render_band, n, rng, ctf_params=b.ctf_params[pick], max_shift_A=limit,
                noise_std=trainer.noise_std * noise_scale,
            )  # fmt: skip
            # the centres' latents are the table's, not the seed's: no latent target beside the seed
            z_rendered = None if table is None or trainer.seed_weight > 0 else centres[g : g + 1].expand(n, -1)
            rot_err, lat_err = pose_task_loss(trainer.encoder(images), rot, shifts, limit, z_rendered, pt.shift_weight)
        found_rot, found_shift = trainer.searched.poses(b.index)
        searched = found_rot, found_shift  # the images' as they are (the seed's latent is read at them)
        real_images = b.images
        if ws.in_plane_augment:
            real_images, found_rot, found_shift = in_plane_views(b.images, found_rot, found_shift, rng)
        learnt = ~held_out(b.index, ws.holdout).to(trainer.device)
        posed = trainer.encoder(real_images)
        distill, _ = pose_task_loss(posed, found_rot, found_shift, trainer.encoder.max_shift_A, None, pt.shift_weight,
                                    learnt)  # fmt: skip
        latent_distill = seed_err = torch.zeros((), device=trainer.device)
        distil_table = table is not None and ws.latent_distill_weight > 0
        if distil_table or trainer.seed_weight > 0:  # latents are learnt from the images as they are
            as_they_are = trainer.encoder(b.images) if ws.in_plane_augment else posed
            if distil_table:
                latent_distill = latent_distill_loss(as_they_are.z_mean, table.z[b.index.to(table.z.device)])
            if trainer.seed_weight > 0:
                z_mean = trainer.latent_seed.read(as_they_are.z_mean, b.images, b.ctf_params, *searched)
                seed_err = trainer.latent_seed.loss(z_mean, b.index)
        loss = (
            rot_err
            + pt.latent_weight * lat_err
            + ws.distill_weight * distill
            + ws.latent_distill_weight * latent_distill
            + trainer.seed_weight * seed_err
        )
        trainer.opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(list(trainer.encoder.parameters()))
        trainer.opt.step()
        losses = (rot_err, lat_err, distill, latent_distill, seed_err)
        totals += [*(float(x.detach()) for x in losses), 1.0]
    s = max(1.0, totals[5])
    stats = {"phase": "encoder", "task2_rotation_error": totals[0] / s, "distill_error": totals[2] / s,
             "steps": int(totals[5])}  # fmt: skip
    if table is not None and trainer.seed_weight <= 0:
        stats["task2_latent_error"] = totals[1] / s
    if table is not None and ws.latent_distill_weight > 0:
        stats["latent_distill_error"] = totals[3] / s
    if trainer.seed_weight > 0:
        stats["latent_seed_error"] = totals[4] / s
    return stats


def latent_distill_loss(z_mean: torch.Tensor, z_table: torch.Tensor) -> torch.Tensor:
    """Mean squared distance ``|E_z(image) - z_table|^2`` between the encoder's latent means
    ``(B, zdim)`` and the warm start's table latents of the same images (no gradient to the table)."""
    return ((z_mean - z_table.detach()) ** 2).sum(-1).mean()
