"""cryoSPHERE's learned segmentation: a Gaussian mixture over residue index.

Segment ``k`` has a centre ``mu_k`` and a width ``sigma_k`` (in residues) and a proportion
logit ``l_k``. Each is a variational Gaussian with a learnable mean and standard
deviation, sampled once per image (reparameterised); widths and standard deviations go
through ``ELU + 1`` (positive), proportions through a softmax. Residue ``i`` belongs to
segment ``k`` with weight

    w_ik = softmax_k[(-(i - mu_k)^2 / (2 sigma_k^2) + log pi_k) / tau],   tau = 0.05,

so memberships are nearly hard but differentiable. Initial values and priors are the
paper's (Ducrocq et al. 2025, METHODS.md §4): centres at ``(k + 1/2) N / K`` with
standard deviation 10, widths ``N / K`` with standard deviation 10, logits 0 with
standard deviation 1; the same Gaussians are the priors of the KL terms.

The residue index ``i`` runs over the residues of one chain in file order. Decision
(ours, measured): segments never cross a chain boundary. In the paper's whole-protein
mode one mixture runs over all residues, chain after chain; on a Fab hinge the segment
covering the end of the heavy chain and the start of the light chain dragged the heavy
chain along with the light one (heavy-chain errors 6-8 Å, tests/test_sphere_hinge.py).
:class:`ChainSegmentation` therefore gives each movable chain its own mixture, with the
segments shared out in proportion to the chains' lengths (at least one each). A domain
made of several chains (a Fab: heavy + light) is found afterwards as the segments that
move together (:func:`cryohet.methods.sphere.domains.motion_domains`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Segmentation", "ChainSegmentation", "share_segments"]


def _positive(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1.0


def _inverse_positive(y: float) -> float:
    """``x`` with ``elu(x) + 1 = y`` (``y > 0``)."""
    return y - 1.0 if y >= 1.0 else math.log(y)


class Segmentation(nn.Module):
    """Variational segmentation of ``n_residues`` residues into ``n_segments`` (module docstring).

    ``forward(batch)`` samples ``(batch, N, K)`` memberships (means only in eval mode or
    with ``sample=False``); :meth:`kl` is the sum over segments of the three KL terms
    (centres, widths, proportions), each against its prior.
    """

    def __init__(
        self,
        n_residues: int,
        n_segments: int,
        tau: float = 0.05,
        prior_std_centre: float = 10.0,
        prior_std_width: float = 10.0,
        prior_std_logit: float = 1.0,
    ) -> None:
        super().__init__()
        if n_segments < 1 or n_residues < n_segments:
            raise ValueError(f"need 1 <= segments <= residues, got {n_segments} segments for {n_residues} residues")
        n, k = int(n_residues), int(n_segments)
        self.n_residues, self.n_segments, self.tau = n, k, float(tau)
        centres = (torch.arange(k, dtype=torch.float32) + 0.5) * n / k
        width = float(n) / k
        self.register_buffer("prior_centre", centres.clone())
        self.register_buffer("prior_width", torch.full((k,), width))
        self.register_buffer("prior_logit", torch.zeros(k))
        self.register_buffer("prior_std", torch.tensor([prior_std_centre, prior_std_width, prior_std_logit]))
        self.centre_mean = nn.Parameter(centres.clone())
        self.width_mean = nn.Parameter(torch.full((k,), width))
        self.logit_mean = nn.Parameter(torch.zeros(k))
        # raw standard deviations: ELU + 1 of these gives the prior's standard deviations
        self.centre_raw_std = nn.Parameter(torch.full((k,), _inverse_positive(prior_std_centre)))
        self.width_raw_std = nn.Parameter(torch.full((k,), _inverse_positive(prior_std_width)))
        self.logit_raw_std = nn.Parameter(torch.full((k,), _inverse_positive(prior_std_logit)))
        self.register_buffer("index", torch.arange(n, dtype=torch.float32))

    def _sample(self, batch: int, sample: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        def draw(mean: torch.Tensor, raw_std: torch.Tensor) -> torch.Tensor:
            if not sample:
                return mean.expand(batch, -1)
            eps = torch.randn(batch, mean.numel(), device=mean.device, dtype=mean.dtype)
            return mean + _positive(raw_std) * eps

        centres = draw(self.centre_mean, self.centre_raw_std)
        widths = _positive(draw(self.width_mean, self.width_raw_std))
        log_props = torch.log_softmax(draw(self.logit_mean, self.logit_raw_std), dim=-1)
        return centres, widths, log_props

    def forward(self, batch: int = 1, sample: bool | None = None) -> torch.Tensor:
        """Memberships ``(batch, N, K)``; rows sum to 1."""
        c, w, lp = self._sample(batch, self.training if sample is None else sample)
        d = self.index[None, :, None] - c[:, None, :]
        logits = (-(d**2) / (2.0 * w[:, None, :] ** 2) + lp[:, None, :]) / self.tau
        return torch.softmax(logits, dim=-1)

    def hard_labels(self) -> torch.Tensor:
        """``(N,)`` segment of each residue at the variational means."""
        return self.forward(1, sample=False)[0].argmax(dim=-1)

    def kl_terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """KL(q || prior) of the centres, the widths and the proportion logits, each summed
        over segments (the paper anneals the first two together and the third cyclically)."""

        def kl_normal(mean, raw_std, prior_mean, prior_std):
            s = _positive(raw_std)
            return (torch.log(prior_std / s) + (s**2 + (mean - prior_mean) ** 2) / (2 * prior_std**2) - 0.5).sum()

        p = self.prior_std
        return (
            kl_normal(self.centre_mean, self.centre_raw_std, self.prior_centre, p[0]),
            kl_normal(self.width_mean, self.width_raw_std, self.prior_width, p[1]),
            kl_normal(self.logit_mean, self.logit_raw_std, self.prior_logit, p[2]),
        )

    def kl(self) -> torch.Tensor:
        """The sum of :meth:`kl_terms` (scalar)."""
        return sum(self.kl_terms())


def share_segments(sizes: list[int], n_segments: int) -> list[int]:
    """Segments per chain: in proportion to ``sizes`` (residues), at least 1 and at most the
    chain's residues each, summing to ``n_segments`` (largest remainders first)."""
    sizes = [int(s) for s in sizes]
    if n_segments < len(sizes):
        raise ValueError(f"{n_segments} segments for {len(sizes)} movable chains: need at least one per chain")
    if n_segments > sum(sizes):
        raise ValueError(f"{n_segments} segments for {sum(sizes)} movable residues")
    total = float(sum(sizes))
    ideal = [n_segments * s / total for s in sizes]
    share = [min(s, max(1, int(math.floor(x)))) for s, x in zip(sizes, ideal)]
    while sum(share) < n_segments:  # add where the ideal share is furthest above the current one
        j = max((i for i in range(len(sizes)) if share[i] < sizes[i]), key=lambda i: ideal[i] - share[i])
        share[j] += 1
    while sum(share) > n_segments:
        j = max((i for i in range(len(sizes)) if share[i] > 1), key=lambda i: share[i] - ideal[i])
        share[j] -= 1
    return share


class ChainSegmentation(nn.Module):
    """One :class:`Segmentation` per chain, segments numbered chain after chain (module docstring).

    ``chain_of (N,)``: an integer chain label per movable residue (residues of one chain
    may be anywhere in the order; within a chain the index runs in the given order).
    ``forward(batch)`` gives ``(batch, N, K)`` memberships, block-diagonal by chain.
    """

    def __init__(self, chain_of: torch.Tensor | list[int], n_segments: int, tau: float = 0.05) -> None:
        super().__init__()
        chain_of = torch.as_tensor(chain_of, dtype=torch.long)
        labels = list(dict.fromkeys(chain_of.tolist()))
        rows = [torch.nonzero(chain_of == c).squeeze(1) for c in labels]
        share = share_segments([len(r) for r in rows], int(n_segments))
        self.n_residues, self.n_segments = int(len(chain_of)), int(n_segments)
        self.parts = nn.ModuleList(Segmentation(len(r), k, tau=tau) for r, k in zip(rows, share))
        for i, r in enumerate(rows):
            self.register_buffer(f"rows_{i}", r)
        offsets = [0]
        for k in share:
            offsets.append(offsets[-1] + k)
        self.offsets = offsets
        self.share = share

    def _rows(self, i: int) -> torch.Tensor:
        return getattr(self, f"rows_{i}")

    def forward(self, batch: int = 1, sample: bool | None = None) -> torch.Tensor:
        """Memberships ``(batch, N, K)``; rows sum to 1."""
        out = None
        for i, part in enumerate(self.parts):
            w = part(batch, sample)  # (B, n_c, K_c)
            if out is None:
                out = w.new_zeros(batch, self.n_residues, self.n_segments)
            block = w.new_zeros(batch, w.shape[1], self.n_segments)
            block[:, :, self.offsets[i] : self.offsets[i + 1]] = w
            out = out.index_copy(1, self._rows(i), block)
        return out

    def hard_labels(self) -> torch.Tensor:
        """``(N,)`` segment of each residue at the variational means."""
        return self.forward(1, sample=False)[0].argmax(dim=-1)

    def kl_terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The chains' :meth:`Segmentation.kl_terms`, summed term by term."""
        terms = [p.kl_terms() for p in self.parts]
        return tuple(sum(t[j] for t in terms) for j in range(3))  # type: ignore[return-value]

    def kl(self) -> torch.Tensor:
        return sum(self.kl_terms())
