"""Network building blocks: the residual MLP and Gaussian Fourier features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryohet.networks import GaussianFourierFeatures, ResidualMLP


def test_gaussian_fourier_features_formula_seed_and_buffer():
    enc = GaussianFourierFeatures(3, 192, sigma=0.5, scale=32.0, seed=7)
    assert enc.freqs.shape == (192, 3) and enc.n_out == 384
    # A fixed buffer: saved with the weights, never trained.
    assert "freqs" in enc.state_dict() and not list(enc.parameters())
    # Drawn from the seed alone: N(0, sigma^2) times scale.
    b = torch.randn(192, 3, generator=torch.Generator().manual_seed(7)) * 0.5
    assert torch.equal(enc.freqs, b * 32.0)
    assert torch.equal(GaussianFourierFeatures(3, 192, 0.5, 32.0, seed=7).freqs, enc.freqs)
    assert not torch.equal(GaussianFourierFeatures(3, 192, 0.5, 32.0, seed=8).freqs, enc.freqs)
    assert abs(float(enc.freqs.std()) / 16.0 - 1.0) < 0.1  # 576 draws: std within ~6 %
    x = torch.rand(5, 4, 3) - 0.5
    out = enc(x)
    proj = x @ enc.freqs.T  # no 2 pi (DRGN-AI's encoding)
    assert out.shape == (5, 4, 384)
    assert torch.allclose(out[..., :192], torch.sin(proj)) and torch.allclose(out[..., 192:], torch.cos(proj))
    # Parity in x: sines odd, cosines even (what the neural field's Hermitian rule relies on).
    assert torch.allclose(enc(-x)[..., :192], -out[..., :192]) and torch.equal(enc(-x)[..., 192:], out[..., 192:])


def test_residual_mlp_structure():
    net = ResidualMLP(10, 16, 3, 2)
    assert len(net.blocks) == 3 and net.input.in_features == 10 and net.output.out_features == 2
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == (10 * 16 + 16) + 3 * (16 * 16 + 16) + (16 * 2 + 2)
    x = torch.randn(7, 10)
    # Each block is h <- relu(W h + b + h): with W = 0 and b = 0 a block is the identity on
    # the (non-negative) hidden state, so the network reduces to output(relu(input(x))).
    with torch.no_grad():
        for layer in net.blocks:
            layer.weight.zero_()
            layer.bias.zero_()
    assert torch.allclose(net(x), net.output(torch.relu(net.input(x))))
    # With one non-zero block the skip is still there: relu(W h + b + h).
    with torch.no_grad():
        net.blocks[1].weight.normal_(0.0, 1.0 / math.sqrt(16))
    h = torch.relu(net.input(x))
    h = torch.relu(net.blocks[1](h) + h)
    assert torch.allclose(net(x), net.output(h), atol=1e-6)
    zero = ResidualMLP(10, 16, 2, 3, zero_last=True)
    assert torch.equal(zero(x), torch.zeros(7, 3))


def test_image_encoder_shapes_crop_and_kl():
    """cryoSPHERE's amortised encoder: (mean, std > 0) per image; its Fourier crop keeps the
    image's low frequencies (a band-limited image is resampled exactly); KL is 0 at N(0, I)."""
    from cryohet.networks.encoders import ImageEncoder, fourier_crop, kl_standard_normal, reparameterise

    torch.manual_seed(0)
    enc = ImageEncoder(box=48, zdim=3, input_box=24)
    mean, std = enc(torch.randn(5, 48, 48))
    assert mean.shape == std.shape == (5, 3) and bool((std > 0).all())
    k = torch.arange(48, dtype=torch.float64)
    img = torch.cos(2 * torch.pi * 3 * k / 48)[None, :].expand(48, 48)[None]  # 3 cycles per box
    small = fourier_crop(img, 24)
    k2 = torch.arange(24, dtype=torch.float64)
    assert torch.allclose(small[0], torch.cos(2 * torch.pi * 3 * k2 / 24)[None, :].expand(24, 24), atol=1e-10)
    assert torch.allclose(kl_standard_normal(torch.zeros(2, 3), torch.ones(2, 3)), torch.zeros(2))
    assert float(kl_standard_normal(torch.ones(1, 3), torch.ones(1, 3))[0]) == pytest.approx(1.5)
    z = reparameterise(mean, std)
    z.sum().backward()
    assert enc.mean.weight.grad is not None and enc.raw_std.weight.grad is not None


def test_pose_conformation_encoder_heads_rotations_and_gradients():
    """The HetACUMN/cryoSPIN encoder: H proper rotations and bounded shifts per image, a
    Gaussian over z, a head picked per image, and gradients to every parameter."""
    from cryohet.geometry.rotations import is_rotation
    from cryohet.networks.pose_encoder import PoseConformationEncoder

    torch.manual_seed(0)
    enc = PoseConformationEncoder(box=48, apix=4.0, zdim=3, heads=4, input_box=32)
    images = torch.randn(5, 48, 48)
    out = enc(images)
    assert out.rotations.shape == (5, 4, 3, 3) and out.shifts_A.shape == (5, 4, 2) and out.heads == 4
    assert out.z_mean.shape == (5, 3) and out.z_logvar.shape == (5, 3)
    assert is_rotation(out.rotations.detach().numpy().reshape(-1, 3, 3)).all()
    assert float(out.shifts_A.detach().abs().max()) <= enc.max_shift_A == pytest.approx(0.15 * 48 * 4.0)
    # the heads start apart: different rotations for the same image
    r = out.rotations[0].detach()
    assert float((r[0] - r[1]).abs().max()) > 0.1
    head = torch.tensor([0, 3, 1, 2, 0])
    rot, shifts = out.pick(head)
    assert torch.equal(rot[1], out.rotations[1, 3]) and torch.equal(shifts[3], out.shifts_A[3, 2])
    loss = rot.sum() + shifts.sum() + out.z_mean.sum() + out.z_logvar.sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    pose_only = PoseConformationEncoder(box=48, apix=4.0, zdim=0)(images)
    assert pose_only.z_mean.shape == (5, 0) and pose_only.heads == 1


def test_classified_rotations_peaks_refinement_and_soft_target_loss():
    """Rotations classified over a HEALPix grid: the heads are distinct peaks, the refinement
    goes below the grid spacing (logits equal to the soft target's log: 1.9 deg median at
    level 1, where the nearest grid rotation is 14 deg off), the cross-entropy is smallest at
    the soft target, and gradients reach the logits through the refined rotations."""
    from cryohet.geometry import so3_grid
    from cryohet.geometry.rotations import is_rotation, random_rotations, rotation_angle_deg
    from cryohet.networks.pose_encoder import EncodedImages, PoseConformationEncoder, grid_peaks

    grid = torch.as_tensor(so3_grid.base_grid(1), dtype=torch.float32)
    spacing = math.radians(so3_grid.grid_spacing_deg(1))
    truth = torch.as_tensor(random_rotations(300, np.random.default_rng(0)), dtype=torch.float32)
    angle = torch.arccos(((torch.einsum("bij,nij->bn", truth, grid) - 1) / 2).clamp(-1, 1))  # (B, N)
    log_target = torch.log_softmax(-(angle**2) / (2 * (spacing / 2) ** 2), dim=1)
    logits = log_target.clone().requires_grad_(True)
    peaks = grid_peaks(logits, grid, spacing, heads=3)
    assert peaks.shape == (300, 3, 3, 3) and is_rotation(peaks.detach().numpy().reshape(-1, 3, 3)).all()
    err = rotation_angle_deg(peaks[:, 0].detach().numpy(), truth.numpy())
    nearest = np.degrees(angle.min(dim=1).values.numpy())
    assert np.median(err) < 3.0 < 10.0 < np.median(nearest)
    apart = rotation_angle_deg(peaks[:, 0].detach().numpy(), peaks[:, 1].detach().numpy())
    assert apart.min() > np.degrees(spacing)  # peaks two spacings apart, each refined by < half of one
    peaks[:, 0].sum().backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0

    def nll(lg: torch.Tensor) -> torch.Tensor:
        e = EncodedImages(peaks.detach(), torch.zeros(300, 3, 2), torch.zeros(300, 0), torch.zeros(300, 0), lg, grid,
                          spacing / 2)  # fmt: skip
        return e.rotation_nll(truth)

    at_target = nll(log_target)
    entropy = -(log_target.exp() * log_target).sum(dim=1)
    assert torch.allclose(at_target, entropy, atol=1e-4)
    assert bool((nll(log_target + 0.3 * torch.randn_like(log_target)) > at_target).all())

    enc = PoseConformationEncoder(box=48, apix=4.0, zdim=3, heads=2, input_box=32, rotation_grid_level=1)
    out = enc(torch.randn(5, 48, 48))
    assert out.rotations.shape == (5, 2, 3, 3) and out.rotation_logits.shape == (5, 576)
    assert torch.equal(out.shifts_A[:, 0], out.shifts_A[:, 1])  # one shift, shared by the heads
    with pytest.raises(ValueError, match="classifies rotations"):
        PoseConformationEncoder(box=48, apix=4.0, zdim=0)(torch.randn(2, 48, 48)).rotation_nll(truth[:2])
