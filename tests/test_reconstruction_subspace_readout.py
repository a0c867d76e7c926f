"""The subspace readout (the linear subspace EM's E-step, kept to read new images): on
noiseless images rendered from ``mean + sum_j z_j V_j`` at known poses, shifts and CTFs it
returns ``z`` (the ridge term is negligible at this signal), times its scale; its state
round-trips through a checkpoint's tensors."""

from __future__ import annotations

import numpy as np
import torch

from cryohet.geometry.rotations import random_rotations
from cryohet.imaging.bands import FourierBand
from cryohet.imaging.projection import volume_to_fourier
from cryohet.reconstruction.linear_subspace import SubspaceReadout
from cryohet.representations.render import render

BOX, APIX = 24, 4.0


def _blob(centre_px, sigma_px: float = 2.0) -> torch.Tensor:
    c = torch.arange(BOX, dtype=torch.float32) - BOX // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    cz, cy, cx = centre_px
    return torch.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma_px**2))


def _subspace():
    mean = _blob((0, 0, 0), 4.0) + 0.5 * _blob((3, -2, 4))
    components = torch.stack([_blob((4, 1, -3)) - _blob((-4, 1, -3)), _blob((0, 5, 2)) - 0.5 * _blob((1, -5, 0))])
    return mean, components


def _images(mean, components, z, n: int):
    rot = torch.as_tensor(random_rotations(n, 3), dtype=torch.float32)
    shifts_A = torch.as_tensor(np.random.default_rng(4).uniform(-6, 6, (n, 2)), dtype=torch.float32)
    ctf = torch.tensor([[15000.0, 14000.0, 30.0, 300.0, 2.7, 0.1, 0.0, 20.0, 1.0]]).repeat(n, 1)
    ctf[:, :2] += torch.arange(n)[:, None] * 700.0
    images = render(volume_to_fourier(mean), rot, shifts_A, ctf, BOX, APIX)
    for j in range(len(components)):  # rendering is linear in the map
        images = images + z[:, j, None, None] * render(volume_to_fourier(components[j]), rot, shifts_A, ctf, BOX, APIX)
    return images, ctf, rot, shifts_A


def test_the_readout_recovers_the_coordinates_of_noiseless_images():
    mean, components = _subspace()
    z = torch.as_tensor(np.random.default_rng(0).normal(size=(16, 2)), dtype=torch.float32)
    images, ctf, rot, shifts_A = _images(mean, components, z, 16)
    band = FourierBand.up_to_shell(BOX, APIX, 8)
    readout = SubspaceReadout(mean, components, band, torch.full((band.n_shells,), 1e-6, dtype=torch.float64), 0.5)
    got = readout(images, ctf, rot, shifts_A)
    assert got.shape == (16, 2) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), 0.5 * z.numpy(), atol=2e-3 * float(z.abs().max()))
    # at wrong poses the images are not read as they were made
    wrong = torch.as_tensor(random_rotations(16, 9), dtype=torch.float32)
    assert float((readout(images, ctf, wrong, shifts_A) - 0.5 * z).abs().mean()) > 0.05
    # images without shifts are read with None for their origins
    unshifted = _images(mean, components, z, 16)
    images0 = render(volume_to_fourier(mean), unshifted[2], None, unshifted[1], BOX, APIX)
    assert readout(images0, unshifted[1], unshifted[2], None).abs().max() < 2e-3
    # a checkpoint's tensors give the same readout
    state = readout.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    again = SubspaceReadout.from_state_dict(state)
    torch.testing.assert_close(again(images, ctf, rot, shifts_A), got)


def test_the_ridge_shrinks_coordinates_the_noise_hides():
    """At a noise far above the components' signal the posterior mean goes to 0 (the prior)."""
    mean, components = _subspace()
    z = torch.ones(4, 2)
    images, ctf, rot, shifts_A = _images(mean, components, z, 4)
    band = FourierBand.up_to_shell(BOX, APIX, 8)
    loud = SubspaceReadout(mean, components, band, torch.full((band.n_shells,), 1e8, dtype=torch.float64))
    assert float(loud(images, ctf, rot, shifts_A).abs().max()) < 1e-3


def test_the_readout_solves_the_posterior_of_the_filtered_slices():
    """The readout's normal equations (no filtered slice formed, the band's zero-weight pixels
    left out) give :meth:`SubspaceReadout.solve`'s posterior means, which filter every slice:
    with CTF and shifts, without shifts, without CTF, at a noise spectrum that varies by shell
    (so the ridge term matters) and on noisy images."""
    mean, components = _subspace()
    z = torch.as_tensor(np.random.default_rng(1).normal(size=(12, 2)), dtype=torch.float32)
    images, ctf, rot, shifts_A = _images(mean, components, z, 12)
    images = images + 0.3 * float(images.std()) * torch.randn(images.shape, generator=torch.Generator().manual_seed(2))
    band = FourierBand.up_to_shell(BOX, APIX, 10)
    sigma2 = torch.linspace(0.5, 4.0, band.n_shells, dtype=torch.float64) * float((images**2).sum(dim=(1, 2)).mean())
    readout = SubspaceReadout(mean, components, band, sigma2, 2.0)
    for ctf_i, shifts_i in ((ctf, shifts_A), (ctf, None), (None, shifts_A), (None, None)):
        want = 2.0 * readout.solve(images, ctf_i, rot, shifts_i)[3]
        got = readout(images, ctf_i, rot, shifts_i)
        assert float(want.abs().max()) > 0.05  # a reading, not the prior's 0
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_the_consensus_mask_is_thresholded_at_its_low_pass():
    """The subspace's default mask thresholds the consensus low-passed to ``mask_lowpass_A``
    (20 Å): on a noisy consensus it keeps the particle and drops the noise around it (which
    the components would fit); where the Nyquist is coarser than the low-pass it is the
    threshold of the consensus as it is."""
    from cryohet.reconstruction.linear_subspace import SubspaceSettings, _mask

    particle = _blob((0, 0, 0), 3.0) + _blob((4, 2, -3), 2.0)
    noisy = particle + 0.06 * torch.randn(particle.shape, generator=torch.Generator().manual_seed(0))
    inside = particle > 0.3
    raw = _mask(SubspaceSettings(mask_lowpass_A=None), noisy, BOX, 3.0)
    low = _mask(SubspaceSettings(), noisy, BOX, 3.0)
    assert float(low[inside].min()) == 1.0 and float(raw[inside].min()) == 1.0
    assert float(low.mean()) < 0.5 * float(raw.mean()), (float(low.mean()), float(raw.mean()))
    coarse = _mask(SubspaceSettings(), noisy, BOX, 14.0)  # Nyquist 28 Å: nothing to low-pass
    torch.testing.assert_close(coarse, _mask(SubspaceSettings(mask_lowpass_A=None), noisy, BOX, 14.0))
