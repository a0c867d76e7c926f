"""Pose search: the score of a pose is the training loss at that pose, and the search finds
the poses images were made at."""

from __future__ import annotations

import numpy as np
import torch

from cryohet.geometry.rotations import random_rotations, rotation_angle_deg
from cryohet.imaging.bands import FourierBand
from cryohet.imaging.likelihood import WeightedL2
from cryohet.imaging.shifts import phase_ramp
from cryohet.pose import PoseTable, SearchSchedule, image_terms, score_each, score_shared, search_poses
from cryohet.representations import GaussianMixture, model_images

D, APIX = 32, 4.0
CTF = torch.tensor([[12000.0, 11000.0, 20.0, 300.0, 2.7, 0.1, 0.0, 0.0, 1.0]])


def _particle(seed: int = 0) -> GaussianMixture:
    """An asymmetric blob of 40 Gaussians (no rotational symmetry to confuse the search)."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(40, 3, generator=g) * torch.tensor([14.0, 9.0, 6.0]) + torch.tensor([6.0, 0.0, 0.0]) * (
        torch.arange(40)[:, None] % 3 == 0
    )
    return GaussianMixture(c, torch.rand(40, generator=g) + 0.5, torch.full((40,), 5.0))


def _images(src, rot, shifts_A, ctf, band, noise: float, seed: int = 1):
    clean = model_images(src, rot, band, band.filters(ctf, shifts_A))
    g = torch.Generator().manual_seed(seed)
    sigma = noise * float(clean.abs().pow(2).mean().sqrt())
    return clean + sigma * torch.complex(torch.randn(clean.shape, generator=g), torch.randn(clean.shape, generator=g))


def test_scores_equal_the_likelihood_at_every_pose():
    band = FourierBand.disc(D, APIX)
    lik = WeightedL2.white_noise(band)
    src = _particle()
    rot = torch.as_tensor(random_rotations(3, 0), dtype=torch.float32)
    ctf = band.filters(CTF.repeat(3, 1), None)
    y = _images(src, rot, torch.zeros(3, 2), CTF.repeat(3, 1), band, noise=0.5)
    terms = image_terms(y, ctf, lik)
    cand = torch.as_tensor(random_rotations(5, 1), dtype=torch.float32)
    shifts = torch.tensor([[0.0, 0.0], [4.0, -8.0], [-2.5, 1.0]])
    shared = score_shared(terms, src.slices(cand, band), shifts)  # (3, 3 shifts, 5 rotations)
    each = score_each(terms, src.slices(cand, band)[None].expand(3, -1, -1, -1), shifts[None].expand(3, -1, -1))
    for b in range(3):
        for t in range(3):
            filt = ctf[b : b + 1] * phase_ramp(band.kx_per_A, band.ky_per_A, shifts[t : t + 1])
            direct = lik.score(y[b : b + 1].expand(5, -1, -1), model_images(src, cand, band, filt))
            torch.testing.assert_close(shared[b, t], direct, rtol=2e-4, atol=1e-3)
            torch.testing.assert_close(each[b, t], direct, rtol=2e-4, atol=1e-3)


def test_search_recovers_rotations_and_shifts():
    band = FourierBand.disc(D, APIX)
    lik = WeightedL2.white_noise(band)
    src = _particle(2)
    n = 12
    rot = torch.as_tensor(random_rotations(n, 5), dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    shifts = (torch.rand(n, 2, generator=g) - 0.5) * 6 * APIX
    y = _images(src, rot, shifts, CTF.repeat(n, 1), band, noise=0.3)
    schedule = SearchSchedule(base_level=1, rounds=4, shift_extent_px=4.0, shift_n=8, radius_start_px=8,
                              radius_end_px=15)  # fmt: skip
    res = search_poses(y, band.filters(CTF.repeat(n, 1), None), torch.zeros(n, dtype=torch.long), [src], lik, schedule)
    err = rotation_angle_deg(res.rotations.numpy(), rot.numpy())
    assert np.median(err) < 3.0, err
    shift_err = (res.shifts_A - shifts).norm(dim=1) / APIX
    assert float(shift_err.median()) < 0.5, shift_err
    # the reported score is the likelihood at the found pose on the last round's band
    sub = band.lowpass(15 / (D / 2))
    direct = lik.on(sub).score(
        sub.restrict(y, band), model_images(src, res.rotations, sub, sub.filters(CTF.repeat(n, 1), res.shifts_A))
    )
    torch.testing.assert_close(res.scores, direct, rtol=2e-4, atol=1e-2)


def test_pose_table_round_trip_and_gradient_step():
    table = PoseTable(4)
    R = torch.as_tensor(random_rotations(2, 7), dtype=torch.float32)
    idx = torch.tensor([1, 3])
    table.set(idx, R, torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
    rot, sh = table.poses(idx)
    torch.testing.assert_close(rot, R, atol=1e-5, rtol=0)
    assert torch.equal(table.poses(torch.tensor([0]))[0][0], torch.eye(3))
    rows = table.batch(idx)
    rot_b, sh_b = PoseTable.unpack(rows)
    (rot_b.sum() + sh_b.sum()).backward()
    before = table.table.z.clone()
    table.step(idx, rows.grad, lr_rotation=0.01, lr_shift_A=0.5)
    moved = (table.table.z - before).abs()
    assert float(moved[[0, 2]].max()) == 0.0  # untouched rows
    assert torch.allclose(moved[idx, 6:], torch.full((2, 2), 0.5), atol=1e-5)  # first Adam step = lr
