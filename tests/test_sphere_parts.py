"""cryoSPHERE's pieces: the segmentation over residue index, the blended rigid motion of
segments, and the continuity and clash restraints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch

from cryohet.geometry.rotations import random_rotations
from cryohet.methods.sphere.deformation import (
    decoded_rotvecs,
    deform,
    residue_transforms,
    rotation_outputs,
    segment_rotvecs,
)
from cryohet.methods.sphere.restraints import clash_loss, clash_pairs, continuity_loss
from cryohet.methods.sphere.segmentation import Segmentation


def test_segmentation_starts_as_even_blocks_and_its_kl_is_zero_at_the_prior():
    seg = Segmentation(200, 4)
    w = seg(3, sample=False)
    assert w.shape == (3, 200, 4) and torch.allclose(w.sum(-1), torch.ones(3, 200))
    labels = seg.hard_labels()
    inner = [i for i in range(200) if i % 50]  # residues 50, 100, 150 sit on a tie
    assert labels[inner].tolist() == [i // 50 for i in inner]
    assert (w.max(dim=-1).values[0, [25, 75, 125, 175]] > 0.999).all()  # tau = 0.05: hard at the centres
    assert abs(float(seg.kl().detach())) < 1e-4
    with torch.no_grad():
        seg.centre_mean[0] += 5.0
    assert float(seg.kl_terms()[0].detach()) > 0 and abs(float(seg.kl_terms()[1].detach())) < 1e-4
    seg.train()
    a, b = seg(2), seg(2)
    assert not torch.allclose(a, b)  # sampled per image in training
    a.sum().backward()
    assert seg.centre_mean.grad is not None


def test_a_rigid_segment_motion_moves_its_residues_rigidly_and_nothing_else():
    torch.manual_seed(0)
    n = 60
    x = torch.randn(n, 3, dtype=torch.float64) * 10
    w = torch.zeros(1, n, 2, dtype=torch.float64)
    w[0, :40, 0] = 1.0
    w[0, 40:, 1] = 1.0
    R = torch.as_tensor(random_rotations(1, 4)[0])
    q = roma.rotmat_to_unitquat(R)  # (x, y, z, w)
    q = q if q[3] > 0 else -q
    v = torch.zeros(1, 2, 3, dtype=torch.float64)
    v[0, 1] = q[:3] / q[3]  # real part fixed at 1
    t = torch.zeros(1, 2, 3, dtype=torch.float64)
    t[0, 1] = torch.tensor([3.0, -2.0, 1.0])
    rv = segment_rotvecs(v)
    assert torch.allclose(roma.rotvec_to_rotmat(rv[0, 1]), R, atol=1e-10)
    y = deform(x, w, rv, t)
    assert torch.allclose(y[0, :40], x[:40], atol=1e-12)
    assert torch.allclose(y[0, 40:], x[40:] @ R.T + t[0, 1], atol=1e-10)
    rot, shift = residue_transforms(w, rv, t)
    assert torch.allclose(torch.einsum("bnij,nj->bni", rot, x) + shift, y)
    # blended: half a membership turns by half the angle
    w2 = torch.full((1, n, 1), 0.5, dtype=torch.float64)
    rot2, _ = residue_transforms(w2, rv[:, 1:], t[:, 1:])
    half = math.degrees(float(rv[0, 1].norm())) / 2
    ang = math.degrees(float(roma.rotmat_to_rotvec(rot2[0, 0]).norm()))
    assert abs(ang - half) < 1e-8


def test_the_sixd_reading_follows_a_full_turn_linearly_in_a_latent_ring_and_the_quaternion_cannot_pass_180():
    """A domain turning through 360° about a fixed axis: with ``"sixd"`` the decoder outputs
    that give each state's turn exactly are a linear function of the ring's embedding
    ``(cos phi, sin phi)`` (so a plain MLP can follow the whole loop with no cut), for
    every angle including 180°; zero outputs are the identity in every reading."""
    torch.manual_seed(1)
    axis = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64), dim=0)
    phi = torch.deg2rad(torch.arange(0.0, 360.0, 18.0, dtype=torch.float64))
    truth = roma.rotvec_to_rotmat(phi[:, None] * axis)  # (20, 3, 3)
    eye = torch.eye(3, dtype=torch.float64)
    # R(phi) = P + cos(phi) (I - P) + sin(phi) [axis]_x, P = axis axis^T: its first two columns
    # are a constant plus cos and sin times constants, minus the identity's columns
    proj = torch.outer(axis, axis)
    ax, ay, az = axis.tolist()
    cross = torch.tensor([[0.0, -az, ay], [az, 0.0, -ax], [-ay, ax, 0.0]], dtype=torch.float64)  # [axis]_x
    ring = torch.stack([torch.ones_like(phi), torch.cos(phi), torch.sin(phi)], dim=-1)  # (20, 3)
    weights = torch.stack([proj - eye, eye - proj, cross])[..., :2]  # (3 features, 3, 2 columns)
    out = torch.einsum("nf,fcj->njc", ring, weights).reshape(-1, 6)  # first column, then second
    assert torch.allclose(roma.rotvec_to_rotmat(torch.zeros(3, dtype=torch.float64)), eye)
    decoded = roma.rotvec_to_rotmat(decoded_rotvecs(out, "sixd"))
    assert torch.allclose(decoded, truth, atol=1e-9)  # every state, 0° to 342° through 180°
    assert rotation_outputs("sixd") == 6 and rotation_outputs("rotvec") == 3
    for reading in ("sixd", "rotvec", "quaternion"):
        zero = torch.zeros(4, rotation_outputs(reading), dtype=torch.float64)
        assert torch.allclose(decoded_rotvecs(zero, reading), torch.zeros(4, 3, dtype=torch.float64))
    r = roma.rotvec_to_rotmat(decoded_rotvecs(torch.randn(50, 6, dtype=torch.float64), "sixd"))
    assert torch.allclose(r.transpose(-1, -2) @ r, eye.expand(50, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(50, dtype=torch.float64))
    big = decoded_rotvecs(torch.full((1, 3), 1e6, dtype=torch.float64), "quaternion")
    assert math.degrees(float(big.norm())) < 180.0


def test_restraints_vanish_for_rigid_motions_and_see_breaks_and_clashes():
    torch.manual_seed(1)
    n = 30
    steps = torch.nn.functional.normalize(torch.randn(n, 3), dim=-1) * 3.8
    base = torch.cumsum(steps, 0)
    bonded = torch.ones(n, dtype=torch.bool)
    bonded[-1] = False
    R = torch.as_tensor(random_rotations(1, 2)[0], dtype=torch.float32)
    rigid = (base @ R.T + 5.0)[None]
    assert float(continuity_loss(rigid, base, bonded)[0]) < 1e-8
    stretched = base.clone()
    stretched[15:] += torch.tensor([2.0, 0.0, 0.0])
    assert float(continuity_loss(stretched[None], base, bonded)[0]) > 1e-3  # one bond of 29 changed
    bonded[14] = False  # a gap between residues 14 and 15: no pull across it
    assert float(continuity_loss(stretched[None], base, bonded)[0]) < 1e-8
    # two strands 6 Å apart (candidates); pushed to 2 Å they clash
    a = torch.stack([torch.arange(10.0) * 3.8, torch.zeros(10), torch.zeros(10)], dim=1)
    b = a + torch.tensor([0.0, 6.0, 0.0])
    model = torch.cat([a, b])
    pairs = clash_pairs(model)
    assert len(pairs) > 0 and bool(((pairs[:, 1] - pairs[:, 0]) >= 2).all())
    assert float(clash_loss(model[None], pairs)[0]) == 0.0
    pushed = torch.cat([a, a + torch.tensor([0.0, 2.0, 0.0])])[None]
    assert np.isclose(float(clash_loss(pushed, pairs)[0]), 4.0)  # (2 - 4)^2 for each clashing pair


def test_segments_are_shared_by_chain_length_and_never_cross_a_chain():
    from cryohet.methods.sphere.segmentation import ChainSegmentation, share_segments

    assert share_segments([230, 215], 4) == [2, 2]
    assert share_segments([1000, 10, 10], 20) == [18, 1, 1]
    assert sum(share_segments([450, 215, 450, 215], 20)) == 20
    with pytest.raises(ValueError):
        share_segments([100, 100, 100], 2)
    # chains interleaved in file order: each residue's memberships stay within its chain's segments
    chain_of = torch.tensor([0] * 30 + [1] * 20 + [0] * 10)
    seg = ChainSegmentation(chain_of, 5)
    w = seg(3).detach()
    assert w.shape == (3, 60, 5)
    assert torch.allclose(w.sum(-1), torch.ones(3, 60))
    first = list(range(seg.share[0]))
    assert float(w[:, chain_of == 0][..., seg.share[0] :].abs().max()) == 0.0
    assert float(w[:, chain_of == 1][..., first].abs().max()) == 0.0
    labels = seg.hard_labels()
    assert set(labels[chain_of == 1].tolist()) <= set(range(seg.share[0], 5))
    kl = seg.kl().detach()
    assert torch.isfinite(kl) and float(kl) >= 0
