"""From stage A to stage B: seed the fine mixture, assign anchors, warm-start part motion.

The paper: the coarse model gives an "improved density map" that seeds the fine
Gaussians, and its latents initialise the fine latents. Ours, where it is silent:

* the map is the stage-A mixture at the *medoid* latent (the image latent nearest the
  mean, so the conformation is one real state even when the latent space is curved),
  with every Gaussian that is present in some state at full amplitude (occupancy gates
  ignored, Gaussians whose gate stays below 0.1 at all sampled latents dropped), so that
  subunits absent from the medoid state are seeded too; voxelised band-limited on the
  training grid;
* each fine Gaussian joins the part of the nearest coarse Gaussian at that latent;
* the part-motion network starts from the stage-A motion: for latents of the table, the
  rigid transform (Kabsch) that best maps each part's coarse Gaussians from the medoid
  configuration to their configuration at that latent is fitted, and ``MLP_A`` is
  regressed onto those transforms for a few hundred steps before stage-B training.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from ...geometry.rigid import kabsch
from ...imaging.gaussians import voxelize_gaussians
from ...representations.gaussian_seeding import seed_from_map
from .parts import PartAssignment
from .stage_a import StageAModel
from .stage_b import StageBModel

__all__ = ["medoid_latent", "stage_a_map", "build_stage_b", "warm_start_motion"]


def medoid_latent(z: torch.Tensor) -> torch.Tensor:
    """The row of ``z`` (N, zdim) nearest the mean."""
    return z[torch.argmin(((z - z.mean(dim=0)) ** 2).sum(dim=1))]


@torch.no_grad()
def stage_a_map(
    model: StageAModel, z: torch.Tensor, box: int, apix: float, keep: torch.Tensor | None = None
) -> np.ndarray:
    """Band-limited map of the stage-A Gaussians at the conformation of latent ``z``.

    Amplitudes are the ungated base amplitudes (the union of all compositions), times
    ``keep`` (G,) when given.
    """
    mix = model.decode(z[None].float())
    amps = torch.exp(model.log_amplitudes) * (1.0 if keep is None else keep.to(model.log_amplitudes))
    vol = voxelize_gaussians(mix.centres_px[0] * apix, amps, mix.sigmas_px * apix, box, apix, band_limit=True)
    return vol.cpu().numpy() if isinstance(vol, torch.Tensor) else np.asarray(vol)


@torch.no_grad()
def build_stage_b(
    model_a: StageAModel,
    parts: PartAssignment,
    z_ref: torch.Tensor,
    n_gaussians: int,
    box: int,
    apix: float,
    rng: np.random.Generator,
    present: torch.Tensor,
    zdim: int,
    hidden: int,
    layers: int,
    **options,
) -> StageBModel:
    """The fine mixture seeded from the stage-A map at ``z_ref``, organised in ``parts``.

    ``present`` (G_A,) marks the coarse Gaussians present in some state.
    """
    vol = stage_a_map(model_a, z_ref, box, apix, keep=present)
    seed = seed_from_map(vol, n_gaussians, rng)
    coarse = model_a.decode(z_ref[None].float())
    coarse_pos = coarse.centres_px[0].cpu().numpy()
    _, nearest = cKDTree(coarse_pos).query(seed.centres_px)
    anchor_of = parts.labels[nearest]
    anchor_centres = coarse_pos[parts.anchors]
    anchor_features = model_a.gaussian_features().detach().cpu()[torch.as_tensor(parts.anchors)]
    return StageBModel(
        anchor_centres_px=torch.as_tensor(anchor_centres),
        anchor_features=anchor_features,
        anchor_of=torch.as_tensor(anchor_of),
        centres_px=torch.as_tensor(seed.centres_px),
        amplitudes=torch.as_tensor(seed.amplitudes),
        sigmas_px=torch.as_tensor(seed.sigmas_px),
        zdim=zdim,
        hidden=hidden,
        layers=layers,
        apix=apix,
        **options,
    )


def warm_start_motion(
    model_b: StageBModel,
    model_a: StageAModel,
    parts: PartAssignment,
    latents: torch.Tensor,
    z_ref: torch.Tensor,
    steps: int = 300,
    n_latents: int = 512,
    seed: int = 0,
) -> float:
    """Regress ``MLP_A`` onto the stage-A part motions; returns the final fit loss."""
    if not model_b.anchor_motion:
        return 0.0
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(latents.shape[0], generator=gen)[:n_latents]
    z = latents[pick].float()
    with torch.no_grad():
        ref = model_a.decode(z_ref[None].float())
        cur = model_a.decode(z)
    labels = torch.as_tensor(parts.labels)
    anchors_px = model_b.anchor_centres_px
    rots, trans = [], []
    for k in range(model_b.n_parts):
        sel = labels == k
        src = (ref.centres_px[0, sel] - anchors_px[k])[None].expand(len(z), -1, -1)
        dst = cur.centres_px[:, sel] - anchors_px[k]
        w = (torch.exp(model_a.log_amplitudes.detach()[sel])[None] * cur.occupancy[:, sel]).clamp_min(1e-6)
        r, t = kabsch(src, dst, w)
        rots.append(r)
        trans.append(t)
    target_r = torch.stack(rots, dim=1)  # (M, K, 3, 3): rotation about the anchor
    target_t = torch.stack(trans, dim=1)  # (M, K, 3): anchor displacement
    opt = torch.optim.Adam(model_b.motion.parameters(), lr=1e-3)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        r, t = model_b.motion(z, model_b.anchor_features.detach())
        loss = ((r - target_r) ** 2).sum(dim=(-1, -2)).mean() + ((t - target_t) ** 2).sum(dim=-1).mean() / 25.0
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())
