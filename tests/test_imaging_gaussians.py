"""Analytic Gaussian-mixture projection vs voxelisation + Fourier slicing, shifts, CTF, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from cryohet.geometry.rotations import random_rotations
from cryohet.imaging.ctf import compute_ctf_grid
from cryohet.imaging.fft import fft2_centered, frequencies_1d, ifft2_centered
from cryohet.imaging.gaussians import (
    gaussian_projection_ft,
    gaussian_projection_ft_aniso,
    project_gaussians,
    voxelize_gaussians,
)
from cryohet.imaging.projection import project, volume_to_fourier

BOX, APIX = 32, 1.5


def _mixture(n: int = 40, seed: int = 0, extent: float = 0.3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    c = ((torch.rand(n, 3, generator=g) - 0.5) * 2 * extent * BOX * APIX / 2).to(dtype)
    a = (torch.rand(n, generator=g) + 0.5).to(dtype)
    s = (torch.rand(n, generator=g) * 1.0 + 2.0).to(dtype)
    return c, a, s


def _rot(n: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(random_rotations(n, seed), dtype=dtype)


def _corr(a, b):
    a = a - a.mean(dim=(-1, -2), keepdim=True)
    b = b - b.mean(dim=(-1, -2), keepdim=True)
    return (a * b).sum(dim=(-1, -2)) / torch.sqrt((a * a).sum(dim=(-1, -2)) * (b * b).sum(dim=(-1, -2)))


def _ctf(n: int) -> torch.Tensor:
    p = torch.tensor([[14000.0, 12500.0, 25.0, 300.0, 2.7, 0.1, 0.0, 0.0, 1.0]]).repeat(n, 1)
    p[:, 0] += torch.arange(n) * 1000.0
    return p


def test_matches_fourier_slice_of_voxelisation():
    c, a, s = _mixture()
    rot = _rot(8)
    vol = voxelize_gaussians(c, a, s, BOX, APIX)
    analytic = project_gaussians(c, a, s, rot, BOX, APIX)
    sliced = project(vol, rot, image_oversample=2)
    assert _corr(analytic, sliced).min() > 0.99
    # Normalisation (pixel-sum units): the image sums agree within 1 %; without the gridding
    # pre-correction the Fourier-slice DC sample is exact and so is the agreement.
    assert torch.allclose(sliced.sum(dim=(1, 2)) / analytic.sum(dim=(1, 2)), torch.ones(8), atol=0.01)
    exact_dc = project(volume_to_fourier(vol, 2, gridding=False), rot)
    assert torch.allclose(exact_dc.sum(dim=(1, 2)), analytic.sum(dim=(1, 2)), rtol=1e-3)
    # Closed form of the total: sum_i a_i (2 pi)^{3/2} (sigma_i / apix)^3.
    total = (a * (2 * math.pi) ** 1.5 * (s / APIX) ** 3).sum()
    assert torch.allclose(analytic.sum(dim=(1, 2)), total.expand(8), rtol=1e-4)


def test_unrotated_equals_sum_of_voxelisation_along_z():
    c, a, s = _mixture(seed=2)
    eye = torch.eye(3)[None]
    img = project_gaussians(c, a, s, eye, BOX, APIX)[0]
    band = voxelize_gaussians(c, a, s, BOX, APIX, band_limit=True)
    assert (img - band.sum(0)).norm() / img.norm() < 1e-4
    # The truncated real-space splat (point samples) agrees to aliasing/truncation level.
    splat = voxelize_gaussians(c, a, s, BOX, APIX, band_limit=False)
    assert (img - splat.sum(0)).norm() / img.norm() < 1e-3
    # And the voxelisation is the mixture's value at voxel centres (spot check).
    i = int(torch.argmax(a))
    idx = torch.round(c[i] / APIX).long() + BOX // 2
    p = (idx.float() - BOX // 2) * APIX
    direct = (a * torch.exp(-((p - c) ** 2).sum(1) / (2 * s * s))).sum()
    assert float(band[idx[2], idx[1], idx[0]]) == pytest.approx(float(direct), rel=1e-3)


def test_shift_is_integer_roll():
    c, a, s = _mixture(seed=3)
    rot = _rot(3, seed=3)
    base = project_gaussians(c, a, s, rot, BOX, APIX)
    ox_px, oy_px = 3, -2
    shifts = torch.tensor([[ox_px * APIX, oy_px * APIX]]).repeat(3, 1)
    moved = project_gaussians(c, a, s, rot, BOX, APIX, shifts_A=shifts)
    # image(x) = centred(x + origin): the particle moves to -origin.
    expected = torch.roll(base, shifts=(-oy_px, -ox_px), dims=(-2, -1))
    assert torch.allclose(moved, expected, atol=1e-4 * base.abs().max())


def test_ctf_applied_equals_ctf_product():
    c, a, s = _mixture(seed=4)
    rot = _rot(4, seed=4)
    params = _ctf(4)
    k = frequencies_1d(BOX, APIX)
    ctf = compute_ctf_grid(k, k, params)
    plain = gaussian_projection_ft(c, a, s, rot, k, k, APIX)
    with_ctf = gaussian_projection_ft(c, a, s, rot, k, k, APIX, ctf=ctf)
    assert torch.allclose(with_ctf, plain * ctf)
    # The real-image path (half plane + irfft2) equals the full-plane product.
    img = project_gaussians(c, a, s, rot, BOX, APIX, ctf_params=params)
    ref = ifft2_centered(plain * ctf).real
    assert torch.allclose(img, ref, atol=1e-5 * ref.abs().max())
    # Full-plane analytic DFT is the DFT of the real image.
    assert torch.allclose(
        fft2_centered(project_gaussians(c, a, s, rot, BOX, APIX)),
        plain,
        atol=2e-5 * plain.abs().max(),
    )


def test_arbitrary_frequency_vectors_and_batched_mixtures():
    c, a, s = _mixture(seed=5)
    rot = _rot(3, seed=5)
    k = frequencies_1d(BOX, APIX)
    full = gaussian_projection_ft(c, a, s, rot, k, k, APIX)
    # Half plane, a band, and a shuffled (non-uniform) vector give the same values.
    half = gaussian_projection_ft(c, a, s, rot, k[BOX // 2 :], k, APIX)
    assert torch.allclose(half, full[..., BOX // 2 :], atol=1e-5 * full.abs().max())
    perm = torch.randperm(BOX)
    shuffled = gaussian_projection_ft(c, a, s, rot, k[perm], k[4:20], APIX)
    assert torch.allclose(shuffled, full[:, 4:20][..., perm], atol=1e-5 * full.abs().max())
    # Per-image mixtures (B, G, 3) equal one call per image.
    cb = torch.stack([c, c + 1.0, c - 2.0])
    ab = torch.stack([a, 2 * a, a])
    batched = gaussian_projection_ft(cb, ab, s, rot, k, k, APIX)
    for i in range(3):
        single = gaussian_projection_ft(cb[i], ab[i], s, rot[i : i + 1], k, k, APIX)
        assert torch.allclose(batched[i], single[0], atol=1e-5 * single.abs().max())


def test_anisotropic_path():
    c, a, s = _mixture(n=10, seed=6)
    rot = _rot(2, seed=6)
    k = frequencies_1d(BOX, APIX)
    iso = gaussian_projection_ft(c, a, s, rot, k, k, APIX)
    cov = (s**2)[:, None, None] * torch.eye(3)
    assert torch.allclose(gaussian_projection_ft_aniso(c, a, cov, rot, k, k, APIX), iso, atol=1e-5 * iso.abs().max())
    # One elongated Gaussian, unrotated: compare with a direct voxel sum along z.
    sx, sy, sz = 4.0, 2.0, 3.0
    cov1 = torch.diag(torch.tensor([sx * sx, sy * sy, sz * sz]))[None]
    centre = torch.tensor([[3.0, -1.5, 2.0]])
    F = gaussian_projection_ft_aniso(centre, torch.ones(1), cov1, torch.eye(3)[None], k, k, APIX)
    img = ifft2_centered(F).real[0]
    x = (torch.arange(BOX) - BOX // 2) * APIX
    zz, yy, xx = torch.meshgrid(x, x, x, indexing="ij")
    vox = torch.exp(-0.5 * ((xx - 3.0) ** 2 / sx**2 + (yy + 1.5) ** 2 / sy**2 + (zz - 2.0) ** 2 / sz**2))
    assert (img - vox.sum(0)).norm() / img.norm() < 1e-3


def test_gradients_match_finite_differences():
    c, a, s = _mixture(n=5, seed=7, dtype=torch.float64)
    rot = _rot(2, seed=7, dtype=torch.float64)
    k = frequencies_1d(8, 4.0, dtype=torch.float64)
    shifts = torch.tensor([[1.0, -2.0], [0.5, 0.3]], dtype=torch.float64)

    def f(c_, a_, s_, r_, t_):
        return torch.view_as_real(gaussian_projection_ft(c_, a_, s_, r_, k, k, 4.0, shifts_A=t_))

    inputs = tuple(x.clone().requires_grad_(True) for x in (c, a, s, rot, shifts))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)
    # Evenly spaced vectors of >= 16 frequencies take the coarse x fine factor path.
    k16 = frequencies_1d(16, 4.0, dtype=torch.float64)
    kx = k16[8:]  # half plane, 8 values: direct path on x, factorised on y

    def g(c_, s_, r_):
        return torch.view_as_real(gaussian_projection_ft(c_, a[:2], s_, r_, kx, k16, 4.0))

    inputs = (
        c[:2].clone().requires_grad_(True),
        s[:2].clone().requires_grad_(True),
        rot[:1].clone().requires_grad_(True),
    )
    assert torch.autograd.gradcheck(g, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_voxelize_chunking_and_volume_units():
    c, a, s = _mixture(n=30, seed=8)
    one = voxelize_gaussians(c, a, s, 24, 2.0, chunk_gaussians=1000)
    chunked = voxelize_gaussians(c, a, s, 24, 2.0, chunk_gaussians=7)
    assert torch.allclose(one, chunked, atol=1e-5 * one.abs().max())
    splat = voxelize_gaussians(c, a, s, 24, 2.0, band_limit=False, chunk_gaussians=7)
    assert (one - splat).abs().max() < 2e-3 * one.abs().max()


@pytest.mark.parametrize("grad", [False, True])
def test_block_size_changes_nothing(monkeypatch, grad):
    """The CPU and GPU block budgets (one image per block vs the whole batch) agree."""
    import cryohet.imaging.gaussians as gm

    c, a, s = _mixture(n=300, seed=3)
    rot = _rot(6, seed=3)
    k = frequencies_1d(BOX, APIX)
    shifts = torch.randn(6, 2, generator=torch.Generator().manual_seed(3))

    def run(budget: int):
        monkeypatch.setattr(gm, "_GRAD_ELEMENTS_PER_CHUNK" if grad else "_ELEMENTS_PER_CHUNK", budget)
        cc = c.clone().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            F = gaussian_projection_ft(cc, a, s, rot, k[BOX // 2 :], k, APIX, shifts_A=shifts)
        if not grad:
            return F, None
        (F.abs() ** 2).sum().backward()
        return F.detach(), cc.grad

    small, g_small = run(300 * 16)  # one image (and without gradient 100 Gaussians) per block
    big, g_big = run(1 << 28)  # the whole batch in one block
    assert torch.allclose(small, big, rtol=1e-5, atol=1e-4 * big.abs().max().item())
    if grad:
        assert torch.allclose(g_small, g_big, rtol=1e-4, atol=1e-5 * g_big.abs().max().item())
