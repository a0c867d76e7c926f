"""cryoSPHERE's physical restraints on a deformed model (the paper's weights: 0.1 each).

* **Continuity**: the mean squared change of the distance between sequence neighbours,
  over the pairs that are bonded in the input model (``ResidueModel.bonded_to_next``: no
  pull across a chain end or a gap of missing residues).
* **Clash**: ``sum (d - 4 Å)^2`` over residue pairs closer than 4 Å in the deformed model
  and at least 2 apart in sequence, divided by the number of such pairs; the "light"
  version of the paper considers only pairs whose distance in the input model is 4–10 Å
  (segments that slide into each other), which is what is computed here: the candidate
  pairs are fixed once from the input model, so the cost is linear in their number rather
  than quadratic in the residues.
* **Rigidity** (ours, after a domain search): the mean squared distance (Å^2) of a body's
  moved residues from the rigid motion of its input positions that fits them best
  (Kabsch), and the same for the static core (the movable residues in no body). The
  search finds domains that move as one; this keeps them one after the pull towards the
  searched placements has faded, while the data choose the motion.
"""

from __future__ import annotations

import torch

from ...geometry.rigid import kabsch

__all__ = ["continuity_loss", "clash_pairs", "clash_loss", "rigidity_loss"]


def continuity_loss(deformed_A: torch.Tensor, base_A: torch.Tensor, bonded_to_next: torch.Tensor) -> torch.Tensor:
    """Per-image ``(B,)`` mean squared change (Å^2) of bonded neighbours' distances.

    ``deformed_A (B, N, 3)``, ``base_A (N, 3)``, ``bonded_to_next (N,)`` bool."""
    i = torch.nonzero(bonded_to_next[:-1]).squeeze(1)
    if i.numel() == 0:
        return deformed_A.new_zeros(deformed_A.shape[0])
    d = (deformed_A[:, i + 1] - deformed_A[:, i]).norm(dim=-1)
    d0 = (base_A[i + 1] - base_A[i]).norm(dim=-1)
    return ((d - d0) ** 2).mean(dim=-1)


def clash_pairs(
    base_A: torch.Tensor, near_A: float = 4.0, far_A: float = 10.0, min_separation: int = 2
) -> torch.Tensor:
    """``(P, 2)`` residue pairs ``i < j``, ``j - i >= min_separation``, ``near_A <= d <= far_A``
    in the input model (the light clash term's candidates), found in row blocks."""
    n = base_A.shape[0]
    out = []
    for a in range(0, n, 1024):
        d = torch.cdist(base_A[a : a + 1024], base_A)
        ii, jj = torch.nonzero((d >= near_A) & (d <= far_A), as_tuple=True)
        ii = ii + a
        keep = jj - ii >= min_separation
        out.append(torch.stack([ii[keep], jj[keep]], dim=1))
    return torch.cat(out) if out else torch.zeros((0, 2), dtype=torch.long)


def clash_loss(deformed_A: torch.Tensor, pairs: torch.Tensor, limit_A: float = 4.0) -> torch.Tensor:
    """Per-image ``(B,)`` ``sum (d - limit)^2`` over the candidate ``pairs`` closer than
    ``limit_A`` in the deformed model, divided by their number (0 when none clash)."""
    if pairs.numel() == 0:
        return deformed_A.new_zeros(deformed_A.shape[0])
    d = (deformed_A[:, pairs[:, 0]] - deformed_A[:, pairs[:, 1]]).norm(dim=-1)
    close = d < limit_A
    pen = torch.where(close, (d - limit_A) ** 2, torch.zeros_like(d))
    return pen.sum(dim=-1) / close.sum(dim=-1).clamp_min(1)


def rigidity_loss(deformed_A: torch.Tensor, base_A: torch.Tensor, residues: torch.Tensor) -> torch.Tensor:
    """Per-image ``(B,)`` mean squared distance (Å^2) of the ``residues`` of ``deformed_A
    (B, N, 3)`` from the best rigid motion ``R x + t`` of their input positions ``base_A
    (N, 3)``. ``R`` is fitted without gradient (at the optimum its own gradient is 0); ``t``
    follows the moved centroid, so the loss is exactly the Kabsch residual."""
    moved = deformed_A[:, residues]
    base = base_A[residues].expand_as(moved)
    with torch.no_grad():
        rot, _ = kabsch(base, moved, torch.ones(moved.shape[:2], dtype=moved.dtype, device=moved.device))
    fitted = torch.einsum("bij,brj->bri", rot, base - base.mean(dim=1, keepdim=True))
    return ((moved - moved.mean(dim=1, keepdim=True) - fitted) ** 2).sum(-1).mean(-1)
