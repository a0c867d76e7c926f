"""Local pose refinement: from poses a few degrees and pixels off, the local search returns
to the poses the images were made at, never scores worse than where it started, and its
score is the likelihood at the pose it returns."""

from __future__ import annotations

import numpy as np
import torch

from cryohet.geometry.rotations import axis_angle_to_matrix, random_rotations, rotation_angle_deg
from cryohet.imaging.bands import FourierBand
from cryohet.imaging.likelihood import WeightedL2
from cryohet.pose.local_search import LocalSchedule, local_search, perturbations
from cryohet.representations import GaussianMixture, model_images

D, APIX = 32, 4.0
CTF = torch.tensor([[12000.0, 11000.0, 20.0, 300.0, 2.7, 0.1, 0.0, 0.0, 1.0]])


def _particle(seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(40, 3, generator=g) * torch.tensor([14.0, 9.0, 6.0])
    return GaussianMixture(c, torch.rand(40, generator=g) + 0.5, torch.full((40,), 5.0))


def _setup(n: int, noise: float):
    band = FourierBand.disc(D, APIX)
    lik = WeightedL2.white_noise(band)
    src = _particle(4)
    rot = torch.as_tensor(random_rotations(n, 7), dtype=torch.float32)
    g = torch.Generator().manual_seed(8)
    shifts = (torch.rand(n, 2, generator=g) - 0.5) * 4 * APIX
    ctf_params = CTF.repeat(n, 1)
    clean = model_images(src, rot, band, band.filters(ctf_params, shifts))
    sigma = noise * float(clean.abs().pow(2).mean().sqrt())
    y = clean + sigma * torch.complex(torch.randn(clean.shape, generator=g), torch.randn(clean.shape, generator=g))
    return band, lik, src, rot, shifts, y, band.filters(ctf_params, None)


def test_perturbations_are_rotations_around_the_identity():
    p = perturbations(3.0).numpy()
    assert p.shape == (27, 3, 3)
    np.testing.assert_allclose(p[13], np.eye(3), atol=1e-7)
    angles = rotation_angle_deg(p, np.broadcast_to(np.eye(3), p.shape))
    # |v| is 1, sqrt 2 or sqrt 3 steps
    assert set(np.round(angles[angles > 0] / 3.0, 2)) == {1.0, 1.41, 1.73}


def _start(rot, shifts, n: int, angle_deg: float):
    """Poses ``angle_deg`` off about random axes and up to 1.5 px off in x and y."""
    g = np.random.default_rng(2)
    axes = g.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    off = torch.as_tensor(axis_angle_to_matrix(axes * np.radians(angle_deg)), dtype=torch.float32)
    return off @ rot, shifts + torch.as_tensor(g.uniform(-1.5, 1.5, size=(n, 2)) * APIX, dtype=torch.float32)


def test_local_search_returns_noiseless_images_to_their_poses():
    n = 8
    band, lik, src, rot, shifts, y, ctf = _setup(n, noise=0.0)
    start_rot, start_shift = _start(rot, shifts, n, 6.0)
    res = local_search(y, ctf, torch.zeros(n, dtype=torch.long), [src], lik, start_rot, start_shift,
                       LocalSchedule(step_deg=4.0, shift_step_px=1.0, min_step_deg=0.1, rounds=30))  # fmt: skip
    err = rotation_angle_deg(res.rotations.numpy(), rot.numpy())
    assert np.median(err) < 0.3 and err.max() < 1.2, err  # from 6 deg; flat valleys of tilt + shift remain
    assert float(((res.shifts_A - shifts).norm(dim=1) / APIX).max()) < 0.1


def test_local_search_finds_the_likelihood_optimum_of_noisy_images():
    n = 16
    band, lik, src, rot, shifts, y, ctf = _setup(n, noise=0.5)
    start_rot, start_shift = _start(rot, shifts, n, 6.0)
    res = local_search(y, ctf, torch.zeros(n, dtype=torch.long), [src], lik, start_rot, start_shift,
                       LocalSchedule(step_deg=4.0, shift_step_px=1.0))  # fmt: skip
    err = rotation_angle_deg(res.rotations.numpy(), rot.numpy())
    assert np.median(err) < 3.0 and err.max() < 6.0, err  # from 6 deg everywhere; noise limits the rest
    shift_err = (res.shifts_A - shifts).norm(dim=1) / APIX
    assert float(shift_err.max()) < 0.5, shift_err

    def score(r, t):
        return lik.score(y, model_images(src, r, band, band.filters(CTF.repeat(n, 1), t)))

    # the score is the likelihood at the returned pose, which fits the image at least as
    # well as the pose it was made at (the search reaches the likelihood's optimum)
    torch.testing.assert_close(res.scores, score(res.rotations, res.shifts_A), rtol=2e-4, atol=1e-2)
    assert bool((res.scores <= score(rot, shifts) + 1e-2).all())
    assert bool((res.scores <= score(start_rot, start_shift)).all())
    assert bool(torch.allclose(res.rotations @ res.rotations.transpose(1, 2), torch.eye(3).expand(n, 3, 3), atol=1e-4))


def test_local_search_stays_put_at_the_optimum_of_noiseless_images():
    n = 6
    band, lik, src, rot, shifts, y, ctf = _setup(n, noise=0.0)
    res = local_search(y, ctf, torch.zeros(n, dtype=torch.long), [src], lik, rot, shifts, LocalSchedule(rounds=3))
    np.testing.assert_allclose(rotation_angle_deg(res.rotations.numpy(), rot.numpy()), 0.0, atol=0.05)
    torch.testing.assert_close(res.shifts_A, shifts, atol=1e-4, rtol=0)
