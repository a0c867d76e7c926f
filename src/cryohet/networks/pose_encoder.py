"""An amortised encoder that predicts both the pose and the conformation of a particle image.

``image (B, D, D) -> EncodedImages``: ``heads`` candidate poses per image (rotation as
RELION ``A`` through the continuous 6D parametrisation, and the RELION origin in Å) and a
Gaussian over the latent ``z`` (mean and log-variance). Several pose heads let an image
keep several hypotheses (cryoSPIN's multi-head encoder: the head whose pose explains the
image best is trained on it, so symmetric or ambiguous views do not average into a wrong
pose); one head is the plain encoder of cryoAI, cryoFIRE and HetACUMN.

The trunk: the image Fourier-cropped to ``input_box`` pixels (the same physical box,
coarser pixels, a low-pass), masked by a disc, then strided 3x3 convolutions with
LeakyReLU halving the size down to 4x4, and a linear layer. Images enter as they come
from :class:`~cryohet.data.dataset.ParticleDataset` (normalised, protein bright, real
space). Shifts are bounded to ``+- max_shift_A`` by a tanh.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..geometry.rotations import sixd_to_matrix
from .encoders import fourier_crop

__all__ = ["PoseConformationEncoder", "EncodedImages"]


@dataclass
class EncodedImages:
    """What :class:`PoseConformationEncoder` says about a batch of ``B`` images.

    Attributes:
        rotations: ``(B, H, 3, 3)`` RELION ``A`` of each of the ``H`` pose heads.
        shifts_A: ``(B, H, 2)`` RELION origins in Å.
        z_mean, z_logvar: ``(B, zdim)`` the Gaussian over the latent (empty ``(B, 0)``
            when the encoder has no conformation head).
    """

    rotations: torch.Tensor
    shifts_A: torch.Tensor
    z_mean: torch.Tensor
    z_logvar: torch.Tensor

    @property
    def heads(self) -> int:
        return int(self.rotations.shape[1])

    def pick(self, head: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotation ``(B, 3, 3)`` and shift ``(B, 2)`` of one head per image (``head (B,)``)."""
        b = torch.arange(len(head), device=head.device)
        return self.rotations[b, head], self.shifts_A[b, head]


class PoseConformationEncoder(nn.Module):
    """See the module docstring. ``zdim`` 0 gives a pose-only encoder."""

    def __init__(
        self,
        box: int,
        apix: float,
        zdim: int,
        heads: int = 1,
        input_box: int = 64,
        channels: tuple[int, ...] = (32, 64, 128, 256),
        hidden: int = 256,
        max_shift_A: float | None = None,
    ) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"an encoder needs at least one pose head, got {heads}")
        self.box, self.apix, self.zdim, self.n_heads = int(box), float(apix), int(zdim), int(heads)
        self.input_box = min(int(input_box), self.box) // 2 * 2
        self.max_shift_A = float(max_shift_A) if max_shift_A is not None else 0.15 * self.box * self.apix
        j = torch.arange(self.input_box, dtype=torch.float32) - self.input_box // 2
        self.register_buffer("mask", ((j[:, None] ** 2 + j[None, :] ** 2) <= (self.input_box / 2) ** 2).float())
        layers: list[nn.Module] = []
        size, c_in = self.input_box, 1
        for c in channels:
            if size <= 4:
                break
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
            c_in, size = c, (size + 1) // 2
        self.trunk = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * size * size, hidden), nn.LeakyReLU(0.1))
        self.pose = nn.Linear(hidden, self.n_heads * 8)  # 6D rotation + 2 shift per head
        self.conformation = nn.Linear(hidden, 2 * self.zdim) if self.zdim else None
        with torch.no_grad():  # heads start at different rotations, shifts at 0
            self.pose.weight.mul_(0.1)
            bias = torch.zeros(self.n_heads, 8)
            gen = torch.Generator().manual_seed(0)
            bias[:, :6] = torch.randn(self.n_heads, 6, generator=gen)
            self.pose.bias.copy_(bias.reshape(-1))

    def forward(self, images: torch.Tensor) -> EncodedImages:
        x = fourier_crop(images.to(self.mask.dtype), self.input_box) * self.mask
        h = self.trunk(x[:, None])
        p = self.pose(h).reshape(len(h), self.n_heads, 8)
        rot = sixd_to_matrix(p[..., :6])
        shifts = self.max_shift_A * torch.tanh(p[..., 6:])
        if self.conformation is None:
            empty = h.new_zeros(len(h), 0)
            return EncodedImages(rot, shifts, empty, empty)
        zm, zl = self.conformation(h).chunk(2, dim=-1)
        return EncodedImages(rot, shifts, zm, zl.clamp(-12.0, 6.0))
