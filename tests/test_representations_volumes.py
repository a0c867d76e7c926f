"""VoxelVolume (Fourier resampling) and GaussianMixture."""

from __future__ import annotations

import pytest
import torch

from cryohet.imaging.fft import fft3_centered, ifft3_centered
from cryohet.representations import GaussianMixture, VoxelVolume, resample_volume


def _gmm(n: int = 20, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    c = (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5) * 20
    return GaussianMixture(
        c,
        torch.rand(n, generator=g, dtype=torch.float64) + 0.5,
        torch.full((n,), 3.0, dtype=torch.float64),
    )


def test_identity_and_exact_fourier_padding():
    vol = _gmm().to_volume(24, 1.5)
    assert VoxelVolume(vol, 1.5).to_volume(24, 1.5) is vol
    # Same extent, half the pixel size: equals zero-padding the centred 3D DFT.
    up = resample_volume(vol, 1.5, 48, 0.75)
    F = fft3_centered(vol)
    Fp = torch.zeros((48,) * 3, dtype=F.dtype)
    Fp[12:36, 12:36, 12:36] = F
    Fp[12, :, :] = 0  # the unpaired Nyquist planes of an even box (resample drops them too)
    Fp[:, 12, :] = 0
    Fp[:, :, 12] = 0
    F2 = F.clone()
    F2[0], F2[:, 0], F2[:, :, 0] = 0, 0, 0
    Fp[12:36, 12:36, 12:36] = F2
    ref = ifft3_centered(Fp).real * 8
    assert torch.allclose(up[:-1, :-1, :-1], ref[:-1, :-1, :-1], atol=1e-3 * ref.abs().max())


def test_resampling_matches_the_analytic_density():
    gmm = _gmm(seed=1)
    coarse = gmm.to_volume(32, 2.0)
    # Up-sampling and cropping are exact to 1e-4; down-sampling to 3 Å drops the tail of
    # the spectrum above the new Nyquist that the direct voxelisation aliases (0.2 %).
    for box, apix, tol in ((40, 1.5, 1e-4), (64, 1.0, 1e-4), (28, 2.0, 1e-4), (20, 3.0, 5e-3)):
        direct = gmm.to_volume(box, apix)
        resampled = VoxelVolume(coarse, 2.0).to_volume(box, apix)
        assert (resampled - direct).norm() / direct.norm() < tol, (box, apix)


def test_gaussian_mixture_validation_and_subset():
    gmm = _gmm(5)
    assert len(gmm) == 5 and gmm.to_volume(16, 2.0).shape == (16, 16, 16)
    scalar = GaussianMixture(gmm.centres_A, gmm.amplitudes, torch.tensor(2.0, dtype=torch.float64), torch.arange(5))
    assert scalar.sigmas_A.shape == (5,)
    part = scalar.subset(scalar.labels < 2)
    assert len(part) == 2 and torch.equal(part.labels, torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        GaussianMixture(torch.zeros(4, 2), torch.ones(4), torch.ones(4))
    with pytest.raises(ValueError):
        GaussianMixture(torch.zeros(4, 3), torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError):
        VoxelVolume(torch.zeros(4, 4, 5), 1.0)
    # The real-space splat option agrees with the band-limited voxelisation (which is
    # periodic: keep the Gaussians away from the box faces).
    inner = GaussianMixture(gmm.centres_A * 0.5, gmm.amplitudes, gmm.sigmas_A)
    assert torch.allclose(inner.to_volume(24, 1.5, band_limit=False), inner.to_volume(24, 1.5), atol=1e-3)
