"""Stage B: the part-aware hierarchical Gaussian mixture.

Parts come from stage A (:mod:`.parts`). Part ``a`` has an anchor ``(c̄_a, f̄_a)``:
the centre (pixels, fixed) and the feature (learnable) of the coarse Gaussian nearest the
part's centroid. Fine Gaussian ``i`` belongs to anchor ``a_i`` and stores offsets from it:
``c_i = c̄_{a_i} + Δc_i`` and ``f_i = f̄_{a_i} + Δf_i`` (``Δf_i`` starts at 0 and pays
``λ_f ||Δf_i||²``). For an image with latent ``z``::

    (R_a, t_a) = MLP_A([z, f̄_a])                        rigid motion of part a
    c_i(z) = c̄_a + t_a + R_a (Δc_i + δ_i(z))             δ_i = local flexibility, in the part frame
    m_i(z) = m_i · sigmoid(o_i(z))                       occupancy gate
    (δ_i, o_i) = decoder(z, f_i)

so a part rotates about its anchor and translates, its Gaussians may deform locally
relative to the rotated frame, and any Gaussian may fade out (compositional change).
"""

from __future__ import annotations

import torch
from torch import nn

from ...geometry.rigid import move_about_pivot
from ...representations.gaussian_mixture import GaussianMixture
from .networks import ConditionedMLP, FactorizedDecoder, RigidMotionMLP
from .stage_a import OCCUPANCY_BIAS, DecodedPx

__all__ = ["StageBModel"]


class StageBModel(nn.Module):
    """Fine mixture G_B(z) organised in parts."""

    def __init__(
        self,
        anchor_centres_px: torch.Tensor,
        anchor_features: torch.Tensor,
        anchor_of: torch.Tensor,
        centres_px: torch.Tensor,
        amplitudes: torch.Tensor,
        sigmas_px: torch.Tensor,
        zdim: int,
        hidden: int,
        layers: int,
        apix: float,
        decoder: str = "factorized",
        rank: int = 16,
        anchor_motion: bool = True,
        local_flex: bool = True,
        learn_widths: bool = True,
    ) -> None:
        super().__init__()
        feature_dim = anchor_features.shape[1]
        self.apix = float(apix)
        occ0 = torch.sigmoid(torch.tensor(OCCUPANCY_BIAS))
        self.register_buffer("anchor_centres_px", anchor_centres_px.clone().float())
        self.register_buffer("anchor_of", anchor_of.clone().long())
        self.anchor_features = nn.Parameter(anchor_features.clone().float())
        self.delta_centres_px = nn.Parameter((centres_px - anchor_centres_px[anchor_of]).float())
        self.delta_features = nn.Parameter(torch.zeros(len(centres_px), feature_dim))
        self.log_amplitudes = nn.Parameter(torch.log(amplitudes.clamp_min(1e-8) / occ0).float())
        log_s = torch.log(sigmas_px.clone().float())
        if learn_widths:
            self.log_sigmas_px = nn.Parameter(log_s)
        else:
            self.register_buffer("log_sigmas_px", log_s)
        self.anchor_motion = anchor_motion
        self.local_flex = local_flex
        self.motion = RigidMotionMLP(zdim, feature_dim, hidden, layers)
        if decoder == "mlp":
            self.decoder: nn.Module = ConditionedMLP(zdim, feature_dim, hidden, layers, 4)
            last = self.decoder.rest[-1]
        elif decoder == "factorized":
            self.decoder = FactorizedDecoder(zdim, feature_dim, hidden, layers, 4, rank)
            last = None
        else:
            raise ValueError(f"unknown decoder {decoder!r}")
        if last is not None:
            nn.init.constant_(last.bias[3:], OCCUPANCY_BIAS)
        self.register_buffer("occupancy_bias", torch.tensor(0.0 if last is not None else OCCUPANCY_BIAS))

    # -- structure -----------------------------------------------------------------
    @property
    def n_gaussians(self) -> int:
        return int(self.delta_centres_px.shape[0])

    @property
    def n_parts(self) -> int:
        return int(self.anchor_centres_px.shape[0])

    def sigmas_px(self) -> torch.Tensor:
        return torch.exp(self.log_sigmas_px).clamp(0.4, 6.0)

    def base_centres_px(self) -> torch.Tensor:
        """(G, 3) centres before any motion."""
        return self.anchor_centres_px[self.anchor_of] + self.delta_centres_px

    def gaussian_features(self) -> torch.Tensor:
        return self.anchor_features[self.anchor_of] + self.delta_features

    def feature_penalty(self) -> torch.Tensor:
        """``sum_i ||Δf_i||^2`` (weighted by λ_f in the loss)."""
        return (self.delta_features**2).sum()

    # -- forward -------------------------------------------------------------------
    def part_motion(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotations (B, K, 3, 3) about the anchors and translations (B, K, 3) px."""
        if not self.anchor_motion:
            b, k = z.shape[0], self.n_parts
            eye = torch.eye(3, device=z.device, dtype=z.dtype).expand(b, k, 3, 3)
            return eye, z.new_zeros(b, k, 3)
        return self.motion(z, self.anchor_features)

    def decode(self, z: torch.Tensor) -> DecodedPx:
        """The mixture of each latent ``z (B, zdim)``, in pixels."""
        rot, trans = self.part_motion(z)  # (B, K, 3, 3), (B, K, 3)
        out = self.decoder(z, self.gaussian_features())  # (B, G, 4)
        local = self.delta_centres_px[None]
        if self.local_flex:
            local = local + out[..., :3]
        centres = move_about_pivot(
            local, rot[:, self.anchor_of], trans[:, self.anchor_of], self.anchor_centres_px[self.anchor_of][None]
        )
        occ = torch.sigmoid(out[..., 3] + self.occupancy_bias)
        return DecodedPx(
            centres_px=centres,
            amplitudes=torch.exp(self.log_amplitudes)[None] * occ,
            sigmas_px=self.sigmas_px(),
            occupancy=occ,
        )

    def forward(self, z: torch.Tensor) -> GaussianMixture:
        """The batch of mixtures ``G_B(z)`` in Å (answers central slices)."""
        return self.decode(z).to_mixture(self.apix)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], cfg, apix: float) -> StageBModel:
        """Rebuild from a saved ``state_dict``, the run's :class:`SpireConfig` and its pixel size (Å)."""
        k, f = state["anchor_features"].shape
        g = state["delta_centres_px"].shape[0]
        sb = cfg.stage_b
        model = cls(
            anchor_centres_px=torch.zeros(k, 3),
            anchor_features=torch.zeros(k, f),
            anchor_of=torch.zeros(g, dtype=torch.long),
            centres_px=torch.zeros(g, 3),
            amplitudes=torch.ones(g),
            sigmas_px=torch.ones(g),
            zdim=cfg.zdim,
            hidden=sb.hidden,
            layers=sb.layers,
            apix=apix,
            decoder=sb.decoder,
            rank=sb.rank,
            anchor_motion=sb.anchor_motion,
            local_flex=sb.local_flex,
            learn_widths=sb.learn_widths,
        )
        model.load_state_dict(state)
        return model
