"""What a finished CryoSPIRE run leaves in its run directory (besides config and log).

* ``model.pt`` — weights only: ``model_b`` (the part-aware mixture), ``model_a`` (coarse).
* ``latents.npy`` — (N, zdim), one row per particle in input order.
* ``poses.npz`` — the (fixed) poses used: RELION ``A`` and origins in Å.
* ``consensus.mrc`` — the homogeneous map the Gaussians were seeded from.
* ``extras/gaussians.npz`` — fine Gaussians at rest: ``centres_A`` (G, 3) (x, y, z) from
  the box centre, ``amplitudes``, ``sigmas_A``, ``part`` (G,), ``anchor_centres_A`` (K, 3).
* ``extras/part_motion.npz`` — per particle and part: ``rotations`` (N, K, 3, 3) about the
  anchor, ``translations_A`` (N, K, 3), ``occupancy`` (N, K) (amplitude-weighted mean gate).
* ``extras/stage_a.npz`` — coarse Gaussians and their part / motion-group labels.
"""

from __future__ import annotations

import numpy as np
import torch

from ...training.checkpoint import save_checkpoint
from ...training.per_image import gather_rows_into, my_rows

__all__ = ["write_outputs", "write_model_files", "part_motion_table"]


@torch.no_grad()
def part_motion_table(model_b, z: torch.Tensor, apix: float, batch: int = 1024) -> dict[str, np.ndarray]:
    """Rigid motion and occupancy of every part for latents ``z`` (N, zdim).

    In a distributed run each rank decodes its share of the rows and the table is gathered.
    """
    rows = my_rows(len(z))
    if len(rows) != len(z):
        mine = _part_motion_rows(model_b, z[torch.as_tensor(rows, device=z.device)], apix, batch)
        full = {k: np.zeros((len(z), *v.shape[1:]), v.dtype) for k, v in mine.items()}
        for k, v in mine.items():
            full[k][rows] = v
            gather_rows_into(full[k], rows)
        return full
    return _part_motion_rows(model_b, z, apix, batch)


@torch.no_grad()
def _part_motion_rows(model_b, z: torch.Tensor, apix: float, batch: int) -> dict[str, np.ndarray]:
    k = model_b.n_parts
    amps = torch.exp(model_b.log_amplitudes)
    onehot = torch.nn.functional.one_hot(model_b.anchor_of, k).to(amps.dtype) * amps[:, None]  # (G, K)
    rots, trans, occs = [], [], []
    for s in range(0, len(z), batch):
        zb = z[s : s + batch].float()
        r, t = model_b.part_motion(zb)
        occ = model_b.decode(zb).occupancy  # (b, G)
        rots.append(r.cpu())
        trans.append(t.cpu() * apix)
        occs.append(((occ @ onehot) / onehot.sum(dim=0).clamp_min(1e-12)).cpu())
    return {
        "rotations": torch.cat(rots).numpy().astype(np.float32),
        "translations_A": torch.cat(trans).numpy().astype(np.float32),
        "occupancy": torch.cat(occs).numpy().astype(np.float32),
    }


def write_model_files(trainer, run) -> None:
    """``model.pt`` (both stages' weights), ``latents.npy`` and ``poses.npz`` into ``run`` (a
    run directory or a view of one epoch); nothing before stage B (no heterogeneous model yet)."""
    if trainer.model_b is None:
        return
    save_checkpoint(run.model, {"model_b": trainer.model_b.state_dict(), "model_a": trainer.model_a.state_dict()})
    run.save_latents(trainer.latents.z.detach().cpu().numpy())
    meta = trainer.dataset.meta
    shifts = meta.shifts_A if meta.shifts_A is not None else np.zeros((len(meta), 2))
    run.save_poses(meta.rotations, shifts)


def write_outputs(trainer) -> None:
    """Final weights, latents, poses and method extras of a trained run (rank 0 writes)."""
    run, apix = trainer.run, trainer.apix
    mb, ma, parts = trainer.model_b, trainer.model_a, trainer.parts
    mb.eval()
    ma.eval()
    z = trainer.latents.z.detach()
    motion = part_motion_table(mb, z, apix)  # every rank: its share, gathered
    if not trainer.dist.is_main:
        return
    write_model_files(trainer, run)
    with torch.no_grad():
        run.save_extra(
            "gaussians",
            centres_A=(mb.base_centres_px() * apix).cpu().numpy(),
            amplitudes=torch.exp(mb.log_amplitudes).cpu().numpy(),
            sigmas_A=(mb.sigmas_px() * apix).cpu().numpy(),
            part=mb.anchor_of.cpu().numpy(),
            anchor_centres_A=(mb.anchor_centres_px * apix).cpu().numpy(),
        )
        run.save_extra(
            "stage_a",
            centres_A=(ma.centres_px * apix).cpu().numpy(),
            amplitudes=torch.exp(ma.log_amplitudes).cpu().numpy(),
            sigmas_A=(ma.sigmas_px * apix).cpu().numpy(),
            part=parts.labels,
            motion_group=parts.motion_groups,
            anchors=parts.anchors,
        )
    run.save_extra("part_motion", **motion)
