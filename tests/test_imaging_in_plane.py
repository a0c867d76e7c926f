"""In-plane rotation of images: the rotated projection is the projection at the turned pose."""

from __future__ import annotations

import math

import torch

from cryohet.geometry.rotations import random_rotations
from cryohet.imaging.in_plane import quarter_turn, rotate_images, rotate_poses_in_plane, z_rotations
from cryohet.imaging.masks import circular_mask
from cryohet.imaging.noise import radial_power_spectrum
from cryohet.representations import GaussianMixture
from cryohet.representations.render import render

BOX, APIX = 32, 2.0


def _gmm() -> GaussianMixture:
    g = torch.Generator().manual_seed(0)
    centres = (torch.rand(30, 3, generator=g) - 0.5) * 14 * APIX
    return GaussianMixture(centres, torch.rand(30, generator=g) + 0.5, torch.full((30,), 3.0))


def _corr_in_disc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    m = circular_mask(BOX, BOX / 2 - 1)
    a = (a - a.mean(dim=(-1, -2), keepdim=True)) * m
    b = (b - b.mean(dim=(-1, -2), keepdim=True)) * m
    return (a * b).sum(dim=(-1, -2)) / torch.sqrt((a * a).sum(dim=(-1, -2)) * (b * b).sum(dim=(-1, -2)))


def test_rotated_projection_is_the_projection_at_the_turned_pose():
    gmm, n = _gmm(), 8
    g = torch.Generator().manual_seed(1)
    rot = torch.tensor(random_rotations(n, 1), dtype=torch.float32)
    shifts_A = (torch.rand(n, 2, generator=g) - 0.5) * 6 * APIX
    angles = torch.rand(n, generator=g) * 2 * math.pi
    images = render(gmm, rot, shifts_A, None, BOX, APIX)
    turned_rot, turned_shifts = rotate_poses_in_plane(rot, shifts_A, angles)
    expected = render(gmm, turned_rot, turned_shifts, None, BOX, APIX)
    assert _corr_in_disc(rotate_images(images, angles), expected).min() > 0.999
    # the other sense would be a different view: the test can tell them apart
    wrong_rot, wrong_shifts = rotate_poses_in_plane(rot, shifts_A, -angles)
    wrong = render(gmm, wrong_rot, wrong_shifts, None, BOX, APIX)
    assert _corr_in_disc(rotate_images(images, angles), wrong).min() < 0.99


def test_rotation_round_trip_identity_and_composition():
    images = render(_gmm(), torch.tensor(random_rotations(4, 2), dtype=torch.float32), None, None, BOX, APIX)
    angles = torch.tensor([0.3, 1.7, 3.0, 5.5])
    assert torch.allclose(rotate_images(images, torch.zeros(4)), images, atol=1e-4 * images.abs().max())
    back = rotate_images(rotate_images(images, angles), -angles)
    assert _corr_in_disc(back, images).min() > 0.9999
    assert torch.allclose(z_rotations(angles) @ z_rotations(-angles), torch.eye(3).expand(4, 3, 3), atol=1e-6)
    rz = z_rotations(torch.tensor([0.5]))[0]
    assert torch.allclose(rz @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([math.cos(0.5), math.sin(0.5), 0.0]))


def test_rotation_keeps_the_noise_power_up_to_nyquist():
    """The 2x oversampled resampling keeps white noise white inside the disc (within 5 %),
    so an encoder does not learn to tell turned images from the data by their spectrum."""
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(300, BOX, BOX, generator=g)
    disc = circular_mask(BOX, BOX / 2 - 1)
    turned = rotate_images(noise, torch.rand(300, generator=g) * 2 * math.pi) * disc
    ratio = radial_power_spectrum(turned) / radial_power_spectrum(noise * disc)
    assert (ratio[1:16] - 1).abs().max() < 0.05
    single = rotate_images(noise, torch.rand(300, generator=g) * 2 * math.pi, oversample=1) * disc
    assert (radial_power_spectrum(single) / radial_power_spectrum(noise * disc))[15] < 0.8  # what 2x avoids


def test_turned_poses_of_several_heads_turn_back():
    """(B, H) poses turned by (B, 1) angles and back are the poses (HetACUMN turns its
    encoder's heads back to the image as it is)."""
    rot = torch.tensor(random_rotations(6, 4), dtype=torch.float32).reshape(3, 2, 3, 3)
    shifts_A = torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(4))
    angles = torch.tensor([0.4, 2.0, -1.0])[:, None]
    turned_rot, turned_shifts = rotate_poses_in_plane(rot, shifts_A, angles)
    assert turned_rot.shape == rot.shape and turned_shifts.shape == shifts_A.shape
    assert torch.allclose(turned_rot[1, 0], z_rotations(torch.tensor(2.0)) @ rot[1, 0], atol=1e-6)
    back_rot, back_shifts = rotate_poses_in_plane(turned_rot, turned_shifts, -angles)
    assert torch.allclose(back_rot, rot, atol=1e-5) and torch.allclose(back_shifts, shifts_A, atol=1e-5)
    assert torch.allclose(turned_shifts.norm(dim=-1), shifts_A.norm(dim=-1), atol=1e-5)


def test_a_quarter_turn_is_the_rotation_by_90_degrees_without_resampling():
    """``quarter_turn`` is ``rotate_images`` at q * 90° inside the disc (the projection at the
    turned pose), exactly as a permutation of the pixels; four quarters are the identity."""
    gmm = _gmm()
    rot = torch.tensor(random_rotations(3, 3), dtype=torch.float32)
    images = render(gmm, rot, None, None, BOX, APIX)
    m = circular_mask(BOX, BOX / 2 - 1).bool()
    for q in (1, 2, 3):
        angles = torch.full((3,), q * math.pi / 2)
        turned = quarter_turn(images, q)
        assert torch.equal(torch.sort(turned.flatten(1)).values, torch.sort(images.flatten(1)).values)
        resampled = rotate_images(images, angles)
        assert float((turned - resampled)[:, m].abs().max()) < 2e-3 * float(images.abs().max())
        expected = render(gmm, z_rotations(angles) @ rot, None, None, BOX, APIX)
        assert _corr_in_disc(turned, expected).min() > 0.999
    assert torch.equal(quarter_turn(quarter_turn(images, 3), 1), images)
