"""What a finished DRGN-AI run leaves in its run directory (besides config and log).

* ``model.pt`` — weights only: ``field`` (the hypervolume's ``state_dict``: its weights
  averaged over the joint epochs' last steps, ``field_average_epochs``);
* ``latents.npy`` — ``(N, zdim)``; a homogeneous run (``zdim 0``) writes zeros ``(N, 1)``;
* ``poses.npz`` — the estimated (or kept) poses: RELION ``A`` and origins in Å;
* ``map.mrc`` — the map at the mean latent (the map of a homogeneous run);
* ``extras/pose_search.npz`` — per particle ``best_score`` (the likelihood at the pose the
  last search found, on its band; lower fits better) and ``score_z`` (robust z-score of
  that score: large values flag images that fit no pose, e.g. junk, for ``cryohet select``);
* ``extras/map_check.npz`` — the radial density profile of ``map.mrc``, its ``skewness`` and
  ``hollow``: 1 when the density goes mostly negative (the sign of inverted contrast).
"""

from __future__ import annotations

import numpy as np
import torch

from ...console import get_logger
from ...io.mrc import write_volume
from ...metrics.map_checks import is_hollow, radial_profile, skewness
from ...training.checkpoint import save_checkpoint

__all__ = ["write_outputs", "write_model_files"]

log = get_logger("drgnai")


def write_model_files(trainer, run) -> np.ndarray:
    """``model.pt`` (the field's weights), ``latents.npy`` and ``poses.npz`` into ``run`` (a
    run directory or a view of one epoch, :mod:`cryohet.training.snapshots`); returns the latents."""
    with trainer.output_field() as field:
        weights = {k: v.detach().cpu().clone() for k, v in field.state_dict().items()}
    save_checkpoint(run.model, {"field": weights})
    if trainer.latents is not None:
        z = trainer.latents.z.detach().cpu().numpy()
    else:
        z = np.zeros((trainer.n, 1), np.float32)
    run.save_latents(z)
    rot, shifts = trainer.poses.poses()
    run.save_poses(rot.cpu().numpy(), shifts.cpu().numpy())
    return z


def write_outputs(trainer, session) -> None:
    """Final weights, latents, poses, the map at the mean latent and the search scores (rank 0 writes)."""
    if not session.is_main:
        return
    run, apix = session.run, trainer.apix
    z = write_model_files(trainer, run)
    z_mean = None
    if trainer.latents is not None:
        z_mean = torch.as_tensor(z.mean(axis=0, keepdims=True), device=trainer.device)
    with torch.no_grad(), trainer.output_field() as field:
        vol = field.eval().to_volume(trainer.box, apix, z_mean).cpu().numpy().astype(np.float32)
    write_volume(run.path / "map.mrc", vol, apix)
    best = trainer.tables.best_scores.cpu().numpy()
    finite = np.isfinite(best)
    score_z = np.full_like(best, np.nan)
    if finite.any():
        med = np.median(best[finite])
        mad = np.median(np.abs(best[finite] - med)) * 1.4826 or 1.0
        score_z[finite] = (best[finite] - med) / mad
    run.save_extra("pose_search", best_score=best, score_z=score_z)
    hollow = is_hollow(vol)
    run.save_extra(
        "map_check", radial_profile=radial_profile(vol), skewness=np.array(skewness(vol)), hollow=np.array(int(hollow))
    )
    if hollow:
        log.warning(
            "map.mrc goes mostly negative (a hollow shell; skewness %.1f): the data's contrast sign is probably "
            "wrong; train again with --invert (or --no-invert)",
            skewness(vol),
        )
