"""Latent initialisation from regional occupancy: absent regions get coefficient 0, present 1,
and the states separate in the initial latents."""

from __future__ import annotations

import numpy as np
import torch

from cryohet.data.batch import ParticleBatch
from cryohet.geometry.rotations import random_rotations
from cryohet.imaging.fft import frequencies_1d, ifft2_centered
from cryohet.imaging.gaussians import gaussian_projection_ft
from cryohet.methods.spire.latent_init import latents_from_coefficients, regional_coefficients, spatial_regions
from cryohet.methods.spire.objective import data_band


def _scene():
    g = torch.Generator().manual_seed(1)
    core = torch.randn(30, 3, generator=g) * 2.0 - torch.tensor([4.0, 0.0, 0.0])
    sub = torch.randn(10, 3, generator=g) * 1.5 + torch.tensor([6.0, 0.0, 0.0])
    return torch.cat([core, sub]), torch.full((40,), 3.0), torch.full((40,), 1.3)


def _images(centres, amps, sigmas, present, rot, d, apix):
    """Real-space projections (B, D, D): the subunit (rows 30..39) only where ``present``."""
    a = amps[None].repeat(len(present), 1)
    a[~present, 30:] = 0.0
    k = frequencies_1d(d, apix)
    ft = gaussian_projection_ft(centres * apix, a, sigmas * apix, rot, k, k, apix)
    return ifft2_centered(ft).real.float()


def test_regional_coefficients_read_presence_and_latents_separate_states():
    d, apix, n = 32, 3.0, 40
    centres, amps, sigmas = _scene()
    regions = spatial_regions(centres.numpy(), amps.numpy(), 2, seed=0)
    assert len(set(regions[:30])) == 1 and len(set(regions[30:])) == 1 and regions[0] != regions[30]
    present = torch.arange(n) % 2 == 0
    rot = torch.as_tensor(random_rotations(n, 3), dtype=torch.float32)
    images = _images(centres, amps, sigmas, present, rot, d, apix)
    g = torch.Generator().manual_seed(3)
    images = images + 0.05 * images.std() * torch.randn(images.shape, generator=g)
    batches = [
        ParticleBatch(
            index=torch.arange(i, i + 8),
            images=images[i : i + 8],
            rotations=rot[i : i + 8],
            shifts_A=torch.zeros(8, 2),
        )
        for i in range(0, n, 8)
    ]
    band = data_band(d, apix)
    a = regional_coefficients(centres, amps, sigmas, regions, batches, band, torch.device("cpu"), n_images=n)
    sub, core = int(regions[30]), int(regions[0])
    assert np.allclose(a[:, core], 1.0, atol=0.05)
    assert np.allclose(a[present.numpy(), sub], 1.0, atol=0.05)
    assert np.allclose(a[~present.numpy(), sub], 0.0, atol=0.05)
    z = latents_from_coefficients(a, 4)
    assert z.shape == (n, 4) and abs(z[:, 0].std() - 1.0) < 1e-4
    # the first latent dimension splits the two compositions
    s = np.sign(z[:, 0])
    assert len(set(s[present.numpy()])) == 1 and len(set(s[~present.numpy()])) == 1 and s[0] != s[1]
