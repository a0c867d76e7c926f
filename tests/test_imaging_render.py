"""render(): one forward model for voxel volumes and Gaussian mixtures."""

from __future__ import annotations

import pytest
import torch

from cryohet.geometry.rotations import random_rotations
from cryohet.imaging.ctf import compute_ctf_grid
from cryohet.imaging.fft import fft2_centered, frequencies_1d, ifft2_centered
from cryohet.imaging.projection import project, volume_to_fourier
from cryohet.imaging.shifts import shift_images
from cryohet.representations import GaussianMixture, VoxelVolume
from cryohet.representations.render import render

BOX, APIX = 32, 2.0


def _gmm(seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    c = (torch.rand(30, 3, generator=g) - 0.5) * 16 * APIX
    return GaussianMixture(c, torch.rand(30, generator=g) + 0.5, torch.full((30,), 3.0))


def _poses(n: int, seed: int = 0):
    rot = torch.tensor(random_rotations(n, seed), dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    shifts = (torch.rand(n, 2, generator=g) - 0.5) * 6 * APIX
    ctf = torch.tensor([[15000.0, 14000.0, 30.0, 300.0, 2.7, 0.1, 0.0, 20.0, 1.0]]).repeat(n, 1)
    ctf[:, :2] += torch.arange(n)[:, None] * 700.0
    return rot, shifts, ctf


def _corr(a, b):
    a = a - a.mean(dim=(-1, -2), keepdim=True)
    b = b - b.mean(dim=(-1, -2), keepdim=True)
    return (a * b).sum(dim=(-1, -2)) / torch.sqrt((a * a).sum(dim=(-1, -2)) * (b * b).sum(dim=(-1, -2)))


def test_gmm_and_its_voxelisation_render_alike():
    gmm = _gmm()
    rot, shifts, ctf = _poses(6)
    vox = VoxelVolume(gmm.to_volume(BOX, APIX), APIX)
    a = render(gmm, rot, shifts, ctf, BOX, APIX)
    b = render(vox, rot, shifts, ctf, BOX, APIX, image_oversample=2)
    assert _corr(a, b).min() > 0.99
    assert torch.allclose((a * b).sum(dim=(1, 2)) / (a * a).sum(dim=(1, 2)), torch.ones(6), atol=0.03)


def test_render_composes_projection_shift_and_ctf():
    gmm = _gmm(1)
    rot, shifts, ctf = _poses(3, seed=1)
    k = frequencies_1d(BOX, APIX)
    c = compute_ctf_grid(k, k, ctf)
    for rep in (gmm, VoxelVolume(gmm.to_volume(BOX, APIX), APIX)):
        clean = render(rep, rot, None, None, BOX, APIX)
        expected = shift_images(ifft2_centered(fft2_centered(clean) * c).real, shifts, APIX)
        got = render(rep, rot, shifts, ctf, BOX, APIX)
        assert torch.allclose(got, expected, atol=1e-4 * expected.abs().max())
        F = render(rep, rot, shifts, ctf, BOX, APIX, output="fourier")
        assert torch.allclose(F, fft2_centered(got), atol=1e-4 * F.abs().max())


def test_prepared_fourier_volume_and_resampled_voxels():
    gmm = _gmm(2)
    rot, shifts, ctf = _poses(2, seed=2)
    vol = gmm.to_volume(BOX, APIX)
    vft = volume_to_fourier(vol)
    a = render(VoxelVolume(vol, APIX), rot, shifts, ctf, BOX, APIX)
    assert torch.allclose(render(vft, rot, shifts, ctf, BOX, APIX), a)
    # A finer voxel grid of the same mixture is resampled to the image grid first.
    fine = VoxelVolume(gmm.to_volume(2 * BOX, APIX / 2), APIX / 2)
    b = render(fine, rot, shifts, ctf, BOX, APIX)
    assert _corr(a, b).min() > 0.999
    assert torch.allclose(project(vol, rot), render(VoxelVolume(vol, APIX), rot, None, None, BOX, APIX))
    with pytest.raises(ValueError):
        render(vft, rot, None, None, BOX + 2, APIX)
    with pytest.raises(TypeError):
        render(vol, rot, None, None, BOX, APIX)


def test_render_is_differentiable():
    gmm = _gmm(3)
    gmm = GaussianMixture(gmm.centres_A.requires_grad_(True), gmm.amplitudes.requires_grad_(True), gmm.sigmas_A)
    rot, shifts, ctf = _poses(2, seed=3)
    shifts.requires_grad_(True)
    render(gmm, rot, shifts, ctf, BOX, APIX).pow(2).sum().backward()
    assert gmm.centres_A.grad.abs().sum() > 0 and gmm.amplitudes.grad.abs().sum() > 0 and shifts.grad.abs().sum() > 0
    vol = gmm.to_volume(BOX, APIX).detach().requires_grad_(True)
    render(VoxelVolume(vol, APIX), rot, shifts.detach(), ctf, BOX, APIX).pow(2).sum().backward()
    assert torch.isfinite(vol.grad).all() and vol.grad.abs().sum() > 0
