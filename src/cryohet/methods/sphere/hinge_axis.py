"""The hinge axis of a body, chosen on the whole data set rather than per image.

A turn about the wrong axis can fit one noisy image as well as the right one (a Fab
turned half-way about its own long axis looks the same at 20 Å), but only the true hinge
axis lets *every* image fit at some angle. The axis is therefore the one whose per-image
best turns fit a sample of images best in total:

    u = argmin_u  sum_i  min_theta  score_i(turn by theta about the axis u through p)

among the directions of a HEALPix half-sphere (level 1: 24 directions, ~30° apart) and
the axis the decoded motions suggest, then on rings of 8 directions 10° and then 5° from
the best, each ring walked until its centre is the best. Turns are tried every 5°.

The pivot ``p`` stays where :func:`.body_search.find_bodies` put it (the bonds between
the body and the rest). Measured on igg-1d (epoch 9 of 40): the learned segmentation's
boundary lay in the hinge (H 281 rather than H 230), that pivot 16 Å off the true axis,
and the axis chosen 13.7° off the true one (per-image turns 20° from the truth, median,
82 % within 30°: inside the basin gradient descent finishes). Searching the pivot too (a
7 x 7 grid normal to the axis, alternated with the axis rings) took 8 minutes on one
thread and left it 14.5 Å off, so it is not done.
"""

from __future__ import annotations

from collections.abc import Callable

import healpy
import numpy as np
import torch

from ...imaging.likelihood import ImageLikelihood
from ...representations.render import BandBatch
from .body_search import Body, BodyScorer, body_volume, hinge_rotations
from .network import SphereNetwork

__all__ = ["axis_candidates", "axis_ring", "axis_totals", "choose_axis", "normal_basis"]

TURN_STEP_DEG = 5.0
_RING_STEPS_DEG = (10.0, 5.0)
_MAX_WALK = 4


def axis_candidates(nside: int = 2) -> torch.Tensor:
    """``(n, 3)`` unit directions: the HEALPix pixel centres with ``z > 0`` (or ``z = 0``
    and ``y >= 0``), one of each ± pair (a turn about ``-u`` by ``theta`` is one about
    ``u`` by ``-theta``)."""
    v = np.stack(healpy.pix2vec(nside, np.arange(12 * nside * nside)), axis=1)
    keep = (v[:, 2] > 1e-9) | ((np.abs(v[:, 2]) <= 1e-9) & (v[:, 1] >= 0))
    return torch.as_tensor(v[keep], dtype=torch.float32)


def axis_ring(axis: torch.Tensor, step_deg: float, n: int = 8) -> torch.Tensor:
    """``(n + 1, 3)``: ``axis`` and ``n`` directions ``step_deg`` from it, evenly around."""
    e1, e2 = normal_basis(axis)
    phi = torch.arange(n, dtype=axis.dtype, device=axis.device) * (2 * np.pi / n)
    t = np.deg2rad(step_deg)
    ring = np.cos(t) * axis[None] + np.sin(t) * (torch.cos(phi)[:, None] * e1 + torch.sin(phi)[:, None] * e2)
    return torch.cat([axis[None], ring])


def axis_totals(scorers: list[BodyScorer], axes: torch.Tensor) -> torch.Tensor:
    """``(n_axes,)``: for each axis, the sum over the scorers' images of the best score over
    turns every ``TURN_STEP_DEG`` (lower is better)."""
    turns = torch.arange(0.0, 360.0, TURN_STEP_DEG, device=axes.device)
    rotations = torch.stack([hinge_rotations(u, turns) for u in axes]).reshape(-1, 3, 3)  # axis-major
    totals = torch.zeros(len(axes), dtype=torch.float64, device=axes.device)
    for scorer in scorers:
        scores = scorer.scores(rotations).reshape(len(scorer.bb), len(axes), len(turns))
        totals += scores.amin(dim=-1).double().sum(dim=0)
    return totals


def normal_basis(axis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unit vectors ``(3,)`` that make a right-handed orthonormal basis with ``axis``."""
    helper = torch.tensor([1.0, 0.0, 0.0]) if abs(float(axis[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    e1 = torch.nn.functional.normalize(torch.linalg.cross(axis, helper.to(axis)), dim=0)
    return e1, torch.linalg.cross(axis, e1)


def choose_axis(
    net: SphereNetwork,
    body: Body,
    batches: list[tuple[BandBatch, torch.Tensor]],
    likelihood: ImageLikelihood,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Body:
    """``body`` with its hinge axis chosen on ``batches`` (module docstring). ``reduce``
    sums the totals over ranks when each rank holds a part of the sample."""

    volume = body_volume(net, body, batches[0][0].band) if batches else None
    scorers = [BodyScorer.prepare(net, body, bb, z, likelihood, volume) for bb, z in batches]

    def best_axis(current: Body, axes: torch.Tensor) -> Body:
        totals = axis_totals(scorers, axes)
        if reduce is not None:
            totals = reduce(totals)
        return Body(current.residues, current.pivot_A, axes[int(totals.argmin())])

    device = body.pivot_A.device
    out = best_axis(body, torch.cat([axis_candidates().to(device), body.axis[None].to(device)]))
    for step_deg in _RING_STEPS_DEG:
        for _ in range(_MAX_WALK):
            moved = best_axis(out, axis_ring(out.axis, step_deg))
            if torch.equal(moved.axis, out.axis):
                break
            out = moved
    return out
