"""The EM baselines' band: each independent pixel once, and the model equals the shared forward model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryohet.geometry.rotations import random_rotations
from cryohet.imaging.bands import FourierBand
from cryohet.imaging.projection import volume_to_fourier
from cryohet.reconstruction.band_limits import band_shell_from_fsc, shell_of_resolution
from cryohet.representations.render import model_images, render


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
    band = FourierBand.up_to_shell(box, apix, shell)
    c = box // 2
    rows, cols = band.ky_idx + c, band.kx_idx + c
    full = render(vft, rot, shifts, ctf, box, apix, output="fourier")
    ref = full[:, rows][:, :, cols]
    got = model_images(vft, rot, band, band.filters(ctf, shifts))
    w = band.weights > 0
    torch.testing.assert_close(got[:, w], ref[:, w], rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    # one pixel of each Hermitian pair, every pixel 1 <= |k| <= shell, none twice
    ky, kx = torch.meshgrid(band.ky_idx, band.kx_idx, indexing="ij")
    pix = set(zip(kx[w].tolist(), ky[w].tolist()))
    assert not pix & {(-x, -y) for x, y in pix}
    expected = sum(1 for x in range(-c, c) for y in range(-c, c) if 1 <= round((x * x + y * y) ** 0.5) <= shell)
    assert 2 * len(pix) == expected == 2 * int(band.weights.sum())
    # observed() reads the same pixels of the image transforms
    img = render(vft, rot, shifts, ctf, box, apix)
    torch.testing.assert_close(
        band.observed(img),
        torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(img, dim=(-2, -1))), dim=(-2, -1))[:, rows][:, :, cols],
    )


def test_band_limits():
    fsc = np.array([1.0, 0.99, 0.9, 0.5, 0.2, 0.1, 0.05, 0.0, 0.0])  # shells 0..8 of D=16
    assert band_shell_from_fsc(fsc, 16) == 7  # first below 0.143 is shell 5, +2
    assert band_shell_from_fsc(np.ones(9), 16) == 7  # capped at D/2 - 1
    assert shell_of_resolution(12.0, 16, 3.0) == 4  # 48 Å box / 12 Å
