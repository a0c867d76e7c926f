"""Local pose refinement: a small search around each image's current pose, coarse to fine.

The hierarchical search (:mod:`.search`) refines HEALPix grid indices and so must start
from its own base grid. This search starts from **any** poses (a search's, a joint
descent's, or a user's refined ``.star``) and, like RELION's local searches, tries a
small cube of rotations and shifts around each, keeps the best, and halves the steps:

* rotations: ``P @ R`` for ``P = exp(step * v)``, ``v`` in ``{-1, 0, 1}^3`` (27 rotations,
  the current one among them), the perturbation acting on the image side of RELION's
  ``A`` (``x_img = P A x_vol``: in-plane about z, tilts about the image's x and y);
* shifts: a 3 x 3 grid of ``shift_step`` around the current origin, every combination
  with the 27 rotations (tilts and shifts are coupled for off-centre mass);
* a pattern search per image: the pose moves to the best of the 243 candidates; when the
  best is the centre, that image's steps halve instead, down to ``min_step_deg``. An image
  whose steps are all below the floor stops being scored.

Scores are the training likelihood on the given band (:mod:`.scoring`), the same as the
global search's and the training loss's, so a refined pose is never worse than the pose
it started from (the current pose is always a candidate). Sources are slice sources, as
in :func:`~cryohet.pose.search.search_poses` (a field's cached Fourier grids, or a map).

Units: rotation steps in degrees, shift steps in pixels of the image, shifts in Å.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from ..geometry.rotations import axis_angle_to_matrix
from ..imaging.likelihood import ImageLikelihood
from .scoring import image_terms, score_each
from .search import SearchResult

__all__ = ["LocalSchedule", "local_search"]

_UNIT_CUBE = np.array(list(itertools.product((-1.0, 0.0, 1.0), repeat=3)), dtype=np.float64)  # (27, 3)


@dataclass(frozen=True)
class LocalSchedule:
    """Steps of a local search.

    Attributes:
        step_deg: rotation step of the first round (degrees about each image axis).
        shift_step_px: shift step of the first round (pixels); halves with the rotation step.
        min_step_deg: an image is done when its rotation step would halve below this.
        rounds: at most this many rounds (each scores 243 poses of every image not done).
    """

    step_deg: float = 4.0
    shift_step_px: float = 1.0
    min_step_deg: float = 0.25
    rounds: int = 20


def perturbations(step_deg: float | np.ndarray, device=None) -> torch.Tensor:
    """The 27 rotations ``exp(step * v)`` for ``v`` in ``{-1, 0, 1}^3``: ``(27, 3, 3)`` for one
    step, ``(B, 27, 3, 3)`` for a step per image; index 13 is the identity."""
    steps = np.asarray(step_deg, dtype=np.float64)
    rotvec = _UNIT_CUBE * np.radians(steps)[..., None, None]
    return torch.as_tensor(axis_angle_to_matrix(rotvec.reshape(-1, 3)), dtype=torch.float32, device=device).reshape(
        *steps.shape, 27, 3, 3
    )


_CENTRE = 4 * 27 + 13  # flat index (shift 4 of 9, rotation 13 of 27) of the unmoved pose


@torch.no_grad()
def local_search(
    observed: torch.Tensor,
    ctf: torch.Tensor | None,
    groups: torch.Tensor,
    sources: list,
    likelihood: ImageLikelihood,
    rotations: torch.Tensor,
    shifts_A: torch.Tensor,
    schedule: LocalSchedule,
    chunk_images: int = 64,
) -> SearchResult:
    """The best pose of each image near its current one.

    Args:
        observed: complex ``(B, Ny, Nx)`` DFTs of the images on ``likelihood.band``.
        ctf: real ``(B, Ny, Nx)`` CTF on the same band, or None.
        groups: ``(B,)`` int: which of ``sources`` answers each image's slices.
        sources: slice sources (see :func:`~cryohet.pose.search.search_poses`).
        likelihood: the training likelihood on the band to score on.
        rotations: ``(B, 3, 3)`` current RELION ``A`` rotations.
        shifts_A: ``(B, 2)`` current origins in Å.
        schedule: the steps.
        chunk_images: images scored at once (memory: ``chunk x 27`` slices of the band).
    """
    band = likelihood.band
    dev = observed.device
    apix = band.apix
    terms = image_terms(observed, ctf, likelihood)
    n = len(rotations)
    rot = rotations.to(dev, torch.float32).clone()
    shift = shifts_A.to(dev, torch.float32).clone()
    best = torch.full((n,), float("nan"), dtype=torch.float32, device=dev)
    groups = groups.to(dev)
    offsets = torch.as_tensor(_UNIT_CUBE[:9, 1:], dtype=torch.float32, device=dev)  # (9, 2): the 3x3 shift grid
    step_deg = np.full(n, float(schedule.step_deg))
    ratio_px = float(schedule.shift_step_px) / float(schedule.step_deg)  # shift step (px) per degree of step
    for _ in range(schedule.rounds):
        active = np.nonzero(step_deg >= schedule.min_step_deg)[0]
        if not len(active):
            break
        act = torch.as_tensor(active, device=dev)
        for g in torch.unique(groups[act]).tolist():
            sel = act[groups[act] == g]
            for c in range(0, len(sel), max(1, chunk_images)):
                part = sel[c : c + max(1, chunk_images)]
                rows_np = part.cpu().numpy()
                steps = step_deg[rows_np]
                cand_rot = perturbations(steps, dev) @ rot[part][:, None]  # (b, 27, 3, 3)
                step_A = torch.as_tensor(steps * ratio_px * apix, dtype=torch.float32, device=dev)
                cand_shift = shift[part][:, None] + offsets[None] * step_A[:, None, None]  # (b, 9, 2)
                slices = sources[g].slices(cand_rot.reshape(-1, 3, 3), band)
                slices = slices.reshape(len(part), 27, *slices.shape[-2:])
                scores = score_each(terms.rows(part), slices, cand_shift).reshape(len(part), -1)  # (b, 9 * 27)
                val, flat = scores.min(dim=1)
                stay = val >= scores[:, _CENTRE]  # ties keep the current pose
                flat = torch.where(stay, torch.full_like(flat, _CENTRE), flat)
                t_i, m_i = flat // 27, flat % 27
                rows = torch.arange(len(part), device=dev)
                rot[part] = _orthonormal(cand_rot[rows, m_i])
                shift[part] = cand_shift[rows, t_i]
                best[part] = scores[rows, flat]
                step_deg[rows_np[stay.cpu().numpy()]] /= 2.0
    return SearchResult(rot, shift, best)


def _orthonormal(r: torch.Tensor) -> torch.Tensor:
    """The nearest rotations to ``(B, 3, 3)`` near-rotations (products of many small steps drift)."""
    u, _, vh = torch.linalg.svd(r)
    return u @ vh
