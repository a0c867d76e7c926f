"""CryoSPIRE building blocks: objective identities, part discovery, Kabsch, latents, models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryohet.geometry.rotations import axis_angle_to_matrix, random_rotations
from cryohet.imaging.fft import fft2_centered, frequencies_1d
from cryohet.imaging.gaussians import gaussian_projection_ft
from cryohet.methods.spire.latents import LatentTable
from cryohet.methods.spire.objective import FourierBatch, HalfPlaneGrid, data_term, render_half
from cryohet.methods.spire.parts import discover_parts
from cryohet.methods.spire.seeding import seed_from_map
from cryohet.methods.spire.stage_a import MixtureBatch, StageAModel
from cryohet.methods.spire.stage_b import StageBModel
from cryohet.methods.spire.transition import kabsch


def _band_limited_image(d: int, rng: np.random.Generator) -> torch.Tensor:
    """A real image whose spectrum lies inside the Nyquist disc, without DC."""
    img = torch.as_tensor(rng.standard_normal((d, d)), dtype=torch.float64)
    F = fft2_centered(img)
    c = torch.arange(d, dtype=torch.float64) - d // 2
    r = torch.sqrt(c[None, :] ** 2 + c[:, None] ** 2)
    F = F * (r < d / 2 - 1)
    F[d // 2, d // 2] = 0
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(F))).real


def test_data_term_is_real_space_sum_of_squares(rng):
    d = 32
    img = _band_limited_image(d, rng)
    grid = HalfPlaneGrid.build(d, 2.0)
    grid.weights = grid.weights.double()
    fb = FourierBatch(
        index=torch.zeros(1, dtype=torch.long),
        image_ft=grid.half(fft2_centered(img[None])),
        ctf=None,
        rotations=torch.eye(3, dtype=torch.float64)[None],
        shifts_A=torch.zeros(1, 2, dtype=torch.float64),
    )
    empty = MixtureBatch(torch.zeros(1, 1, 3), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1))
    loss = data_term(empty, fb, grid)
    assert float(loss) == pytest.approx(float((img**2).sum()), rel=1e-6)


def test_render_half_matches_full_plane_projection():
    d, apix = 32, 3.0
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(1, 20, 3, generator=g) * 4  # px
    amps = torch.rand(1, 20, generator=g) + 0.5
    sig = torch.full((20,), 1.2)
    rot = torch.as_tensor(random_rotations(3, 0), dtype=torch.float32)
    shifts = torch.randn(3, 2, generator=g) * 2
    grid = HalfPlaneGrid.build(d, apix)
    fb = FourierBatch(torch.arange(3), torch.zeros(3, d, d // 2, dtype=torch.complex64), None, rot, shifts)
    mix = MixtureBatch(centres.expand(3, -1, -1), amps.expand(3, -1), sig, torch.ones(3, 20))
    half = render_half(mix, fb, grid)
    k = frequencies_1d(d, apix)
    full = gaussian_projection_ft(centres * apix, amps, sig * apix, rot, k, k, apix, shifts_A=shifts)
    assert torch.allclose(half, grid.half(full), rtol=1e-4, atol=1e-4 * float(full.abs().max()))


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


def test_kabsch_recovers_rotation_and_translation():
    g = torch.Generator().manual_seed(3)
    src = torch.randn(4, 30, 3, generator=g, dtype=torch.float64)
    R = torch.as_tensor(random_rotations(4, 1))
    t = torch.randn(4, 3, generator=g, dtype=torch.float64)
    dst = torch.einsum("mij,mpj->mpi", R, src) + t[:, None]
    r_fit, t_fit = kabsch(src, dst, torch.ones(4, 30, dtype=torch.float64))
    assert torch.allclose(r_fit, R, atol=1e-8) and torch.allclose(t_fit, t, atol=1e-8)


def test_latent_table_updates_only_batch_rows():
    table = LatentTable(10, 3, seed=0)
    before = table.z.clone()
    idx = torch.tensor([2, 5])
    table.step(idx, torch.ones(2, 3), lr=0.1)
    changed = (table.z != before).any(dim=1)
    assert changed.tolist() == [i in (2, 5) for i in range(10)]
    # first Adam step moves by lr against the gradient sign
    assert torch.allclose(table.z[idx], before[idx] - 0.1, atol=1e-6)


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
        decoder=decoder,
        anchor_motion=anchor_motion,
    )


@pytest.mark.parametrize("decoder", ["factorized", "mlp"])
def test_stage_b_starts_at_its_rest_configuration(decoder):
    model = _stage_b(decoder)
    mix = model(torch.randn(5, 4))
    assert torch.allclose(mix.centres_px, model.base_centres_px()[None].expand(5, -1, -1), atol=1e-5)
    assert torch.allclose(mix.amplitudes[0], model.log_amplitudes.exp() * mix.occupancy[0])


def test_stage_b_state_dict_round_trip():
    from cryohet.io.particles import ParticleSource
    from cryohet.methods.spire.config import SpireConfig

    model = _stage_b()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    cfg = SpireConfig(data=ParticleSource(path="x.star"), out="run", zdim=4, stage_b={"hidden": 16, "layers": 2})
    copy = StageBModel.from_state_dict(model.state_dict(), cfg)
    z = torch.randn(3, 4)
    assert torch.allclose(copy(z).centres_px, model(z).centres_px)


def test_stage_b_rigid_motion_keeps_part_shape():
    model = _stage_b()
    with torch.no_grad():  # give the motion network some output
        model.motion.net[-1].weight.normal_(0, 0.5)
    mix = model(torch.randn(2, 4))
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
    model = StageAModel(torch.randn(30, 3), torch.ones(30), torch.ones(30), 4, 8, 16, 32, positional_encoding=True)
    assert model.features is None
    assert model.gaussian_features().shape == (30, 8)
    assert model(torch.zeros(2, 4)).centres_px.shape == (2, 30, 3)


def test_lowpass_grid_is_the_full_data_term_restricted_to_the_band():
    from cryohet.methods.spire.objective import restrict_batch

    d, apix, b = 32, 3.0, 3
    g = torch.Generator().manual_seed(5)
    rot = torch.as_tensor(random_rotations(b, 1), dtype=torch.float32)
    img = torch.complex(torch.randn(b, d, d // 2, generator=g), torch.randn(b, d, d // 2, generator=g))
    fb = FourierBatch(torch.arange(b), img, torch.rand(b, d, d // 2, generator=g), rot, torch.randn(b, 2, generator=g))
    mix = MixtureBatch(
        torch.randn(b, 20, 3, generator=g) * 3,
        torch.rand(b, 20, generator=g),
        torch.rand(20, generator=g) + 0.8,
        torch.ones(b, 20),
    )
    full = HalfPlaneGrid.build(d, apix)
    for fraction in (0.5, 0.3):
        sub = full.lowpass(fraction)
        masked = HalfPlaneGrid.build(d, apix, max_radius_px=fraction * d / 2)
        assert sub.ky_A.shape[0] < d and sub.kx_A.shape[0] < d // 2  # rows and columns dropped, not zero-weighted
        assert torch.allclose(data_term(mix, restrict_batch(fb, sub), sub), data_term(mix, fb, masked), rtol=1e-5)
    assert full.lowpass(1.0) is full and restrict_batch(fb, full) is fb


def test_occupancy_energy_weight_is_the_rendered_energy_of_one_gaussian():
    from cryohet.methods.spire.objective import occupancy_energy_weights

    d, apix = 64, 2.0
    grid = HalfPlaneGrid.build(d, apix)
    fb = FourierBatch(
        torch.zeros(1, dtype=torch.long),
        torch.zeros(1, d, d // 2, dtype=torch.complex64),
        None,
        torch.eye(3)[None],
        torch.zeros(1, 2),
    )
    for m, s in ((1.0, 1.5), (0.3, 2.5)):
        mix = MixtureBatch(torch.zeros(1, 1, 3), torch.tensor([[m]]), torch.tensor([s]), torch.ones(1, 1))
        rendered = float(data_term(mix, fb, grid))  # sum of squares of the projection (no CTF)
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
    from cryohet.io.particles import ParticleSource
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
