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

The residue index ``i`` runs over the movable residues in file order, chain after chain
(``0 .. N - 1``): a segment may cover the end of one chain and the start of the next,
as in the paper's whole-protein mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Segmentation"]


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
