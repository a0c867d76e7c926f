"""Phase-ramp shifts (RELION origin convention)."""

from __future__ import annotations

import numpy as np
import torch

from cryohet.imaging.fft import fft2_centered, frequencies_1d
from cryohet.imaging.gaussians import project_gaussians
from cryohet.imaging.shifts import phase_ramp, shift_ft, shift_images, unshift_ft


def test_integer_shift_is_exact_roll():
    rng = np.random.default_rng(0)
    for box in (16, 15):
        img = rng.standard_normal((2, box, box)).astype(np.float64)
        apix = 1.7
        shifts_px = np.array([[3, -2], [-5, 4]])
        out = shift_images(torch.tensor(img), torch.tensor(shifts_px * apix), apix).numpy()
        for i, (ox, oy) in enumerate(shifts_px):
            # image(x) = centred(x + origin): np.roll by -origin.
            expected = np.roll(img[i], shift=(-oy, -ox), axis=(0, 1))
            np.testing.assert_allclose(out[i], expected, atol=1e-10)


def test_shift_then_unshift_is_identity_and_ramp_sign():
    k = frequencies_1d(12, 2.0, dtype=torch.float64)
    s = torch.tensor([[1.3, -0.7]], dtype=torch.float64)
    ramp = phase_ramp(k, k, s)
    # exp(+2 pi i k . o): at (kx, ky) = (k[7], k[5]).
    expected = np.exp(2j * np.pi * (float(k[7]) * 1.3 + float(k[5]) * -0.7))
    assert abs(complex(ramp[0, 5, 7]) - expected) < 1e-12
    F = torch.randn(1, 12, 12, dtype=torch.complex128)
    assert torch.allclose(unshift_ft(shift_ft(F, s, k, k), s, k, k), F)


def test_subpixel_shift_matches_analytic_shifted_projection():
    # A smooth (band-limited) image shifted by a fraction of a pixel equals the analytic
    # projection rendered with that origin.
    c = torch.tensor([[2.0, -3.0, 1.0], [-4.0, 1.0, 0.0]])
    a, s = torch.tensor([1.0, 0.7]), torch.tensor([3.0, 2.5])
    eye = torch.eye(3)[None]
    box, apix = 32, 1.2
    origin = torch.tensor([[0.37 * apix, -1.61 * apix]])
    direct = project_gaussians(c, a, s, eye, box, apix, shifts_A=origin)
    via_fft = shift_images(project_gaussians(c, a, s, eye, box, apix), origin, apix)
    assert torch.allclose(direct, via_fft, atol=1e-5 * direct.abs().max())
    # The particle centre moves to -origin: the centroid shifts by -origin.
    x = (torch.arange(box) - box // 2) * apix
    cx0 = (project_gaussians(c, a, s, eye, box, apix)[0].sum(0) * x).sum() / direct[0].sum()
    cx1 = (direct[0].sum(0) * x).sum() / direct[0].sum()
    assert abs(float(cx1 - cx0) + float(origin[0, 0])) < 1e-3


def test_shift_ft_matches_fft_of_shifted_images():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(3, 10, 10, generator=g, dtype=torch.float64)
    s = torch.tensor([[2.0, 1.0], [-1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    k = frequencies_1d(10, 1.0, dtype=torch.float64)
    assert torch.allclose(fft2_centered(shift_images(img, s, 1.0)), shift_ft(fft2_centered(img), s, k, k))
