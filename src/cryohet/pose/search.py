"""Hierarchical pose search: SO(3) x shifts, coarse to fine, with the training likelihood.

The pieces are separate (cryojax's habit of a generic grid search):

* **grid** — :mod:`cryohet.geometry.so3_grid` (HEALPix views x in-plane angles, ``72 * 8**L``
  rotations at level ``L``, nested refinement by :func:`~cryohet.geometry.so3_grid.neighbors`)
  and :mod:`cryohet.geometry.shift_grid` (cell-centred shift grids, halved by refinement);
* **score** — :mod:`.scoring` (the likelihood expanded into matrix products; the score of
  a pose *is* the training loss at that pose, on the round's band);
* **selection** — keep the best ``keep`` (rotation, shift) pairs per image (1 in the last
  round).

Schedule (DRGN-AI's by default): the base level's rotations (4 608 at level 2) x an
``n x n`` shift grid over ``+-extent`` pixels, scored on the band ``|k| <= r_0``; then
``rounds`` refinements, each taking the ``neighbours`` nearest rotations one level finer
around every kept pose and a 3 x 3 shift grid at half the step around its shift, with the
band radius rising linearly to ``r_end`` (capped below Nyquist).

The search never calls a decoder per pose: each group of images shares a
:class:`~cryohet.representations.base.SliceSource` (for a neural field, its Fourier grid
cached once per search, one per latent cluster), so all 4 608 in-plane-resolved slices
of the base level are interpolated at once and the shifts are phase factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..geometry import so3_grid
from ..geometry.shift_grid import refine_shift_grid, shift_grid
from ..imaging.likelihood import ImageLikelihood
from .scoring import image_terms, score_each, score_shared

__all__ = ["SearchSchedule", "SearchResult", "search_poses"]


@dataclass(frozen=True)
class SearchSchedule:
    """How a search proceeds (pixels of the image; defaults as DRGN-AI's where it states them).

    Attributes:
        base_level: SO(3) grid level of the first round (2: 192 views x 24 in-plane angles).
        rounds: refinement rounds after it.
        keep: poses kept per image between rounds.
        neighbours: finer rotations around each kept one.
        shift_extent_px: shifts searched within ``+-extent`` (x and y).
        shift_n: shift grid points per axis in the first round.
        radius_start_px, radius_end_px: band radius of the first and the last round.
    """

    base_level: int = 2
    rounds: int = 4
    keep: int = 8
    neighbours: int = 8
    shift_extent_px: float = 8.0
    shift_n: int = 14
    radius_start_px: float = 12.0
    radius_end_px: float = 32.0

    def radii(self, box: int) -> list[float]:
        """Band radius of every round, capped below Nyquist."""
        top = box / 2 - 1
        n = self.rounds + 1
        return [min(top, self.radius_start_px + (self.radius_end_px - self.radius_start_px) * i / max(1, n - 1))
                for i in range(n)]  # fmt: skip


@dataclass
class SearchResult:
    """Best pose per image: rotations ``(B, 3, 3)`` RELION ``A``, shifts ``(B, 2)`` Å, and its
    score ``(B,)`` (the likelihood on the last round's band: lower is better)."""

    rotations: torch.Tensor
    shifts_A: torch.Tensor
    scores: torch.Tensor


def _topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Smallest ``k`` of ``(b, T, M)`` per image -> (shift index, rotation index, score), each ``(b, k)``."""
    b, t, m = scores.shape
    k = min(k, t * m)
    val, flat = torch.topk(scores.reshape(b, -1), k, dim=1, largest=False)
    return flat // m, flat % m, val


@torch.no_grad()
def search_poses(
    observed: torch.Tensor,
    ctf: torch.Tensor | None,
    groups: torch.Tensor,
    sources: list,
    likelihood: ImageLikelihood,
    schedule: SearchSchedule,
    chunk_images: int = 32,
) -> SearchResult:
    """Best pose of each image.

    Args:
        observed: complex ``(B, Ny, Nx)``: the images' DFTs on ``likelihood.band`` (the full
            comparison band; each round restricts it to its radius).
        ctf: real ``(B, Ny, Nx)`` CTF on the same band, or None.
        groups: ``(B,)`` int: which of ``sources`` answers each image's slices.
        sources: slice sources (the representation, or its cached grid per latent cluster).
        likelihood: the training likelihood on the full band (quadratic: ``pixel_weights``).
        schedule: grid, band and selection schedule.
        chunk_images: images scored at once in the first round (its scores are
            ``chunk x rotations x shifts``: 116 MB for 32 images at level 2 and 14 x 14 shifts);
            each source's slices of the base grid are made once for all its images.
    """
    band = likelihood.band
    dev = observed.device
    box, apix = band.box, band.apix
    radii = schedule.radii(box)
    n_img = observed.shape[0]
    groups = groups.to(dev)
    level = schedule.base_level
    rot_grid = torch.as_tensor(so3_grid.base_grid(level), dtype=torch.float32, device=dev)
    shifts_px, step = shift_grid(schedule.shift_extent_px, schedule.shift_n)
    shifts0 = torch.as_tensor(shifts_px * apix, dtype=torch.float32, device=dev)
    keep = schedule.keep if schedule.rounds > 0 else 1
    rot_idx = torch.zeros((n_img, keep), dtype=torch.int64, device=dev)
    shift_A = torch.zeros((n_img, keep, 2), dtype=torch.float32, device=dev)
    best = torch.zeros((n_img, keep), dtype=torch.float32, device=dev)

    def round_terms(radius: float):
        sub = band.lowpass(min(1.0, radius / (box / 2)))
        lik = likelihood.on(sub)
        c = None if ctf is None else sub.restrict(ctf, band)
        return sub, image_terms(sub.restrict(observed, band), c, lik)

    sub, terms = round_terms(radii[0])
    for g in torch.unique(groups).tolist():
        sel = torch.nonzero(groups == g).reshape(-1)
        slices = sources[g].slices(rot_grid, sub)
        for c in range(0, len(sel), max(1, chunk_images)):
            part = sel[c : c + max(1, chunk_images)]
            t_i, m_i, val = _topk(score_shared(terms.rows(part), slices, shifts0), keep)
            rot_idx[part], shift_A[part], best[part] = m_i, shifts0[t_i], val
    for r in range(1, schedule.rounds + 1):
        k_keep = schedule.keep if r < schedule.rounds else 1
        sub, terms = round_terms(radii[r])
        nb, _ = so3_grid.neighbors(rot_idx.reshape(-1).cpu().numpy(), level, k=schedule.neighbours)
        level += 1
        cand_idx = torch.as_tensor(nb.reshape(n_img, -1), device=dev)  # (B, K * neighbours)
        cand_rot = torch.as_tensor(so3_grid.index_to_matrix(nb.reshape(-1), level), dtype=torch.float32, device=dev)
        cand_rot = cand_rot.reshape(n_img, -1, 3, 3)
        pts, step = refine_shift_grid(shift_A.reshape(-1, 2).cpu().numpy() / apix, step, n=3)
        cand_shift = torch.as_tensor(pts.reshape(n_img, -1, 2) * apix, dtype=torch.float32, device=dev)
        new_idx = torch.zeros((n_img, k_keep), dtype=torch.int64, device=dev)
        new_shift = torch.zeros((n_img, k_keep, 2), dtype=torch.float32, device=dev)
        new_best = torch.zeros((n_img, k_keep), dtype=torch.float32, device=dev)
        for g in torch.unique(groups).tolist():
            sel = torch.nonzero(groups == g).reshape(-1)
            n_rot = cand_rot.shape[1]
            slices = sources[g].slices(cand_rot[sel].reshape(-1, 3, 3), sub)
            slices = slices.reshape(len(sel), n_rot, *slices.shape[-2:])
            t_i, m_i, val = _topk(score_each(terms.rows(sel), slices, cand_shift[sel]), k_keep)
            rows = torch.arange(len(sel), device=dev)[:, None]
            new_idx[sel] = cand_idx[sel][rows, m_i]
            new_shift[sel] = cand_shift[sel][rows, t_i]
            new_best[sel] = val
        rot_idx, shift_A, best = new_idx, new_shift, new_best
    rotations = torch.as_tensor(
        so3_grid.index_to_matrix(rot_idx[:, 0].cpu().numpy(), level), dtype=torch.float32, device=dev
    )
    return SearchResult(rotations, shift_A[:, 0], best[:, 0])


def shift_extent_px(box: int, fraction: float = 0.15) -> float:
    """A default search extent for a box: ``fraction`` of it (DRGN-AI: 20 px at 128 px)."""
    return float(np.clip(fraction * box, 2.0, 20.0))
