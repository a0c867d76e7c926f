"""CryoSPIRE building blocks: objective identities, part discovery, Kabsch, latents, models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryohet.geometry.rotations import axis_angle_to_matrix
from cryohet.methods.spire.objective import data_band, data_likelihood
from cryohet.methods.spire.parts import discover_parts
from cryohet.methods.spire.stage_a import StageAModel
from cryohet.methods.spire.stage_b import StageBModel
from cryohet.representations import GaussianMixture, model_images
from cryohet.representations.gaussian_seeding import seed_from_map


def _two_body_trajectories(n_latents=24, seed=0):
    """Body 1 (static) and body 2 (rotating about a hinge by up to 60 degrees)."""
    rng = np.random.default_rng(seed)
    body1 = rng.normal(0, 3, (80, 3)) + np.array([-6.0, 0, 0])
    body2 = rng.normal(0, 3, (60, 3)) + np.array([8.0, 0, 0])
    hinge = np.array([1.0, 0, 0])
    base = np.concatenate([body1, body2])
    pos = []
    for ang in np.linspace(0, np.deg2rad(60), n_latents):
        R = axis_angle_to_matrix(np.array([0, 0, ang]))
        moved = (body2 - hinge) @ R.T + hinge
        pos.append(np.concatenate([body1, moved]))
    truth = np.r_[np.zeros(80, int), np.ones(60, int)]
    return np.array(pos), np.ones((n_latents, 140)), base, truth


def _purity(labels, truth):
    """Fraction of each true body in its most common part, and that part's share of the rest."""
    out = []
    for t in np.unique(truth):
        lab = labels[truth == t]
        top = np.bincount(lab).argmax()
        out.append(((lab == top).mean(), (labels[truth != t] == top).mean()))
    return out


def test_parts_separate_a_rotating_body_without_splitting_it():
    pos, occ, base, truth = _two_body_trajectories()
    parts = discover_parts(pos, occ, base, np.ones(len(base)), max_radius_px=100.0)
    assert parts.n_parts == 2
    for own, other in _purity(parts.labels, truth):  # the two blobs' tails overlap in space
        assert own >= 0.97 and other <= 0.03


def test_parts_follow_occupancy_for_compositional_change():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 3, (120, 3))
    base[80:] += np.array([12.0, 0.0, 0.0])  # a subunit: contiguous, beside the core
    pos = np.repeat(base[None], 16, axis=0)
    occ = np.ones((16, 120))
    occ[8:, 80:] = 0.02  # a subunit present in half of the states
    truth = np.r_[np.zeros(80, int), np.ones(40, int)]
    parts = discover_parts(pos, occ, base, np.ones(120), max_radius_px=100.0)
    assert parts.n_parts == 2
    for own, other in _purity(parts.labels, truth):
        assert own >= 0.97 and other <= 0.03


def test_requested_part_count_and_anchor_inside_part():
    pos, occ, base, _ = _two_body_trajectories()
    parts = discover_parts(pos, occ, base, np.ones(len(base)), n_parts=5)
    assert parts.n_parts == 5
    for k, a in enumerate(parts.anchors):
        assert parts.labels[a] == k


def _stage_b(decoder="factorized", anchor_motion=True):
    g = torch.Generator().manual_seed(0)
    return StageBModel(
        anchor_centres_px=torch.randn(3, 3, generator=g),
        anchor_features=torch.randn(3, 8, generator=g),
        anchor_of=torch.randint(0, 3, (50,), generator=g),
        centres_px=torch.randn(50, 3, generator=g) * 4,
        amplitudes=torch.rand(50, generator=g) + 0.1,
        sigmas_px=torch.full((50,), 1.1),
        zdim=4,
        hidden=16,
        layers=2,
        apix=2.0,
        decoder=decoder,
        anchor_motion=anchor_motion,
    )


@pytest.mark.parametrize("decoder", ["factorized", "mlp"])
def test_stage_b_starts_at_its_rest_configuration(decoder):
    model = _stage_b(decoder)
    mix = model.decode(torch.randn(5, 4))
    assert torch.allclose(mix.centres_px, model.base_centres_px()[None].expand(5, -1, -1), atol=1e-5)
    assert torch.allclose(mix.amplitudes[0], model.log_amplitudes.exp() * mix.occupancy[0])


def test_stage_b_state_dict_round_trip():
    from cryohet.io.source import ParticleSource
    from cryohet.methods.spire.config import SpireConfig

    model = _stage_b()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    cfg = SpireConfig(data=ParticleSource(path="x.star"), out="run", zdim=4, stage_b={"hidden": 16, "layers": 2})
    copy = StageBModel.from_state_dict(model.state_dict(), cfg, 2.0)
    z = torch.randn(3, 4)
    assert torch.allclose(copy(z).centres_A, model(z).centres_A)


def test_stage_b_rigid_motion_keeps_part_shape():
    model = _stage_b()
    with torch.no_grad():  # give the motion network some output
        model.motion.net[-1].weight.normal_(0, 0.5)
    mix = model.decode(torch.randn(2, 4))
    rest = model.base_centres_px()
    for k in range(3):
        sel = model.anchor_of == k
        d_rest = torch.cdist(rest[sel], rest[sel])
        d_moved = torch.cdist(mix.centres_px[1, sel], mix.centres_px[1, sel])
        assert torch.allclose(d_rest, d_moved, atol=1e-4)  # rigid (no local flex learned yet)


def test_seed_from_map_conserves_mass_and_support():
    d = 24
    vol = np.zeros((d, d, d))
    vol[8:16, 10:14, 9:15] = 2.0
    seed = seed_from_map(vol, 300, np.random.default_rng(0))
    mass = seed.amplitudes.sum() * (2 * np.pi) ** 1.5 * seed.sigmas_px[0] ** 3
    assert mass == pytest.approx(vol.sum(), rel=1e-6)
    idx = np.round(seed.centres_px + d // 2).astype(int)
    x, y, z = idx.T
    assert (vol[np.clip(z, 0, d - 1), np.clip(y, 0, d - 1), np.clip(x, 0, d - 1)] > 0).mean() > 0.95


def test_stage_a_positional_encoding_ablation_has_no_free_features():
    model = StageAModel(torch.randn(30, 3), torch.ones(30), torch.ones(30), 4, 8, 16, 32, 2.0, positional_encoding=True)
    assert model.features is None
    assert model.gaussian_features().shape == (30, 8)
    assert model(torch.zeros(2, 4)).centres_A.shape == (2, 30, 3)


def test_occupancy_energy_weight_is_the_rendered_energy_of_one_gaussian():
    from cryohet.methods.spire.objective import occupancy_energy_weights

    d, apix = 64, 2.0
    band = data_band(d, apix)
    lik = data_likelihood(band)
    for m, s in ((1.0, 1.5), (0.3, 2.5)):
        mix = GaussianMixture(torch.zeros(1, 1, 3), torch.tensor([[m]]), torch.tensor([s * apix]))
        model = model_images(mix, torch.eye(3)[None], band)
        rendered = float(lik.score(torch.zeros_like(model), model))  # sum of squares of the projection (no CTF)
        analytic = 2 * float(
            occupancy_energy_weights(torch.tensor([m]), torch.tensor([s]))[0]
        )  # E is the CTF-halved value
        assert rendered == pytest.approx(analytic, rel=0.02)


def test_occupancy_prior_rounds_minority_gates():
    """E (g - p)^2 + κ E g (1 - g): with κ = 1 the optimum is 0 for p < 1/2 and 1 above."""
    from cryohet.methods.spire.objective import occupancy_prior

    energy = torch.tensor([4.0])
    for p, kappa, want in ((0.3, 1.0, 0.0), (0.7, 1.0, 1.0), (0.3, 0.0, 0.3), (0.4, 0.5, (0.8 - 0.5) / 1.0)):
        logit = torch.zeros(1, 1, requires_grad=True)
        opt = torch.optim.Adam([logit], lr=0.05)
        for _ in range(3000):
            g = torch.sigmoid(logit)
            loss = (energy * (g - p) ** 2).sum() + kappa * occupancy_prior(g, energy).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert float(torch.sigmoid(logit.detach())) == pytest.approx(want, abs=0.03)


def test_stage_b_search_schedule():
    from cryohet.io.source import ParticleSource
    from cryohet.methods.spire.config import SpireConfig

    def cfg(**kw):
        return SpireConfig(data=ParticleSource(path="x.star"), out="r", **kw)

    assert cfg(stage_a={"epochs": 10}, stage_b={"epochs": 10}).stage_b_search_epochs == (18,)
    assert cfg(stage_a={"epochs": 10}, stage_b={"epochs": 10}, search_every=2).stage_b_search_epochs == (12, 14, 16, 18)
    assert cfg(stage_a={"epochs": 15}, stage_b={"epochs": 30}, search_every=4).stage_b_search_epochs == (
        19,
        23,
        27,
        31,
        35,
        38,
    )
    assert cfg(stage_b={"epochs": 10}, latent_search=0, search_every=2).stage_b_search_epochs == ()
