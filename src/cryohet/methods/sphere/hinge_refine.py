"""The hinge of a turning domain, chosen again on the data at each later search.

From the first search on, every image's body turns by its ring angle ``theta_i`` about
the hinge found there (:mod:`.hinge_turns`): the pivot ``p`` where its chain leaves the
fold (:func:`.body_search.body_pivot_A`, a residue's Cα, so up to a residue's width off
the true line) and the axis chosen on a sample (:mod:`.hinge_axis`). Gradient descent
barely moves them: the decoder's translations absorb a pivot error image by image. On
igg-1d from the 0° model (method version 5, seed 0), the pivot stayed 3.5 Å off the true
hinge line and the axis 2.5–2.9° off, the learned offsets moving ±0.2 Å; the states
90–234° ended 2.0–3.2 Å off, their Fab 5–11° and 3–5 Å from the truth.

So at each later search the hinge is chosen again, on a sample of images, as the line
that lets them fit best in total with each image's turn free in a window about its
current one:

    (p, u) = argmin  sum_i  min_{|d| <= WINDOW_DEG}  score_i(body turned by theta_i + d about (p, u))

first the pivot on a grid normal to the axis, then the axis on rings of directions about
it, then the pivot again on a finer grid, each grid walked until its centre is the best.
The start is among the candidates, so the sample never fits worse.

**Why it is cheap.** Moving the pivot from ``p0`` to ``p`` moves a body turned by ``S``
only by a shift: ``p + S (x - p) = p0 + S (x - p0) + (I - S)(p - p0)``. The body's slices
(:class:`.body_search.BodyScorer`, made about ``p0``) are made once per axis; each pivot is
a phase ramp on them. Positions are Å from the box centre; rotations act on the left of
column vectors; RELION ``A_i`` projects along its third row.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...imaging.likelihood import ImageLikelihood
from ...representations.render import BandBatch
from .body_search import Body, BodyScorer, body_volume, hinge_rotations
from .hinge_axis import axis_ring, normal_basis
from .network import SphereNetwork

__all__ = ["hinge_totals", "refine_hinge"]

WINDOW_DEG = 10.0
WINDOW_STEP_DEG = 2.5
#: (grid step Å, steps each side of the centre): the first pivot grid, then the walked one
_PIVOT_GRIDS = ((1.5, 4), (0.5, 1))
_AXIS_STEPS_DEG = (2.0, 1.0)
_MAX_WALK = 6
_OFFSET_CHUNK = 27


def hinge_totals(
    scorers: list[BodyScorer], angles_deg: list[torch.Tensor], axis: torch.Tensor, offsets_A: torch.Tensor
) -> torch.Tensor:
    """``(P,)``: for each pivot offset ``offsets_A (P, 3)`` (Å from the scorers' pivot),
    the sum over the scorers' images of the best score over turns within ``WINDOW_DEG``
    of each image's ``angles_deg`` about the unit ``axis (3,)`` (lower is better)."""
    return _pivot_totals(scorers, _turned_bodies(scorers, angles_deg, axis), offsets_A)


def _turned_bodies(
    scorers: list[BodyScorer], angles_deg: list[torch.Tensor], axis: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per scorer, what does not depend on the pivot: the body's filtered slices turned
    through each image's window about ``axis`` ``(B, W, Ny, Nx)``, and ``I - S`` ``(B, W, 3, 3)``."""
    device = axis.device
    window = torch.arange(-WINDOW_DEG, WINDOW_DEG + 1e-6, WINDOW_STEP_DEG, device=device)
    out = []
    for scorer, angles in zip(scorers, angles_deg):
        bb = scorer.bb
        turns = hinge_rotations(axis, angles[:, None].to(device) + window[None])  # (B, W, 3, 3)
        rot = (bb.rotations[:, None] @ turns.to(bb.rotations)).reshape(-1, 3, 3)
        slices = scorer.volume.slices(rot, bb.band).reshape(len(bb), len(window), *bb.band.shape)
        out.append((scorer.body_filters[:, None] * slices, torch.eye(3, device=device) - turns))
    return out


def _pivot_totals(
    scorers: list[BodyScorer], turned: list[tuple[torch.Tensor, torch.Tensor]], offsets_A: torch.Tensor
) -> torch.Tensor:
    """:func:`hinge_totals` from :func:`_turned_bodies`: each pivot offset a phase ramp."""
    totals = torch.zeros(len(offsets_A), dtype=torch.float64, device=offsets_A.device)
    for scorer, (body, moved_by) in zip(scorers, turned):
        bb = scorer.bb
        b, w = body.shape[:2]
        for a in range(0, len(offsets_A), _OFFSET_CHUNK):
            d = offsets_A[a : a + _OFFSET_CHUNK].to(moved_by)
            shift3 = torch.einsum("bwij,pj->bwpi", moved_by, d)
            shift_xy = torch.einsum("bij,bwpj->bwpi", bb.rotations[:, :2, :], shift3.to(bb.rotations))
            ramp = bb.band.filters(None, -shift_xy.reshape(-1, 2)).reshape(b, w, len(d), *bb.band.shape)
            model = scorer.rest[:, None, None] + body[:, :, None] * ramp
            scores = scorer.likelihood.score(bb.observed[:, None, None], model)  # (B, W, P)
            totals[a : a + len(d)] += scores.amin(dim=1).double().sum(dim=0).to(totals.device)
    return totals


def _pivot_grid(axis: torch.Tensor, centre_A: torch.Tensor, step_A: float, n: int) -> torch.Tensor:
    """``((2n + 1)^2, 3)`` offsets: ``centre_A`` plus a square grid normal to ``axis``."""
    e1, e2 = normal_basis(axis)
    k = torch.arange(-n, n + 1, dtype=axis.dtype, device=axis.device) * step_A
    a, b = torch.meshgrid(k, k, indexing="ij")
    return centre_A[None] + a.reshape(-1, 1) * e1[None] + b.reshape(-1, 1) * e2[None]


def refine_hinge(
    net: SphereNetwork,
    body: Body,
    batches: list[tuple[BandBatch, torch.Tensor]],
    angles_deg: list[torch.Tensor],
    likelihood: ImageLikelihood,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Body:
    """``body`` with its pivot and axis chosen again on ``batches`` (``(band batch, latents
    (B, zdim))``) whose images now turn the body by ``angles_deg`` ``(B,)`` each (module
    docstring). ``reduce`` sums the totals over ranks when each rank holds a part of the
    sample. The pivot's component along the axis is kept (it changes nothing)."""
    volume = body_volume(net, body, batches[0][0].band) if batches else None
    scorers = [BodyScorer.prepare(net, body, bb, z, likelihood, volume) for bb, z in batches]

    def totals(turned: list, offsets_A: torch.Tensor) -> torch.Tensor:
        t = _pivot_totals(scorers, turned, offsets_A)
        return t if reduce is None else reduce(t)

    def walk_pivot(axis: torch.Tensor, offset: torch.Tensor, step_A: float, n: int) -> torch.Tensor:
        turned = _turned_bodies(scorers, angles_deg, axis)  # the slices, once for the axis
        for _ in range(_MAX_WALK):
            grid = _pivot_grid(axis, offset, step_A, n)
            best = grid[int(totals(turned, grid).argmin())]
            if torch.equal(best, grid[len(grid) // 2]):
                break
            offset = best
        return offset

    axis = body.axis.to(body.pivot_A)
    offset = torch.zeros_like(body.pivot_A)
    offset = walk_pivot(axis, offset, *_PIVOT_GRIDS[0])
    for step_deg in _AXIS_STEPS_DEG:
        for _ in range(_MAX_WALK):
            ring = axis_ring(axis, step_deg)
            scores = [totals(_turned_bodies(scorers, angles_deg, u), offset[None]) for u in ring]
            best = ring[int(torch.cat(scores).argmin())]
            if torch.equal(best, ring[0]):
                break
            axis = best
    offset = walk_pivot(axis, offset, *_PIVOT_GRIDS[1])
    offset = offset - (offset @ axis) * axis  # along the axis it changes nothing
    return Body(body.residues, body.pivot_A + offset, axis)
