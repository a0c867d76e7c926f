"""HetACUMN's inference over in-plane views (methods/hetacumn/inference.py).

* Each view's answer is turned back to the untouched image: for an encoder that reads the
  in-plane angle of an off-centre blob exactly, every view's pose, turned back, is the
  untouched image's (to the resampling's precision), and its shift too.
* The consensus picks the candidate most others agree with, the earlier one on a tie.
"""

from __future__ import annotations

import numpy as np
import roma
import torch

from cryohet.imaging.in_plane import z_rotations
from cryohet.methods.hetacumn.inference import _turned_views, consensus_pose
from cryohet.networks.pose_encoder import EncodedImages

D = 48


class BlobAngleEncoder(torch.nn.Module):
    """Pose ``R_z(phi) A0``, origin ``Q(phi) (5, 0)`` Å, latent ``(cos phi, sin phi)``: ``phi``
    the angle of the image's centre of mass about pixel ``D // 2`` (counterclockwise in x, y)."""

    def __init__(self) -> None:
        super().__init__()
        self.a0 = roma.rotvec_to_rotmat(torch.tensor([0.3, -1.1, 0.7]))

    def forward(self, images: torch.Tensor) -> EncodedImages:
        idx = torch.arange(D, dtype=images.dtype) - D // 2
        y, x = torch.meshgrid(idx, idx, indexing="ij")
        w = images.clamp(min=0)
        phi = torch.atan2((w * y).sum((1, 2)), (w * x).sum((1, 2)))
        rz = z_rotations(phi)
        shift = (rz[:, :2, :2] @ torch.tensor([5.0, 0.0]))[:, None]
        z = torch.stack([torch.cos(phi), torch.sin(phi)], dim=-1)
        return EncodedImages((rz @ self.a0)[:, None], shift, z, torch.zeros_like(z))


def test_every_view_turned_back_is_the_untouched_images_pose():
    phis = torch.tensor([0.4, 2.2, -1.3])
    idx = torch.arange(D, dtype=torch.float32) - D // 2
    y, x = torch.meshgrid(idx, idx, indexing="ij")
    cx, cy = 10 * torch.cos(phis), 10 * torch.sin(phis)
    images = torch.exp(-((x - cx[:, None, None]) ** 2 + (y - cy[:, None, None]) ** 2) / (2 * 2.5**2))
    encoder = BlobAngleEncoder()
    rotations, shifts_A, z = _turned_views(encoder, images, views=6)
    assert rotations.shape == (3, 6, 3, 3) and shifts_A.shape == (3, 6, 2) and z.shape == (3, 6, 2)
    truth = z_rotations(phis) @ encoder.a0
    error_deg = torch.rad2deg(roma.rotmat_geodesic_distance(rotations, truth[:, None]))
    assert float(error_deg.max()) < 1.0, error_deg
    expected_shift = torch.stack([5 * torch.cos(phis), 5 * torch.sin(phis)], dim=-1)
    assert float((shifts_A - expected_shift[:, None]).abs().max()) < 0.1
    # the latent turns with the image (this encoder's is not invariant): the views differ
    assert float((z[:, 1] - z[:, 0]).abs().max()) > 0.5


def test_the_consensus_is_the_candidate_most_others_agree_with():
    base = roma.rotvec_to_rotmat(torch.tensor([[0.2, 0.1, -0.4], [1.0, 2.0, 0.5]]))
    near = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.08, 0.0]))  # 4.6° away
    far = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, 2.0]))
    # image 0: an outlier first, then three that agree; image 1: two pairs, a tie
    c0 = torch.stack([far @ base[0], base[0], near @ base[0], near.T @ base[0]])
    c1 = torch.stack([base[1], near @ base[1], far @ base[1], near @ far @ base[1]])
    chosen = consensus_pose(torch.stack([c0, c1]))
    assert chosen.tolist() == [1, 0]
    assert np.all(consensus_pose(torch.stack([c0, c1]), within_deg=1.0).numpy() == 0)  # nobody agrees: the first
