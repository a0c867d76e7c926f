"""Stage A: coarse Gaussians with free features, offsets and occupancy conditioned on z.

Gaussian ``i`` has a base centre ``c_i`` (pixels from the box centre, ``(x, y, z)``), a
base amplitude ``m_i``, a fixed width ``s_i`` (the paper keeps the scales fixed) and a
learnable feature ``f_i`` (24-d, random start). For an image with latent ``z``::

    c_i(z) = c_i + MLP_Gc([z, f_i])          m_i(z) = m_i * sigmoid(MLP_Gm([z, f_i]))

with one hidden layer of 32 units each. Gaussians that move together, or appear and
vanish together, need similar decoder responses, which is what part discovery reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...networks.features import fourier_position_features
from ...representations.gaussian_mixture import GaussianMixture
from .networks import ConditionedMLP

__all__ = ["DecodedPx", "StageAModel", "OCCUPANCY_BIAS"]

#: Initial occupancy logit: sigmoid(3) = 0.95, so gates can move both ways from the start.
OCCUPANCY_BIAS = 3.0


@dataclass
class DecodedPx:
    """Per-image mixtures in pixels, as the networks decode them: centres (B, G, 3) px,
    amplitudes (B, G), widths (G,) px, occupancy gates (B, G) in (0, 1)."""

    centres_px: torch.Tensor
    amplitudes: torch.Tensor
    sigmas_px: torch.Tensor
    occupancy: torch.Tensor

    def to_mixture(self, apix: float) -> GaussianMixture:
        """The same mixtures in Å (the shared representation; widths shared by the batch)."""
        return GaussianMixture(
            self.centres_px.float() * apix,
            self.amplitudes.float(),
            self.sigmas_px.float() * apix,
            occupancy=self.occupancy,
        )


class StageAModel(nn.Module):
    """Coarse mixture G_A(z)."""

    def __init__(
        self,
        centres_px: torch.Tensor,
        amplitudes: torch.Tensor,
        sigmas_px: torch.Tensor,
        zdim: int,
        feature_dim: int,
        hidden: int,
        box: int,
        apix: float,
        positional_encoding: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        occ0 = torch.sigmoid(torch.tensor(OCCUPANCY_BIAS))
        self.centres_px = nn.Parameter(centres_px.clone().float())
        self.log_amplitudes = nn.Parameter(torch.log(amplitudes.clamp_min(1e-8) / occ0).float())
        self.register_buffer("sigmas_px", sigmas_px.clone().float())
        self.positional_encoding = positional_encoding
        self.feature_dim, self.seed = feature_dim, seed
        self.features = (
            None if positional_encoding else nn.Parameter(torch.randn(len(centres_px), feature_dim, generator=gen))
        )
        self.offset = ConditionedMLP(zdim, feature_dim, hidden, 1, 3)
        self.occupancy = ConditionedMLP(zdim, feature_dim, hidden, 1, 1)
        nn.init.constant_(self.occupancy.rest[-1].bias, OCCUPANCY_BIAS)
        self.box = box
        self.apix = float(apix)

    @property
    def n_gaussians(self) -> int:
        return int(self.centres_px.shape[0])

    def gaussian_features(self) -> torch.Tensor:
        """(G, F): learned features, or positional features in the ablation."""
        if self.positional_encoding:
            return fourier_position_features(self.centres_px.detach(), self.box, self.feature_dim, self.seed)
        return self.features

    def decode(self, z: torch.Tensor) -> DecodedPx:
        """The mixture of each latent ``z (B, zdim)``, in pixels."""
        f = self.gaussian_features()
        offsets = self.offset(z, f)
        occ = torch.sigmoid(self.occupancy(z, f)[..., 0])
        return DecodedPx(
            centres_px=self.centres_px[None] + offsets,
            amplitudes=torch.exp(self.log_amplitudes)[None] * occ,
            sigmas_px=self.sigmas_px,
            occupancy=occ,
        )

    def forward(self, z: torch.Tensor) -> GaussianMixture:
        """The batch of mixtures ``G_A(z)`` in Å (answers central slices)."""
        return self.decode(z).to_mixture(self.apix)

    @torch.no_grad()
    def responses(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets (M, G, 3) px and occupancy (M, G) at latents ``z`` (M, zdim)."""
        out = self.decode(z)
        return out.centres_px - self.centres_px[None], out.occupancy
