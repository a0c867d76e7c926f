"""Fourier-slice projection, its exact adjoint, and the convention-pinning fixture."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cryohet.geometry.rotations import random_rotations
from cryohet.imaging.fft import (
    fft2_centered,
    fft3_centered,
    fourier_crop_2d,
    ifft2_centered,
    ifft3_centered,
    radial_index_2d,
)
from cryohet.imaging.projection import (
    backproject,
    backproject_slices,
    project,
    project_fourier,
    project_real_space,
    trilinear_gather,
    volume_to_fourier,
)


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per image over the last two axes."""
    a = a - a.mean(dim=(-1, -2), keepdim=True)
    b = b - b.mean(dim=(-1, -2), keepdim=True)
    return (a * b).sum(dim=(-1, -2)) / torch.sqrt((a * a).sum(dim=(-1, -2)) * (b * b).sum(dim=(-1, -2)))


def _blobs(box: int, n: int, sigma: float, extent: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    vol = torch.zeros(box, box, box)
    for _ in range(n):
        cx, cy, cz = ((torch.rand(3, generator=g) * 2 - 1) * extent).tolist()
        vol += (0.5 + torch.rand(1, generator=g)) * torch.exp(
            -((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma**2)
        )
    return vol


def _rot(n: int, seed: int = 0) -> torch.Tensor:
    return torch.tensor(random_rotations(n, seed), dtype=torch.float32)


def _bandlimited_projection(vol: torch.Tensor, rot: torch.Tensor, up: int = 3) -> torch.Tensor:
    """Independent reference: Fourier-upsample, rotate-and-sum in real space, Fourier-crop."""
    box = vol.shape[-1]
    big = up * box
    V = fft3_centered(vol)
    Vp = torch.zeros((big,) * 3, dtype=V.dtype)
    b = big // 2 - box // 2
    Vp[b : b + box, b : b + box, b : b + box] = V
    vu = ifft3_centered(Vp).real * up**3
    pu = project_real_space(vu, rot)
    return ifft2_centered(fourier_crop_2d(fft2_centered(pu), box)).real / up**3


def test_fourier_slice_matches_real_space_rotate_and_sum():
    vol = _blobs(64, 12, sigma=2.5, extent=14)
    rot = _rot(6)
    ref = project_real_space(vol, rot)
    fs = project(vol, rot)
    assert _corr(fs, ref).min() > 0.99
    # Transposed rotations give clearly different images (the test can fail).
    assert _corr(project(vol, rot.transpose(1, 2)), ref).mean() < 0.9


def test_fourier_slice_matches_bandlimited_reference():
    vol = _blobs(24, 10, sigma=1.5, extent=6, seed=3)
    rot = _rot(5, seed=1)
    ref = _bandlimited_projection(vol, rot)
    errors = {}
    for image_oversample in (1, 2):
        p = project(vol, rot, image_oversample=image_oversample)
        errors[image_oversample] = ((p - ref).norm(dim=(1, 2)) / ref.norm(dim=(1, 2))).max()
    # Measured 4.2 % and 1.3 % for this fairly extended volume (trilinear interpolation of a
    # 2x-padded transform; sampling the slice finer and cropping removes the ghosts of the
    # padded grid's periodic copies that fold into a D-periodic image).
    assert errors[1] < 0.05 and errors[2] < 0.02 and errors[2] < 0.5 * errors[1], errors


def test_pixel_sum_normalisation():
    vol = _blobs(32, 8, sigma=2.0, extent=6)
    rot = _rot(4)
    # Without the gridding pre-correction the DC sample is exact: images sum to the volume.
    raw = project(volume_to_fourier(vol, 2, gridding=False), rot)
    assert torch.allclose(raw.sum(dim=(1, 2)), vol.sum().expand(4), rtol=1e-4)
    # With it, the DC term is biased up by the density-weighted mean of 1/sinc^2 (a few %).
    corrected = project(vol, rot)
    ratio = corrected.sum(dim=(1, 2)) / vol.sum()
    assert torch.all((ratio > 1.0) & (ratio < 1.04))
    assert torch.allclose(project(vol, rot, image_oversample=2).sum(dim=(1, 2)) / vol.sum(), torch.ones(4), atol=0.015)


@pytest.mark.parametrize("image_oversample", [1, 2])
def test_backproject_is_exact_adjoint(image_oversample):
    g = torch.Generator().manual_seed(5)
    box = 12
    x = torch.randn(box, box, box, generator=g, dtype=torch.float64)
    y = torch.randn(7, box, box, generator=g, dtype=torch.float64)
    rot = torch.tensor(random_rotations(7, 2))
    lhs = (project(x, rot, image_oversample=image_oversample) * y).sum()
    rhs = (x * backproject(y, rot, image_oversample=image_oversample)).sum()
    assert abs(float(lhs - rhs)) <= 1e-4 * abs(float(lhs))
    # float32 too, at the required tolerance.
    lhs32 = (project(x.float(), rot.float(), image_oversample=image_oversample) * y.float()).sum()
    rhs32 = (x.float() * backproject(y.float(), rot.float(), image_oversample=image_oversample)).sum()
    assert abs(float(lhs32 - rhs32)) <= 1e-4 * abs(float(lhs32))


def test_slice_sampling_adjoint_and_autograd_agree():
    g = torch.Generator().manual_seed(1)
    box = 10
    vol = torch.randn(box, box, box, generator=g, dtype=torch.float64)
    rot = torch.tensor(random_rotations(3, 4))
    vft = volume_to_fourier(vol, 2)
    s = torch.randn(3, box, box, generator=g, dtype=torch.complex128)
    lhs = torch.vdot(project_fourier(vft, rot).reshape(-1), s.reshape(-1))
    rhs = torch.vdot(vft.data.reshape(-1), backproject_slices(s, rot, vft.padded).reshape(-1))
    assert torch.allclose(lhs, rhs, rtol=1e-10)
    # Autograd of <project(v), y> w.r.t. v is the backprojection of y.
    v = vol.clone().requires_grad_(True)
    y = torch.randn(3, box, box, generator=g, dtype=torch.float64)
    (project(v, rot) * y).sum().backward()
    assert torch.allclose(v.grad, backproject(y, rot), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", ["complex", "real", "two channels", "channels"])
def test_gather_without_gradients_is_the_differentiable_gather(kind):
    """The no-grad paths (torch's grid_sample for the pose search's complex grids; weighted
    corner rows by embedding_bag for grids of more than two channels, a subspace's) and the
    differentiable 8-corner gather give the same values, the edge rule included (a point
    whose cell leaves the grid is 0), so a search and a training step read the same slices."""
    g = torch.Generator().manual_seed(3)
    size = 9
    shape = {"complex": (size,) * 3, "real": (size,) * 3, "two channels": (size,) * 3 + (2,),
             "channels": (size,) * 3 + (18,)}[kind]  # fmt: skip
    dtype = torch.complex128 if kind == "complex" else torch.float64
    grid = torch.randn(shape, generator=g, dtype=dtype)
    coords = torch.rand(500, 3, generator=g, dtype=torch.float64) * (size + 1) - 1.0  # ~30 % off the grid
    coords[:5] = torch.tensor(
        [[0.0, 0.0, 0.0], [size - 1.0, 2.0, 2.0], [size - 1.5, 0.5, 3.0], [-1e-9, 4, 4], [4, 4, 7.999]]
    )
    fast = trilinear_gather(grid, coords)
    slow = trilinear_gather(grid.clone().requires_grad_(True), coords).detach()
    assert fast.shape == slow.shape and torch.count_nonzero(slow) < slow.numel()
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        trilinear_gather(grid.float() if kind != "complex" else grid.to(torch.complex64), coords.float()).to(
            slow.dtype
        ),
        slow,
        rtol=1e-4,
        atol=1e-4,
    )


def test_gradient_flows_to_rotations():
    vol = _blobs(16, 4, sigma=1.5, extent=3)
    rot = _rot(2).requires_grad_(True)
    project(vol, rot).pow(2).sum().backward()
    assert torch.isfinite(rot.grad).all() and rot.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    vol = _blobs(24, 6, sigma=1.5, extent=5)
    rot = _rot(4)
    cpu = project(vol, rot)
    gpu = project(vol.cuda(), rot.cuda()).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4 * cpu.abs().max())
    y = torch.randn(4, 24, 24)
    assert torch.allclose(backproject(y, rot), backproject(y.cuda(), rot.cuda()).cpu(), rtol=1e-3, atol=1e-3)


# ----------------------------------------------------------------------------- fixture


def _toy(shared):
    from cryohet.io.mrc import open_stack, read_volume
    from cryohet.io.safe_pickle import load_pickle

    vol, _ = read_volume(shared / "toymodel_small_nocenter.mrc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stack's header is non-standard (documented)
        stack, _ = open_stack(shared / "toy_projections.mrcs")
    rot = load_pickle(shared / "toy_angles.pkl")
    return (
        torch.tensor(vol),
        torch.tensor(np.array(stack)),
        torch.tensor(np.asarray(rot), dtype=torch.float32),
    )


@pytest.mark.shared
def test_toy_projections_pin_the_rotation_convention(shared_fixtures):
    vol, images, rot = _toy(shared_fixtures)
    assert vol.shape == (30, 30, 30) and images.shape == (1000, 30, 30)
    # cryoDRGN's R is RELION's A: real-space rotate-and-sum reproduces the stack.
    ref = project_real_space(vol, rot)
    assert _corr(ref, images).min() >= 0.999
    # The transposed convention does not (README: 0.46).
    wrong = project_real_space(vol, rot[:200].transpose(1, 2))
    assert _corr(wrong, images[:200]).mean() < 0.7


@pytest.mark.shared
def test_toy_projections_fourier_slice(shared_fixtures):
    vol, images, rot = _toy(shared_fixtures)
    fs = project(vol, rot)
    c = _corr(fs, images)
    # The stack was made by real-space *trilinear* rotation, which blurs high frequencies
    # by an amount that depends on the angle; the Fourier-slice projection is the
    # band-limited one. Mean 0.994 (README: 0.995), worst 0.98 on the raw images.
    assert c.mean() >= 0.99 and c.min() >= 0.98
    # Below 2/3 Nyquist the two agree per image to >= 0.99.
    lowpass = (radial_index_2d(30) <= 10).to(torch.complex64)

    def lp(x):
        return ifft2_centered(fft2_centered(x) * lowpass).real

    assert _corr(lp(fs), lp(images)).min() >= 0.99
    # And the Fourier-slice projection matches a band-limited real-space reference closely.
    ref = _bandlimited_projection(vol, rot[:8])
    assert _corr(fs[:8], ref).min() >= 0.999
