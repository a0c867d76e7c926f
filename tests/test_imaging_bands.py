"""Fourier bands, likelihoods and the render seam: identities every method relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryohet.geometry.rotations import random_rotations
from cryohet.imaging.bands import FourierBand
from cryohet.imaging.ctf import compute_ctf_grid
from cryohet.imaging.fft import fft2_centered, frequencies_1d, ifft2_centered
from cryohet.imaging.gaussians import gaussian_projection_ft
from cryohet.imaging.likelihood import NegativeCorrelation, ShellGaussian, WeightedL2
from cryohet.imaging.shifts import shift_images
from cryohet.representations import GaussianMixture, VoxelVolume, model_images, render

CTF = torch.tensor([[15000.0, 14000.0, 30.0, 300.0, 2.7, 0.1, 0.0, 20.0, 1.0]])


def _band_limited_image(d: int, rng: np.random.Generator) -> torch.Tensor:
    """A real image whose spectrum lies inside the Nyquist disc, without DC."""
    img = torch.as_tensor(rng.standard_normal((d, d)), dtype=torch.float64)
    F = fft2_centered(img)
    c = torch.arange(d, dtype=torch.float64) - d // 2
    r = torch.sqrt(c[None, :] ** 2 + c[:, None] ** 2)
    F = F * (r < d / 2 - 1)
    F[d // 2, d // 2] = 0
    return ifft2_centered(F).real


def _mixture(n_img: int, g: int = 20, seed: int = 0) -> GaussianMixture:
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(n_img, g, 3, generator=gen) * 10.0
    return GaussianMixture(c, torch.rand(n_img, g, generator=gen) + 0.5, torch.rand(g, generator=gen) + 2.5)


@pytest.mark.parametrize("d", [32, 33])
def test_parseval_band_gives_the_real_space_sum_of_squares(rng, d):
    img = _band_limited_image(d, rng)
    band = FourierBand.disc(d, 2.0)
    lik = WeightedL2.white_noise(band)
    y = band.observed(img[None])
    loss = lik.score(y, torch.zeros_like(y))
    assert float(loss) == pytest.approx(float((img**2).sum()), rel=1e-5)


def test_independent_band_counts_each_hermitian_pair_once(rng):
    d, shell = 24, 9
    img = torch.as_tensor(rng.standard_normal((d, d)))
    band = FourierBand.up_to_shell(d, 1.0, shell)
    F = fft2_centered(img)
    c = torch.arange(d) - d // 2
    r = torch.round(torch.sqrt((c[None, :] ** 2 + c[:, None] ** 2).double()))
    inside = (r >= 1) & (r <= shell)
    full_sum = float((F.abs() ** 2 * inside).sum())
    half_sum = float(band.shell_sums(band.observed(img).abs() ** 2).sum())
    assert half_sum == pytest.approx(full_sum / 2, rel=1e-6)
    counts = band.shell_counts()
    assert counts.shape == (shell + 1,) and counts[0] == 0 and float(counts.sum()) == float(inside.sum()) / 2


def test_lowpass_band_is_the_full_data_term_restricted_to_the_disc():
    d, apix, b = 32, 3.0, 3
    g = torch.Generator().manual_seed(5)
    rot = torch.as_tensor(random_rotations(b, 1), dtype=torch.float32)
    full = FourierBand.disc(d, apix)
    obs = torch.complex(torch.randn(b, *full.shape, generator=g), torch.randn(b, *full.shape, generator=g))
    filt = full.filters(CTF.repeat(b, 1), torch.randn(b, 2, generator=g))
    mix = _mixture(b)
    lik = WeightedL2.white_noise(full)
    for fraction in (0.5, 0.3):
        sub = full.lowpass(fraction)
        masked = FourierBand.disc(d, apix, max_radius_px=fraction * d / 2)
        assert sub.shape[0] < d and sub.shape[1] < d // 2  # rows and columns dropped, not zero-weighted
        got = lik.on(sub).score(sub.restrict(obs, full), model_images(mix, rot, sub, sub.restrict(filt, full)))
        want = WeightedL2.white_noise(masked).score(obs, model_images(mix, rot, masked, filt))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    assert full.lowpass(1.0) is full


def test_slices_on_any_band_equal_the_full_plane_slices():
    d, apix, b = 32, 3.0, 3
    mix = _mixture(1)
    rot = torch.as_tensor(random_rotations(b, 0), dtype=torch.float32)
    k = frequencies_1d(d, apix)
    full = gaussian_projection_ft(mix.centres_A, mix.amplitudes, mix.sigmas_A, rot, k, k, apix)
    for band in (FourierBand.disc(d, apix), FourierBand.up_to_shell(d, apix, 11), FourierBand.full_plane(d, apix)):
        rows, cols = band.ky_idx + d // 2, band.kx_idx + d // 2
        torch.testing.assert_close(mix.slices(rot, band), full[:, rows][:, :, cols], rtol=1e-4, atol=1e-4 * 1e3)


def test_filters_are_ctf_times_the_shift_phase_and_render_composes_them():
    d, apix, b = 32, 2.0, 4
    g = torch.Generator().manual_seed(2)
    shifts = torch.randn(b, 2, generator=g) * 3.0
    ctf = CTF.repeat(b, 1)
    band = FourierBand.full_plane(d, apix)
    k = frequencies_1d(d, apix)
    torch.testing.assert_close(band.filters(ctf, None), compute_ctf_grid(k, k, ctf).to(torch.complex64).real)
    vol = VoxelVolume(_mixture(1).to_volume(d, apix).float(), apix)
    rot = torch.as_tensor(random_rotations(b, 3), dtype=torch.float32)
    clean = render(vol, rot, None, None, d, apix)
    expected = shift_images(ifft2_centered(fft2_centered(clean) * compute_ctf_grid(k, k, ctf)).real, shifts, apix)
    got = render(vol, rot, shifts, ctf, d, apix)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * float(expected.abs().max()))


def test_half_plane_and_full_plane_images_agree():
    d, apix = 24, 2.0
    mix = _mixture(1, seed=4)
    rot = torch.as_tensor(random_rotations(2, 5), dtype=torch.float32)
    half, full = FourierBand.half_plane(d, apix), FourierBand.full_plane(d, apix)
    a = half.to_images(mix.slices(rot, half))
    b = full.to_images(mix.slices(rot, full))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4 * float(b.abs().max()))


def test_likelihoods():
    d = 16
    band = FourierBand.up_to_shell(d, 1.0, 7)
    g = torch.Generator().manual_seed(0)
    y = torch.complex(torch.randn(3, *band.shape, generator=g), torch.randn(3, *band.shape, generator=g))
    m = torch.complex(torch.randn(3, *band.shape, generator=g), torch.randn(3, *band.shape, generator=g))
    sigma2 = torch.linspace(1.0, 3.0, band.n_shells, dtype=torch.float64)
    lik = ShellGaussian(band, sigma2)
    explicit = ((y - m).abs() ** 2 * band.weights / sigma2[band.shells.clamp_max(7)].float()).sum(dim=(-1, -2))
    torch.testing.assert_close(lik.score(y, m), explicit, rtol=1e-5, atol=0)
    corr = NegativeCorrelation(band)
    torch.testing.assert_close(corr.score(y, 2.5 * y), torch.zeros(3), atol=1e-6, rtol=0)
    assert bool((corr.score(y, m) > 0.5).all())
    assert torch.allclose(corr.score(y, -y), torch.full((3,), 2.0))
