"""A per-image search over how far each moving domain ("body") turns about its hinge.

**Why.** Gradient descent moves the residues from the input model. A domain in a state
more than ~60° away (igg-1d's Fab turning through 360° about its hinge) overlaps nothing
of its own density there, so the data term gives no pull towards it, and the decoder
settles on the nearest state it can reach. A search over the turn puts every image
within the basin that gradient descent can finish.

**Bodies and their hinges** (:func:`find_bodies`). The segments are grouped into domains
by their decoded motions over a sample of images (:func:`.domains.motion_domains`); the
domain that moves least is the static core, and each other domain with at least
``min_residues`` residues and a bond to the rest is a body. Its pivot ``p`` is where its
chain leaves the body's fold towards the rest (the hinge, :func:`body_pivot_A`). Each
image's decoded motion of the body is fitted by a rigid transform ``x -> R_i x + t_i`` (Kabsch), and the
first guess of the hinge axis is the main direction of the rotation vectors (the top
eigenvector of ``sum r_i r_i^T``); :mod:`.hinge_axis` then chooses the axis on the data.

**Why about one axis and not over SO(3).** Measured on igg-1d (D=64, SNR 0.05, 20 Å):
the best of 576 rotations (SO(3) grid, level 1, refined) was 150–180° from the truth for
most images, because a Fab turned half-way about its own long axis (swapping its heavy
and light chains) looks the same at that resolution; the best of 72 turns about the true
hinge axis was 3° from the truth (median of 256 images, all within 30°). The search
therefore tries turns about one axis, chosen on the whole data set, through the whole
turn; motions about other axes are left to gradient descent.

**Score** (:class:`BodyScorer`). For image ``i`` (RELION ``A_i``, filters ``f_i`` = CTF x
shift phase) and candidate ``S_c``, the moved model is the rest (residues outside the
body, at the image's decoded positions) plus the body turned by ``S_c`` about the pivot
``p``: ``x' = p + S_c (x - p)``. Its image is

    f_i * [ slice(rest_i; A_i) + exp(-2 pi i k.(A_i p)_xy) slice(body - p; A_i S_c) ]

where the body's slice comes from its voxelised, oversampled transform (computed once,
:class:`~cryohet.imaging.projection.FourierVolume`) and the rest's from the analytic
Gaussians; both are central slices, composed with CTF, shift and the run's likelihood as
every render is (:mod:`cryohet.representations.render`). The image's current fit (every
residue at its decoded position) is scored the same way; a candidate becomes the image's
target only where it scores better. Positions are Å from the box centre (the network's
frame); rotations act on the left of column vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import roma
import torch

from ...geometry.rigid import kabsch
from ...imaging.bands import FourierBand
from ...imaging.likelihood import ImageLikelihood
from ...imaging.projection import FourierVolume, volume_to_fourier
from ...representations.gaussian_mixture import GaussianMixture
from ...representations.render import BandBatch, model_images
from .domains import motion_domains, segment_displacements_A
from .network import SphereNetwork

__all__ = [
    "Body", "BodyScorer", "body_hinge", "body_volume", "find_bodies", "hinge_fit", "hinge_rotations", "search_body",
    "body_pivot_A",
]  # fmt: skip


@dataclass(frozen=True)
class Body:
    """A rigid domain that may turn: its residues (indices into the network's residues),
    the pivot it turns about (Å from the box centre) and its hinge axis (unit vector)."""

    residues: torch.Tensor
    pivot_A: torch.Tensor
    axis: torch.Tensor


def body_pivot_A(
    base_A: torch.Tensor,
    in_body: torch.Tensor,
    bonded_to_next: torch.Tensor,
    same_chain_next: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(3,)`` the body's hinge point (Å), as :func:`body_hinge` finds it."""
    return body_hinge(base_A, in_body, bonded_to_next, same_chain_next)[0]


def body_hinge(
    base_A: torch.Tensor,
    in_body: torch.Tensor,
    bonded_to_next: torch.Tensor,
    same_chain_next: torch.Tensor | None = None,
    packed_fraction: float = 0.5,
    contact_A: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(3,)`` the body's hinge point (Å, the frame of ``base_A``): for each bond that
    crosses the body's boundary, the first residue of the body, walking from the bond along
    its chain into the body, that is packed in the body's fold, is found, and the residue
    walked just before it (where the chain leaves the fold) is the point; their mean. The
    body's centroid when no bond crosses.

    A residue is packed when at least ``packed_fraction`` of the body's median count of
    body residues within ``contact_A`` (sequence neighbours within 3 excluded) lie that
    close. Why walk: a segment boundary is only roughly where the chain leaves a domain.
    On igg-1d the Fab's body ended at H253 at one search, 23 residues along the extended
    hinge peptide and the top of CH2 from the Fab's fold; the bond's midpoint there was
    23.6 Å from the true hinge axis (the line H230 CA to H239 CA), and the searched axis
    17.6° off. The walk stops at H228, at the end of CH1, and H229 is 5 Å from the axis.
    ``same_chain_next (R,)``: the next residue is in the same chain (default:
    ``bonded_to_next``; gaps of missing residues are walked across when it is given).

    Returns the point and the body without the residues walked over (``(R,)`` bool): they
    lie outside the body's fold (the hinge peptide, the top of CH2 above), so neither the
    pull towards a searched placement nor the rigidity restraint may drag them along. On
    igg-1d with H232-253 kept in the body, the pull turned the CH2 start with the Fab and
    the chain's continuity dragged H275-478 (the heavy chain's Fc half) 54 Å (median)."""
    i = torch.nonzero(bonded_to_next[:-1] & (in_body[:-1] != in_body[1:])).squeeze(1)
    if i.numel() == 0:
        return base_A[in_body].mean(dim=0), in_body
    chained = (bonded_to_next if same_chain_next is None else same_chain_next).cpu().numpy().astype(bool)
    members = torch.nonzero(in_body).squeeze(1)
    close = torch.cdist(base_A[members], base_A[members]) < contact_A
    offset = (members[:, None] - members[None]).abs()
    contact = (close & (offset > 3)).cpu().numpy()
    counts = contact.sum(axis=1)
    packed = counts >= packed_fraction * float(np.median(counts))
    packed &= _largest_component(contact & packed[:, None] & packed[None])
    position = {int(r): k for k, r in enumerate(members.cpu().numpy())}
    body = in_body.cpu().numpy().astype(bool)
    points, fold = [], body.copy()
    for a in i.cpu().numpy():
        r, step = (int(a), -1) if body[a] else (int(a) + 1, 1)  # the body's residue at the bond, then inwards
        exit_, walked = r, []
        while not packed[position[r]]:
            nxt = r + step
            linked = chained[r] if step > 0 else (nxt >= 0 and chained[nxt])
            if not (linked and 0 <= nxt < len(body) and body[nxt]):
                walked = []  # never reached the fold: nothing to trim
                break
            walked.append(r)
            exit_, r = r, nxt
        fold[walked[:-1]] = False  # keep the exit residue, the pivot itself
        points.append(base_A[exit_])
    return torch.stack(points).mean(dim=0), torch.as_tensor(fold, device=in_body.device)


def _largest_component(adjacency: np.ndarray) -> np.ndarray:
    """``(P,)`` bool: the nodes of the largest connected component of ``adjacency (P, P)``."""
    label = np.full(len(adjacency), -1)
    sizes = []
    for start in range(len(adjacency)):
        if label[start] >= 0:
            continue
        label[start], stack, size = len(sizes), [start], 0
        while stack:
            node = stack.pop()
            size += 1
            for nxt in np.flatnonzero(adjacency[node] & (label < 0)):
                label[nxt] = len(sizes)
                stack.append(nxt)
        sizes.append(size)
    return label == int(np.argmax(sizes)) if sizes else np.zeros(0, dtype=bool)


def hinge_fit(
    rotations: torch.Tensor, translations_A: torch.Tensor, near_A: torch.Tensor, pull: float = 1e-2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The hinge of rigid motions ``x -> R_i x + t_i`` (``(M, 3, 3)``, ``(M, 3)`` Å):
    the axis ``(3,)`` (unit; main direction of the rotation vectors, sign chosen so that
    most turns are positive), the pivot ``(3,)`` Å (the point the motions move least,
    pulled weakly towards ``near_A``) and each motion's turn angle ``(M,)`` in degrees."""
    rv = roma.rotmat_to_rotvec(rotations.double())
    _, vecs = torch.linalg.eigh(rv.T @ rv)
    axis = vecs[:, -1]
    if float((rv @ axis).sum()) < 0:
        axis = -axis
    a = rotations.double() - torch.eye(3, dtype=torch.float64)
    lhs = torch.einsum("mki,mkj->ij", a, a) + pull * len(a) * torch.eye(3, dtype=torch.float64)
    rhs = -torch.einsum("mki,mk->i", a, translations_A.double()) + pull * len(a) * near_A.double()
    pivot = torch.linalg.solve(lhs, rhs)
    return axis.float(), pivot.float(), torch.rad2deg(rv.norm(dim=-1)).float()


def _contact_groups(base_A: torch.Tensor, members: list[np.ndarray], contact_A: float, min_contacts: int) -> list[int]:
    """Union-find over ``members`` (residue index sets): sets with at least ``min_contacts``
    residue pairs closer than ``contact_A`` join. Returns each set's group root."""
    parent = list(range(len(members)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(members)):
        for j in range(i + 1, len(members)):
            d = torch.cdist(base_A[members[i]], base_A[members[j]])
            if int((d < contact_A).sum()) >= min_contacts:
                parent[root(j)] = root(i)
    return [root(i) for i in range(len(members))]


def find_bodies(
    net: SphereNetwork,
    labels: np.ndarray,
    z_sample: torch.Tensor,
    bonded_to_next: torch.Tensor,
    min_residues: int,
    same_chain_next: torch.Tensor | None = None,
    contact_A: float = 7.0,
    min_contacts: int = 3,
) -> list[Body]:
    """The bodies of the current network and first guesses of their hinges (module docstring).

    ``labels (R,)``: each residue's segment (-1: not movable); ``z_sample (M, zdim)``:
    latents of a sample of images whose decoded motions define the domains. Domains other
    than the static core that touch (``min_contacts`` residue pairs closer than
    ``contact_A``) form one body: early in training a domain's segments do not yet move as
    one (measured on igg-1d at epoch 9 of 40: the turning Fab was three domains). A body
    with no bond to the rest is not searched: it has no hinge, and turning it about its
    centroid is as ambiguous as a pose (on igg-1d with ``rotation: rotvec``, the light chain
    alone, searched so at epoch 11, drew the run away from the Fab's motion)."""
    with torch.no_grad():
        rotvecs, trans = net.motions(z_sample)
        w = net.memberships(1, sample=False)  # (1, R, K): chunks keep the (B, R, 3, 3) blends small
        moved = torch.cat([net.deformed(z, w.expand(len(z), -1, -1)) for z in z_sample.split(128)])
    base_t = net.base_A.detach()
    base = base_t.cpu().numpy()
    rv, tr = rotvecs.cpu().numpy(), trans.cpu().numpy()
    domains = motion_domains(base, labels, rv, tr)
    disp = np.median(segment_displacements_A(base, labels, rv, tr), axis=0)
    names = [d for d in np.unique(domains) if d >= 0]
    if len(names) < 2:
        return []
    counts = np.array([max(1, int((labels == k).sum())) for k in range(len(domains))])
    size = {d: int(counts[domains == d].sum()) for d in names}
    motion = {d: float(np.average(disp[domains == d], weights=counts[domains == d])) for d in names}
    core = min(names, key=lambda d: (motion[d], -size[d]))
    moving = [d for d in names if d != core]
    members = [np.flatnonzero(np.isin(labels, np.flatnonzero(domains == d))) for d in moving]
    groups = _contact_groups(base_t, members, contact_A, min_contacts)
    bodies = []
    for g in sorted(set(groups)):
        idx_np = np.concatenate([m for m, r in zip(members, groups) if r == g])
        if len(idx_np) < min_residues:
            continue
        in_body = torch.zeros(len(base), dtype=torch.bool, device=base_t.device)
        in_body[torch.as_tensor(idx_np, device=base_t.device)] = True
        bonded = bonded_to_next.to(in_body.device)
        if not bool((bonded[:-1] & (in_body[:-1] != in_body[1:])).any()):
            continue  # no hinge: a free body's turn about its centroid is as ambiguous as a pose
        near, in_fold = body_hinge(base_t, in_body, bonded, same_chain_next)
        idx = torch.nonzero(in_fold).squeeze(1)
        src = base_t[idx].expand(len(z_sample), -1, -1)
        rot, t = kabsch(src.double(), moved[:, idx].double(), torch.ones(src.shape[:2], dtype=torch.float64))
        axis, _, _ = hinge_fit(rot, t, near)
        bodies.append(Body(idx, near, axis.to(base_t.device)))
    return bodies


def hinge_rotations(axis: torch.Tensor, angles_deg: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)``: turns by ``angles_deg (...)`` about the unit ``axis (3,)``."""
    return roma.rotvec_to_rotmat(torch.deg2rad(angles_deg)[..., None] * axis.to(angles_deg))


def body_volume(net: SphereNetwork, body: Body, band: FourierBand) -> FourierVolume:
    """The body's residues at their input-model positions relative to its pivot, voxelised
    on the band's grid and transformed once (oversampled, gridding-corrected)."""
    base = net.mixture(net.base_A)
    body_mix = GaussianMixture(base.centres_A[body.residues] - body.pivot_A, base.amplitudes[body.residues],
                               base.sigmas_A[body.residues])  # fmt: skip
    return volume_to_fourier(body_mix.to_volume(band.box, band.apix))


@dataclass
class BodyScorer:
    """One body's turns scored on one batch (module docstring). What does not depend on
    the candidate is made once: the rest's images, the body's filters (with the pivot's
    phase) and the score of each image's current fit ``current (B,)``."""

    bb: BandBatch
    likelihood: ImageLikelihood
    volume: FourierVolume
    rest: torch.Tensor
    body_filters: torch.Tensor
    current: torch.Tensor

    @classmethod
    @torch.no_grad()
    def prepare(
        cls,
        net: SphereNetwork,
        body: Body,
        bb: BandBatch,
        z: torch.Tensor,
        likelihood: ImageLikelihood,
        volume: FourierVolume | None = None,
    ) -> BodyScorer:
        """For ``bb`` on the search band (``likelihood`` on the same band) at latents ``z
        (B, zdim)``; ``volume``: :func:`body_volume` when already made for this band."""
        band: FourierBand = bb.band
        mix = net.mixture(net.deformed(z, net.memberships(len(bb), sample=False)))
        current = likelihood.score(bb.observed, model_images(mix, bb.rotations, band, bb.filters))
        keep = torch.ones(net.n_residues, dtype=torch.bool, device=mix.centres_A.device)
        keep[body.residues] = False
        rest_mix = GaussianMixture(mix.centres_A[:, keep], mix.amplitudes[:, keep], mix.sigmas_A[keep])
        rest = model_images(rest_mix, bb.rotations, band, bb.filters)
        pivot_xy = torch.einsum("bij,j->bi", bb.rotations[:, :2, :], body.pivot_A.to(bb.rotations.dtype))
        ramp = band.filters(None, -pivot_xy)
        body_filters = ramp if bb.filters is None else bb.filters * ramp
        volume = body_volume(net, body, band) if volume is None else volume
        return cls(bb, likelihood, volume, rest, body_filters, current)

    @torch.no_grad()
    def scores(self, candidates: torch.Tensor, chunk: int = 96) -> torch.Tensor:
        """``(B, M)`` scores with the body turned by each candidate (lower is better):
        ``candidates`` ``(M, 3, 3)`` shared by the images, or ``(B, M, 3, 3)``."""
        bb, b = self.bb, len(self.bb)
        per_image = candidates.ndim == 4
        out = []
        for a in range(0, candidates.shape[-3], chunk):
            s = (candidates[:, a : a + chunk] if per_image else candidates[None, a : a + chunk]).to(bb.rotations)
            rot = (bb.rotations[:, None] @ s).reshape(-1, 3, 3)  # A_i S_c
            sl = self.volume.slices(rot, bb.band).reshape(b, s.shape[1], *bb.band.shape)
            model = self.rest[:, None] + self.body_filters[:, None] * sl
            out.append(self.likelihood.score(bb.observed[:, None], model))
        return torch.cat(out, dim=1)

    def best(self, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The best candidate's index ``(B,)`` and its score ``(B,)``."""
        best, index = self.scores(candidates).min(dim=1)
        return index, best


def search_body(
    net: SphereNetwork,
    body: Body,
    bb: BandBatch,
    z: torch.Tensor,
    likelihood: ImageLikelihood,
    candidates: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best candidate's index ``(B,)``, its score ``(B,)`` and the score of the image's
    current fit ``(B,)`` (:class:`BodyScorer`)."""
    scorer = BodyScorer.prepare(net, body, bb, z, likelihood)
    index, best = scorer.best(candidates)
    return index, best, scorer.current
