"""CTF: RELION's formula, checked against hand-evaluated values and its physics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryohet.imaging.ctf import (
    compute_ctf,
    compute_ctf_grid,
    ctf_params_tensor,
    electron_wavelength_A,
)
from cryohet.imaging.fft import frequencies_1d, frequency_grid_2d
from cryohet.io.metadata import CTFParams


def _params(dfu, dfv, ang, kv=300.0, cs=2.7, w=0.1, phase=0.0, b=0.0, scale=1.0):
    return torch.tensor([[dfu, dfv, ang, kv, cs, w, phase, b, scale]], dtype=torch.float64)


def _at(kx, ky, params):
    f = torch.tensor([[[kx, ky]]], dtype=torch.float64)
    return float(compute_ctf(f, params)[0, 0, 0])


def test_wavelength_known_values():
    # Relativistic wavelengths: 300 kV -> 1.9687 pm, 200 kV -> 2.5079 pm, 100 kV -> 3.7014 pm.
    assert electron_wavelength_A(300.0) == pytest.approx(0.019687, abs=2e-6)
    assert electron_wavelength_A(200.0) == pytest.approx(0.025079, abs=2e-6)
    assert electron_wavelength_A(100.0) == pytest.approx(0.037014, abs=2e-6)
    t = electron_wavelength_A(torch.tensor([300.0, 200.0], dtype=torch.float64))
    assert torch.allclose(t, torch.tensor([0.0196875, 0.0250795], dtype=torch.float64), atol=2e-6)


def test_hand_computed_values():
    # dfU = dfV = 15000 Å, 300 kV, Cs 2.7 mm, w 0.1, k = 0.1 /Å along x.
    lam = 0.019687  # Å (300 kV)
    k2 = 0.01
    gamma = (
        math.pi * lam * (-15000.0) * k2
        + (math.pi / 2) * 2.7e7 * lam**3 * k2 * k2
        - 0.0
        - math.atan(0.1 / math.sqrt(0.99))
    )
    expected = -math.sin(gamma)
    got = _at(0.1, 0.0, _params(15000, 15000, 0))
    assert got == pytest.approx(expected, abs=2e-3)
    # A second point with astigmatism, an angle, a phase shift, a B-factor and a scale.
    kx, ky = 0.05, 0.12
    k2 = kx * kx + ky * ky
    theta = math.atan2(ky, kx)
    df = -(21000 + 17000) / 2 - (21000 - 17000) / 2 * math.cos(2 * (theta - math.radians(35)))
    lam200 = 0.025079
    gamma = (
        math.pi * lam200 * df * k2
        + (math.pi / 2) * 2.0e7 * lam200**3 * k2**2
        - math.radians(40)
        - math.atan(0.07 / math.sqrt(1 - 0.07**2))
    )
    expected = -math.sin(gamma) * math.exp(-80 * k2 / 4) * 0.9
    got = _at(kx, ky, _params(21000, 17000, 35, kv=200, cs=2.0, w=0.07, phase=40, b=80, scale=0.9))
    assert got == pytest.approx(expected, abs=2e-3)


def test_sign_at_origin_is_plus_w():
    p = _params(12000, 11000, 20, w=0.1)
    assert _at(0.0, 0.0, p) == pytest.approx(0.1, abs=1e-7)  # protein-bright RELION data
    p90 = _params(0, 0, 0, w=0.1, phase=90)
    assert _at(0.0, 0.0, p90) == pytest.approx(math.sqrt(1 - 0.01), abs=1e-7)


def test_astigmatism_angle_direction():
    # The defocus along the azimuth direction is dfU; perpendicular to it, dfV.
    ang = 30.0
    astig = _params(20000, 10000, ang, cs=0.0, w=0.0)
    for k in (0.03, 0.07, 0.11):
        u = (k * math.cos(math.radians(ang)), k * math.sin(math.radians(ang)))
        v = (k * math.cos(math.radians(ang + 90)), k * math.sin(math.radians(ang + 90)))
        assert _at(*u, astig) == pytest.approx(_at(k, 0.0, _params(20000, 20000, 0, cs=0.0, w=0.0)), abs=1e-6)
        assert _at(*v, astig) == pytest.approx(_at(k, 0.0, _params(10000, 10000, 0, cs=0.0, w=0.0)), abs=1e-6)


def test_zero_crossings():
    # Cs = 0, w = 0: CTF = sin(pi lambda df k^2), zeros at k^2 = n / (lambda df).
    df = 15000.0
    p = _params(df, df, 0, cs=0.0, w=0.0)
    lam = electron_wavelength_A(300.0)
    for n in (1, 2, 3):
        kn = math.sqrt(n / (lam * df))
        assert abs(_at(kn, 0.0, p)) < 1e-4
        before, after = _at(kn * 0.98, 0.0, p), _at(kn * 1.02, 0.0, p)
        assert before * after < 0  # the sign flips at each zero
    # First lobe is positive (same sign as +w at the origin).
    assert _at(math.sqrt(0.5 / (lam * df)), 0.0, p) == pytest.approx(1.0, abs=1e-6)


def test_bfactor_and_scale_envelope():
    base = _params(15000, 14000, 10)
    damped = _params(15000, 14000, 10, b=100.0, scale=0.7)
    f = frequency_grid_2d(32, 1.5, dtype=torch.float64)
    c0, c1 = compute_ctf(f, base)[0], compute_ctf(f, damped)[0]
    k2 = (f * f).sum(-1)
    assert torch.allclose(c1, c0 * torch.exp(-100.0 * k2 / 4) * 0.7, atol=1e-12)


def test_grid_and_batch_shapes_match():
    params = torch.tensor(
        [[15000, 14000, 10, 300, 2.7, 0.1, 0, 0, 1], [9000, 9500, 80, 200, 2.0, 0.07, 30, 50, 1]],
        dtype=torch.float64,
    )
    k = frequencies_1d(24, 2.0, dtype=torch.float64)
    grid = compute_ctf_grid(k, k, params)
    full = compute_ctf(frequency_grid_2d(24, 2.0, dtype=torch.float64), params)
    assert grid.shape == (2, 24, 24)
    assert torch.allclose(grid, full, atol=1e-6)
    half = compute_ctf_grid(torch.fft.rfftfreq(24, 2.0, dtype=torch.float64), k, params)
    assert torch.allclose(half[..., :12], full[:, :, 12:], atol=1e-6)
    # Hermitian symmetry: CTF(-k) = CTF(k).
    assert torch.allclose(full[:, 1:, 1:], torch.flip(full[:, 1:, 1:], dims=(1, 2)), atol=1e-9)


def test_params_from_metadata_and_seven_columns():
    ctf = CTFParams(
        np.array([1e4]),
        np.array([9e3]),
        np.array([5.0]),
        np.array([300.0]),
        np.array([2.7]),
        np.array([0.1]),
        np.array([0.0]),
    )
    t = ctf_params_tensor(ctf)
    assert t.shape == (1, 9) and float(t[0, 8]) == 1.0 and float(t[0, 7]) == 0.0
    t7 = ctf_params_tensor(np.array([[1e4, 9e3, 5.0, 300.0, 2.7, 0.1, 0.0]]))
    assert torch.equal(t, t7)


def test_differentiable_in_defocus():
    p = _params(15000, 14000, 10).requires_grad_(True)
    f = frequency_grid_2d(16, 2.0, dtype=torch.float64)
    compute_ctf(f, p).sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad[0, 0] != 0
