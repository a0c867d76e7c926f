"""Discrete latent search: images jump to the candidate latent that explains them."""

from __future__ import annotations

import torch
from torch import nn

from cryohet.geometry.rotations import random_rotations
from cryohet.methods.spire.latent_search import candidate_latents, score_candidates
from cryohet.methods.spire.objective import data_band, data_likelihood
from cryohet.representations import BandBatch, GaussianMixture, model_images


class _TwoSubunits(nn.Module):
    """A fixed core plus a subunit whose occupancy is sigmoid(4 z_0): z_0 = +1 present, -1 absent."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.core = torch.randn(30, 3, generator=g) * 3.0
        self.sub = torch.randn(10, 3, generator=g) * 1.5 + torch.tensor([6.0, 0.0, 0.0])

    def forward(self, z: torch.Tensor) -> GaussianMixture:
        b = z.shape[0]
        occ_sub = torch.sigmoid(4 * z[:, :1]).expand(b, 10)
        occ = torch.cat([torch.ones(b, 30), occ_sub], dim=1)
        centres = torch.cat([self.core, self.sub])[None].expand(b, -1, -1)
        return GaussianMixture(centres * APIX, 3.0 * occ, torch.full((40,), 1.3 * APIX), occupancy=occ)


APIX = 3.0


def _noisy_batch(model, z_true, rot, band, seed):
    """Images of ``model(z_true)`` plus complex noise, on ``band`` (no CTF, no shift)."""
    n = len(z_true)
    clean = model_images(model(z_true), rot, band)
    g = torch.Generator().manual_seed(seed)
    noise = torch.complex(torch.randn(clean.shape, generator=g), torch.randn(clean.shape, generator=g))
    return BandBatch(torch.arange(n), clean + noise * 0.3 * band.box, None, rot, None, band)


def test_candidate_search_assigns_each_image_to_its_state():
    d, n = 32, 48
    model = _TwoSubunits()
    band = data_band(d, APIX)
    lik = data_likelihood(band)
    truth = torch.tensor([1.0, -1.0]).repeat(n // 2)  # z_0 of each image
    z_true = torch.stack([truth, torch.zeros(n)], dim=1)
    rot = torch.as_tensor(random_rotations(n, 3), dtype=torch.float32)
    fb = _noisy_batch(model, z_true, rot, band, 2)
    # every image starts in the wrong basin: the gradient would have to cross z_0 = 0
    z_own = -z_true.clone()
    cands = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    lam = 0.1
    own, best, choice = score_candidates(model, fb, lik, z_own, model(cands), lam * (cands**2).sum(1), lam)
    assert (best <= own).all()
    want = torch.where(truth > 0, 0, 1)
    assert (choice == want).float().mean() >= 0.95
    # an image already at its true latent keeps it
    own2, best2, choice2 = score_candidates(
        model, fb, lik, z_true, model(cands[2:]), lam * (cands[2:] ** 2).sum(1), lam
    )
    assert (choice2 == -1).float().mean() >= 0.95
    assert torch.equal(best2 <= own2, torch.ones(n, dtype=torch.bool))


def test_candidate_latents_are_cluster_centres():
    g = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(100, 2, generator=g) * 0.1 + 3, torch.randn(100, 2, generator=g) * 0.1 - 3]).numpy()
    c = candidate_latents(z, 2, seed=0)
    c = c[c[:, 0].argsort()]
    assert abs(c[0, 0] + 3) < 0.1 and abs(c[1, 0] - 3) < 0.1
    assert len(candidate_latents(z[:1], 5)) == 1


def test_low_band_search_still_assigns_images():
    """Scoring on half the band (a quarter of the cost) keeps the assignments."""
    d, n = 32, 48
    model = _TwoSubunits()
    band = data_band(d, APIX)
    truth = torch.tensor([1.0, -1.0]).repeat(n // 2)
    z_true = torch.stack([truth, torch.zeros(n)], dim=1)
    rot = torch.as_tensor(random_rotations(n, 4), dtype=torch.float32)
    fb = _noisy_batch(model, z_true, rot, band, 3)
    sub = band.lowpass(0.5)
    cands = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    lik = data_likelihood(band).on(sub)
    _, _, choice = score_candidates(model, fb.restrict(sub), lik, -z_true, model(cands), 0.1 * (cands**2).sum(1), 0.1)
    assert (choice == torch.where(truth > 0, 0, 1)).float().mean() >= 0.95
