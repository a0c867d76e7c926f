"""The per-image tables of an ab initio search (DRGN-AI's search epochs, HetACUMN's warm
start): each image is searched against the grid of the centre nearest its table latent, the
found poses and scores land in its rows, and the tables survive a checkpoint."""

from __future__ import annotations

import numpy as np
import torch

from cryohet.geometry.rotations import random_rotations, rotation_angle_deg
from cryohet.imaging.bands import FourierBand
from cryohet.imaging.likelihood import WeightedL2
from cryohet.pose import LocalSchedule, SearchSchedule, SearchTables
from cryohet.representations import GaussianMixture, model_images

D, APIX = 32, 4.0
CTF = torch.tensor([[12000.0, 11000.0, 20.0, 300.0, 2.7, 0.1, 0.0, 0.0, 1.0]])
SCHEDULE = SearchSchedule(base_level=1, rounds=4, shift_extent_px=4.0, shift_n=8, radius_start_px=8, radius_end_px=15)


def _particle(seed: int) -> GaussianMixture:
    """An asymmetric blob of 40 Gaussians (as in test_pose_search)."""
    g = torch.Generator().manual_seed(seed)
    lobe = torch.tensor([6.0, 0.0, 0.0]) * (torch.arange(40)[:, None] % 3 == 0)  # breaks the ellipsoid's symmetry
    c = torch.randn(40, 3, generator=g) * torch.tensor([14.0, 9.0, 6.0]) + lobe
    return GaussianMixture(c, torch.rand(40, generator=g) + 0.5, torch.full((40,), 5.0))


def _two_states(n_each: int = 6):
    """Images of two different particles (rows 0..n-1: state 0), their poses, and a table
    whose latents put each image nearest its own state's centre (``-1`` and ``+1``)."""
    band = FourierBand.disc(D, APIX)
    states = [_particle(2), _particle(9)]
    n = 2 * n_each
    rot = torch.as_tensor(random_rotations(n, 5), dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    shifts = (torch.rand(n, 2, generator=g) - 0.5) * 4 * APIX
    ctf = CTF.repeat(n, 1)
    images = torch.cat(
        [
            model_images(states[s], rot[s * n_each : (s + 1) * n_each], band,
                         band.filters(ctf[:n_each], shifts[s * n_each : (s + 1) * n_each]))
            for s in range(2)
        ]
    )  # fmt: skip
    noise = 0.3 * float(images.abs().pow(2).mean().sqrt())
    images = images + noise * torch.complex(
        torch.randn(images.shape, generator=g), torch.randn(images.shape, generator=g)
    )
    tables = SearchTables(n, zdim=1, seed=0)
    own = torch.tensor([[-1.0]] * n_each + [[1.0]] * n_each)
    tables.latents.assign(torch.arange(n), own)
    sources = (states, torch.tensor([[-1.0], [1.0]]))
    return band, images, band.filters(ctf, None), rot, shifts, tables, sources


def test_each_image_is_searched_against_the_grid_of_its_latent():
    band, images, ctf, rot, shifts, tables, sources = _two_states()
    lik = WeightedL2.white_noise(band)
    n = len(images)
    index = torch.arange(n)
    assert torch.isnan(tables.best_scores).all() and tables.median_score() is None
    res = tables.search(index, images, ctf, sources, lik, SCHEDULE, 15.0, chunk_images=8)
    found, _ = tables.poses.poses()
    err = rotation_angle_deg(found.numpy(), rot.numpy())
    assert np.median(err) < 3.0 and (err < 10.0).sum() >= len(err) - 1, err
    assert float(((tables.poses.poses()[1] - shifts).norm(dim=1) / APIX).median()) < 0.5
    torch.testing.assert_close(tables.best_scores, res.scores)
    # the same images with their latents swapped meet the other state's grid: every score worse
    swapped = SearchTables(n, zdim=1)
    swapped.latents.assign(index, -tables.latents.z)
    wrong = swapped.search(index, images, ctf, sources, lik, SCHEDULE, 15.0, chunk_images=8)
    assert bool((wrong.scores > res.scores).all()), wrong.scores - res.scores


def test_refine_improves_the_table_poses_and_a_checkpoint_round_trips():
    from cryohet.geometry.rotations import axis_angle_to_matrix

    band, images, ctf, rot, shifts, tables, sources = _two_states()
    lik = WeightedL2.white_noise(band)
    n = len(images)
    index = torch.arange(n)
    g = np.random.default_rng(4)
    axes = g.normal(size=(n, 3))
    kick = axis_angle_to_matrix(axes / np.linalg.norm(axes, axis=1, keepdims=True) * np.radians(6.0))
    start = torch.as_tensor(kick, dtype=torch.float32) @ rot
    tables.poses.set(index, start, shifts)
    tables.refine(index, images, ctf, sources, lik, LocalSchedule(step_deg=4.0, min_step_deg=0.5))
    after = rotation_angle_deg(tables.poses.poses()[0].numpy(), rot.numpy())
    assert np.median(after) < 2.0, after
    assert np.isfinite(tables.median_score())
    # one Adam step on a row's latent moves that row only, and the state round-trips
    before = tables.latents.z.clone()
    tables.step_latents(torch.tensor([3]), torch.ones(1, 1), lr=0.1)
    moved = (tables.latents.z - before).abs().squeeze(1)
    assert moved[3] > 0.05 and float(moved.sum() - moved[3]) == 0.0
    copy = SearchTables(n, zdim=1, seed=7)
    copy.load_state_dict({k: (v.clone() if torch.is_tensor(v) else v) for k, v in tables.state_dict().items()})
    torch.testing.assert_close(copy.latents.z, tables.latents.z)
    torch.testing.assert_close(copy.poses.poses()[0], tables.poses.poses()[0])
    torch.testing.assert_close(copy.best_scores, tables.best_scores, equal_nan=True)


def test_a_homogeneous_table_has_no_latents_and_searches_one_grid():
    band, images, ctf, rot, shifts, _, sources = _two_states()
    lik = WeightedL2.white_noise(band)
    tables = SearchTables(len(images), zdim=0)
    assert tables.latents is None and tables.cluster_centres(4) is None and "latents" not in tables.state_dict()
    first = torch.arange(6)  # state 0's images against state 0's grid alone
    tables.search(first, images[:6], ctf[:6], ([sources[0][0]], None), lik, SCHEDULE, 15.0, chunk_images=8)
    err = rotation_angle_deg(tables.poses.poses(first)[0].numpy(), rot[:6].numpy())
    assert np.median(err) < 3.0, err
    assert torch.isnan(tables.best_scores[6:]).all() and torch.isfinite(tables.best_scores[:6]).all()
