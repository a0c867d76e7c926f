"""Networks of CryoSPIRE: per-Gaussian decoders conditioned on ``(z, f_i)``, rigid part motion.

Per-Gaussian decoders map an image's latent ``z`` (B, zdim) and every Gaussian's feature
``f_i`` (G, F) to per-(image, Gaussian) outputs (B, G, out):

* :class:`ConditionedMLP` is the paper's ``MLP([z, f_i])``. Its first layer splits into
  ``W_z z + W_f f_i``: the feature half is computed once per step for all Gaussians, the
  latent half once per image, so only the deeper layers run per (image, Gaussian).
* :class:`FactorizedDecoder` is ``B(f_i) · phi(z)``: an MLP on the features gives each
  Gaussian a ``(out, rank)`` basis (image-independent, once per step) and an MLP on ``z``
  gives ``rank`` coefficients per image; the product costs ``G·out·rank`` per image
  instead of ``G·hidden²·layers``. Same inputs and outputs; a rank-``rank`` family.

:class:`RigidMotionMLP` is ``MLP_A([z, f_a])`` -> a rotation (continuous 6D, identity at
initialisation) and a translation (pixels) per image and part.

Every output layer starts at zero, so an untrained decoder leaves the mixture unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from ...geometry.rotations import sixd_to_matrix
from ...networks.mlp import mlp

__all__ = ["ConditionedMLP", "FactorizedDecoder", "RigidMotionMLP"]


class ConditionedMLP(nn.Module):
    """``MLP([z, f_i])`` for every image and Gaussian -> (B, G, n_out)."""

    def __init__(self, zdim: int, feature_dim: int, hidden: int, layers: int, n_out: int) -> None:
        super().__init__()
        self.first_z = nn.Linear(zdim, hidden, bias=False)
        self.first_f = nn.Linear(feature_dim, hidden)
        self.rest = mlp(hidden, hidden, layers - 1, n_out)

    def forward(self, z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        h = self.first_z(z)[:, None, :] + self.first_f(features)[None, :, :]
        return self.rest(torch.relu(h))


class FactorizedDecoder(nn.Module):
    """``B(f_i) · phi(z)`` -> (B, G, n_out), with a ``rank``-dimensional ``phi``."""

    def __init__(self, zdim: int, feature_dim: int, hidden: int, layers: int, n_out: int, rank: int) -> None:
        super().__init__()
        self.n_out, self.rank = n_out, rank
        self.basis = mlp(feature_dim, hidden, layers, n_out * rank)  # zero basis at start
        self.coeff = mlp(zdim, hidden, layers, rank, zero_last=False)

    def forward(self, z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        basis = self.basis(features).reshape(features.shape[0], self.n_out, self.rank)  # (G, out, r)
        phi = self.coeff(z)  # (B, r)
        return torch.einsum("gor,br->bgo", basis, phi)


class RigidMotionMLP(nn.Module):
    """``MLP_A([z, f_a])`` -> rotations (B, K, 3, 3) and translations (B, K, 3) in pixels."""

    def __init__(self, zdim: int, feature_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = mlp(zdim + feature_dim, hidden, layers, 9)
        self.register_buffer("identity6d", torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, z: torch.Tensor, anchor_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, k = z.shape[0], anchor_features.shape[0]
        x = torch.cat([z[:, None, :].expand(b, k, -1), anchor_features[None].expand(b, k, -1)], dim=-1)
        out = self.net(x)
        rot = sixd_to_matrix(out[..., :6] + self.identity6d)
        return rot, out[..., 6:]
