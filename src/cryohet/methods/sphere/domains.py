"""What moves: per-segment motion sizes and domains (segments that move together).

Segments are per chain (:mod:`.segmentation`), so a rigid domain made of several chains
(a Fab: heavy and light chain) is several segments. Two segments ``a`` and ``b`` belong
to one domain when moving the residues of both with ``a``'s transform or with ``b``'s
gives nearly the same positions over the images: the RMS difference

    d_ab = sqrt(mean_images mean_{i in a or b} |T_a(x_i) - T_b(x_i)|^2)

is below ``tolerance_A`` (2 Å by default, about a residue's Gaussian width). Domains are
the connected components of that relation, so segments that do not move at all form one
domain (the static core). All positions are Å from the box centre, as the network's.
"""

from __future__ import annotations

import numpy as np
import roma
import torch

__all__ = ["segment_displacements_A", "motion_domains"]


def _apply(rotvecs: torch.Tensor, translations_A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(M, P, 3)``: points ``x (P, 3)`` moved by each image's ``R x + t`` (``rotvecs (M, 3)``)."""
    rot = roma.rotvec_to_rotmat(rotvecs)
    return torch.einsum("mij,pj->mpi", rot, x) + translations_A[:, None, :]


def segment_displacements_A(
    base_A: np.ndarray, labels: np.ndarray, rotvecs: np.ndarray, translations_A: np.ndarray
) -> np.ndarray:
    """``(M, K)``: per image, the RMS displacement (Å) of each segment's residues from the
    input model (0 for an empty segment). ``rotvecs``, ``translations_A``: ``(M, K, 3)``."""
    x = torch.as_tensor(np.asarray(base_A), dtype=torch.float64)
    rv = torch.as_tensor(np.asarray(rotvecs), dtype=torch.float64)
    tr = torch.as_tensor(np.asarray(translations_A), dtype=torch.float64)
    m, k = rv.shape[:2]
    out = np.zeros((m, k))
    for j in range(k):
        sel = np.flatnonzero(labels == j)
        if len(sel):
            moved = _apply(rv[:, j], tr[:, j], x[sel])
            out[:, j] = ((moved - x[sel]) ** 2).sum(-1).mean(-1).sqrt().numpy()
    return out


def motion_domains(
    base_A: np.ndarray,
    labels: np.ndarray,
    rotvecs: np.ndarray,
    translations_A: np.ndarray,
    tolerance_A: float = 2.0,
) -> np.ndarray:
    """``(K,)`` domain index of each segment (module docstring); -1 for an empty segment.
    Domains are numbered by their first segment."""
    x = torch.as_tensor(np.asarray(base_A), dtype=torch.float64)
    rv = torch.as_tensor(np.asarray(rotvecs), dtype=torch.float64)
    tr = torch.as_tensor(np.asarray(translations_A), dtype=torch.float64)
    k = rv.shape[1]
    members = [np.flatnonzero(labels == j) for j in range(k)]
    parent = list(range(k))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a in range(k):
        for b in range(a + 1, k):
            if not len(members[a]) or not len(members[b]):
                continue
            pts = x[np.concatenate([members[a], members[b]])]
            diff = _apply(rv[:, a], tr[:, a], pts) - _apply(rv[:, b], tr[:, b], pts)
            if float((diff**2).sum(-1).mean().sqrt()) < tolerance_A:
                parent[root(b)] = root(a)
    out = np.full(k, -1, dtype=np.int64)
    names: dict[int, int] = {}
    for j in range(k):
        if len(members[j]):
            out[j] = names.setdefault(root(j), len(names))
    return out
