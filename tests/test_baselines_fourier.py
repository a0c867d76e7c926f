"""The band-limited image model of the EM baselines equals the shared forward model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryohet.data.batch import ParticleBatch
from cryohet.geometry.rotations import random_rotations
from cryohet.imaging.fft import fft2_centered
from cryohet.imaging.projection import volume_to_fourier
from cryohet.imaging.render import render
from cryohet.methods.baselines.fourier import ImageBand, band_shell_from_fsc, shell_of_resolution


@pytest.mark.parametrize("shell", [3, 7])
def test_band_model_equals_render(shell):
    box, apix, n = 16, 3.0, 6
    g = torch.Generator().manual_seed(0)
    vol = torch.randn(box, box, box, generator=g)
    vft = volume_to_fourier(vol)
    rot = torch.as_tensor(random_rotations(n, np.random.default_rng(0)), dtype=torch.float32)
    shifts = torch.randn(n, 2, generator=g) * 4.0
    ctf = torch.tensor([[15000.0, 14000.0, 30.0, 300.0, 2.7, 0.1, 0.0, 0.0, 1.0]]).repeat(n, 1)
    ctf[:, 0] += torch.arange(n) * 1000.0
    batch = ParticleBatch(
        index=torch.arange(n), images=torch.zeros(n, box, box), ctf_params=ctf, rotations=rot, shifts_A=shifts
    )
    band = ImageBand(box, apix, shell)
    ref = render(vft, rot, shifts, ctf, box, apix, output="fourier").reshape(n, -1)[:, band.index]
    got = band.model(vft, batch)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    # one pixel of each Hermitian pair, every pixel 1 <= |k| <= shell, none twice
    c = box // 2
    ky, kx = band.index // box - c, band.index % box - c
    assert len(set(band.index.tolist())) == band.n_pixels
    assert not set(zip(kx.tolist(), ky.tolist())) & set(zip((-kx).tolist(), (-ky).tolist()))
    expected = sum(1 for x in range(-c, c) for y in range(-c, c) if 1 <= round((x * x + y * y) ** 0.5) <= shell)
    assert 2 * band.n_pixels == expected
    # observed() reads the same pixels of the image transforms
    img = render(vft, rot, shifts, ctf, box, apix)
    torch.testing.assert_close(band.observed(img), fft2_centered(img).reshape(n, -1)[:, band.index])


def test_band_limits():
    fsc = np.array([1.0, 0.99, 0.9, 0.5, 0.2, 0.1, 0.05, 0.0, 0.0])  # shells 0..8 of D=16
    assert band_shell_from_fsc(fsc, 16) == 7  # first below 0.143 is shell 5, +2
    assert band_shell_from_fsc(np.ones(9), 16) == 7  # capped at D/2 - 1
    assert shell_of_resolution(12.0, 16, 3.0) == 4  # 48 Å box / 12 Å
