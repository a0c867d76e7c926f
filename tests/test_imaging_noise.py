"""Noise models: white noise at a target SNR, coloured noise from a radial PSD."""

from __future__ import annotations

import pytest
import torch

from cryohet.imaging.noise import (
    add_white_noise,
    colored_noise,
    noise_sigma_for_snr,
    radial_power_spectrum,
)


def test_white_noise_level_per_stack_and_per_image():
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(50, 32, 32, generator=g) * torch.linspace(0.5, 2.0, 50)[:, None, None]
    noisy, sigma = add_white_noise(clean, snr=0.1, generator=g)
    assert float(sigma) == pytest.approx(float(clean.std()) / 0.1**0.5, rel=1e-6)
    assert float((noisy - clean).std()) == pytest.approx(float(sigma), rel=0.02)
    # Empirical SNR = var(signal) / var(noise).
    assert float(clean.var() / (noisy - clean).var()) == pytest.approx(0.1, rel=0.05)
    noisy_i, sigma_i = add_white_noise(clean, snr=0.5, per_image=True, generator=g)
    assert sigma_i.shape == (50,)
    per = (noisy_i - clean).reshape(50, -1).std(dim=1)
    assert torch.allclose(per / sigma_i, torch.ones(50), atol=0.1)
    assert torch.allclose(noise_sigma_for_snr(clean, 0.5, per_image=True), sigma_i)
    with pytest.raises(ValueError):
        noise_sigma_for_snr(clean, 0.0)


def test_colored_noise_follows_psd():
    g = torch.Generator().manual_seed(1)
    box = 32
    shells = torch.arange(box // 2 + 1, dtype=torch.float32)
    psd = 2.0 * torch.exp(-shells / 6.0) + 0.1
    noise = colored_noise((400, box, box), psd, generator=g)
    measured = radial_power_spectrum(noise)[1 : box // 2]
    assert torch.allclose(measured / psd[1 : box // 2], torch.ones(box // 2 - 1), atol=0.1)
    # Callable form and the white limit: psd = sigma^2 gives variance sigma^2.
    white = colored_noise((200, box, box), lambda k: torch.full_like(k, 0.25), generator=g)
    assert float(white.var()) == pytest.approx(0.25, rel=0.03)
    assert torch.allclose(radial_power_spectrum(white)[1:16], torch.full((15,), 0.25), rtol=0.1)
