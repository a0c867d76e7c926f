"""CryoBench FSC/AUC and the conventional FSC: identities, shells, analytic curves."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cryohet.imaging.fft import fft3_centered, ifft3_centered
from cryohet.metrics.fsc import (
    FSCCurve,
    auc,
    crossing_frequency,
    cryobench_shell_index,
    fsc_cryobench,
    fsc_standard,
    resolution_A,
    standard_shell_index,
)


def radius_px(D: int) -> np.ndarray:
    c = np.arange(D) - D // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return np.sqrt(x * x + y * y + z * z)


def gaussian_filter_fourier(vol: np.ndarray, sigma_k: float) -> tuple[np.ndarray, np.ndarray]:
    """Multiply the centred FFT by g(|k|) = exp(-|k|^2 / (2 sigma_k^2)) (k in Fourier voxels)."""
    g = np.exp(-(radius_px(vol.shape[0]) ** 2) / (2 * sigma_k**2))
    out = ifft3_centered(fft3_centered(torch.from_numpy(vol)) * torch.from_numpy(g))
    assert out.imag.abs().max() < 1e-8 * out.real.abs().max()  # g is Hermitian-symmetric
    return out.real.numpy(), g


def test_shell_membership_hand_checked_d8():
    sh = cryobench_shell_index(8).numpy()
    r = radius_px(8)
    # shell 1 = DC voxel alone; shell 2: r in [1, 2): 6 faces + 12 edges + 8 corners;
    # shell 3: r^2 in {4, 5, 6, 8}: 6 + 24 + 24 + 12 = 66; the rest (r >= 3) unused
    assert [(sh == k).sum() for k in (1, 2, 3)] == [1, 26, 66]
    assert sh[4, 4, 4] == 1
    assert (sh == -1).sum() == 8**3 - 93
    # brute force against the definition k - 1 <= r < k
    for z, y, x in itertools.product(range(8), repeat=3):
        rr = r[z, y, x]
        want = next((k for k in range(1, 4) if k - 1 <= rr < k), -1)
        assert sh[z, y, x] == want
    # conventional shells: rounded radius up to Nyquist
    st = standard_shell_index(8).numpy()
    np.testing.assert_array_equal(st, np.where(np.round(r) <= 4, np.round(r), -1))


def test_identical_maps_give_one_and_max_auc(rng):
    for D in (64, 32):
        v = rng.standard_normal((D, D, D)).astype(np.float32)
        c = fsc_cryobench(v, v)
        assert len(c.fsc) == D // 2
        np.testing.assert_allclose(c.freq_per_px, np.arange(D // 2) / D)
        np.testing.assert_allclose(c.fsc, 1.0, atol=1e-12)
        assert abs(c.auc - (D / 2 - 1) / D) < 1e-6
    assert abs(fsc_cryobench(v, 3.0 * v + 0.0).auc - (32 / 2 - 1) / 32) < 1e-6  # scale-invariant
    assert pytest.approx((128 / 2 - 1) / 128) == 0.4921875


def test_independent_noise_auc_near_zero(rng):
    D = 64
    a = rng.standard_normal((D, D, D))
    b = rng.standard_normal((D, D, D))
    c = fsc_cryobench(a, b)
    assert abs(c.auc) < 0.03
    # what is left is the first trapezoid: FSC_0 = 1 and FSC_1 = sign(mean a * mean b) = +-1
    assert abs(c.fsc[1]) == pytest.approx(1.0)
    assert abs(c.auc - (1.0 + c.fsc[1]) / (2 * D)) < 0.015
    # beyond the first shells the curve is noise of size ~1/sqrt(#voxels)
    k = np.arange(len(c.fsc))
    assert np.all(np.abs(c.fsc[4:]) < 5 / np.sqrt(np.maximum(c.n_voxels[4:], 1)))
    # raw vs clipped: clipping can only raise the area
    assert c.clipped().auc >= c.auc
    assert c.clipped().fsc.min() >= 0.0
    assert k[-1] == D // 2 - 1


def test_gaussian_lowpass_exact_shell_identity(rng):
    """For b = G*a (Fourier multiplication by g): FSC_k = sum g|A|^2 / sqrt(sum |A|^2 sum g^2 |A|^2)."""
    D = 32
    a = rng.standard_normal((D, D, D))
    b, g = gaussian_filter_fourier(a, sigma_k=5.0)
    P = np.abs(fft3_centered(torch.from_numpy(a)).numpy()) ** 2
    sh = cryobench_shell_index(D).numpy()
    want = [1.0] + [
        np.sum(g * P * (sh == k)) / np.sqrt(np.sum(P * (sh == k)) * np.sum(g**2 * P * (sh == k)))
        for k in range(1, D // 2)
    ]
    np.testing.assert_allclose(fsc_cryobench(a, b).fsc, want, rtol=1e-10)


def test_gaussian_lowpass_plus_noise_matches_analytic_curve(rng):
    """a white (variance 1), b = G*a + n (white, variance s2): E-FSC_k ~ <g>_k / sqrt(<g^2>_k + s2)."""
    D, s2, sigma_k = 64, 0.25, 8.0
    a = rng.standard_normal((D, D, D))
    b, g = gaussian_filter_fourier(a, sigma_k)
    b = b + np.sqrt(s2) * rng.standard_normal((D, D, D))
    sh = cryobench_shell_index(D).numpy()
    k = np.arange(2, D // 2)
    analytic = np.array([g[sh == i].mean() / np.sqrt((g[sh == i] ** 2).mean() + s2) for i in k])
    c = fsc_cryobench(a, b)
    assert analytic[0] > 0.85 and analytic[-1] < 0.01  # a real fall-off
    np.testing.assert_allclose(c.fsc[k], analytic, atol=0.06)
    # conventional FSC crosses 0.5 where the analytic curve (rounded shells) does
    st = fsc_standard(a, b)
    shs = standard_shell_index(D).numpy()
    ks = np.arange(1, D // 2 + 1)
    analytic_std = np.array([g[shs == i].mean() / np.sqrt((g[shs == i] ** 2).mean() + s2) for i in ks])
    f_analytic = crossing_frequency(FSCCurve(ks / D, analytic_std, 0.0, ks, D), 0.5)
    assert abs(crossing_frequency(st, 0.5) - f_analytic) < 0.5 / D
    assert abs(resolution_A(st, 2.0, 0.5) - 2.0 / f_analytic) < 0.05 * 2.0 / f_analytic


def test_mask_multiplies_both_maps_and_torch_inputs(rng):
    D = 32
    a = rng.standard_normal((D, D, D))
    b = a + rng.standard_normal((D, D, D))
    m = (radius_px(D) < 10).astype(np.float64)
    masked = fsc_cryobench(a, b, mask=m)
    np.testing.assert_allclose(masked.fsc, fsc_cryobench(a * m, b * m).fsc, atol=1e-12)
    assert not np.allclose(masked.fsc, fsc_cryobench(a, b).fsc)
    t = fsc_cryobench(torch.from_numpy(a).float(), torch.from_numpy(b).float(), torch.from_numpy(m))
    np.testing.assert_allclose(t.fsc, masked.fsc, atol=1e-5)
    np.testing.assert_allclose(fsc_standard(torch.from_numpy(a), b, m).fsc, fsc_standard(a * m, b * m).fsc, atol=1e-12)
    with pytest.raises(ValueError):
        fsc_cryobench(a, b[:-1, :-1, :-1])
    with pytest.raises(ValueError):
        fsc_cryobench(a[:-1, :-1, :-1], b[:-1, :-1, :-1])  # odd box


def test_standard_fsc_identity_and_resolution_limits(rng):
    D = 32
    a = rng.standard_normal((D, D, D))
    s = fsc_standard(a, a)
    assert len(s.fsc) == D // 2 + 1 and s.freq_per_px[-1] == 0.5
    np.testing.assert_allclose(s.fsc, 1.0, atol=1e-12)
    assert crossing_frequency(s, 0.143) is None
    assert resolution_A(s, apix=1.5, threshold=0.143) == pytest.approx(3.0)  # Nyquist


def test_crossing_interpolation_and_auc():
    f = np.array([0.0, 0.1, 0.2, 0.3])
    c = FSCCurve(f, np.array([1.0, 0.8, 0.4, 0.1]), 0.0, np.ones(4, int), 8)
    assert crossing_frequency(c, 0.5) == pytest.approx(0.175)
    assert resolution_A(c, 2.0, 0.5) == pytest.approx(2.0 / 0.175)
    assert crossing_frequency(c, 0.143) == pytest.approx(0.2 + 0.1 * (0.4 - 0.143) / 0.3)
    assert resolution_A(FSCCurve(f, np.array([-1.0, 0.5, 0.2, 0.1]), 0.0, f, 8), 1.0, 0.143) == np.inf
    assert auc(f, [1.0, 1.0, 1.0, 1.0]) == pytest.approx(0.3)
    assert auc(f, [1.0, -1.0, 1.0, -1.0]) == pytest.approx(0.0)
    assert auc(f, [1.0, -1.0, 1.0, -1.0], absolute=True) == pytest.approx(0.3)
