"""An amortised encoder that predicts both the pose and the conformation of a particle image.

``image (B, D, D) -> EncodedImages``: ``heads`` candidate poses per image (rotation as
RELION ``A`` through the continuous 6D parametrisation, and the RELION origin in Å) and a
Gaussian over the latent ``z`` (mean and log-variance). Several pose heads let an image
keep several hypotheses (cryoSPIN's multi-head encoder: the head whose pose explains the
image best is trained on it, so symmetric or ambiguous views do not average into a wrong
pose); one head is the plain encoder of cryoAI, cryoFIRE and HetACUMN.

Rotations come out one of two ways:

* **regressed** (``rotation_grid_level=None``): each head's continuous 6D parametrisation;
* **classified** (``rotation_grid_level=L``): logits over the ``72 * 8**L`` rotations of the
  HEALPix grid of level ``L`` (:mod:`cryohet.geometry.so3_grid`), trained by
  cross-entropy against soft targets (:meth:`EncodedImages.rotation_nll`); the heads are
  the highest peaks of the logits (at least two grid spacings apart), each refined below
  the grid spacing by the chordal mean of the grid rotations within 1.5 spacings of it,
  weighted by their softmax (differentiable in the logits). A distribution over SO(3)
  keeps several modes where regression averages them: on simulated igg-1d (SNR 0.1,
  box 32, task 2 alone from the true maps, 30 000 steps) the median error on real images
  was 15.7 deg classified at level 1 (22.0 with the best grid rotation unrefined; 15.6 at
  level 2) against 79.5 deg regressed (``benchmarks/hetacumn_task2_curve.py``).

The trunk: the image Fourier-cropped to ``input_box`` pixels (the same physical box,
coarser pixels, a low-pass), masked by a disc, then strided 3x3 convolutions with
LeakyReLU halving the size down to 4x4, and a linear layer. Images enter as they come
from :class:`~cryohet.data.dataset.ParticleDataset` (normalised, protein bright, real
space). Shifts are bounded to ``+- max_shift_A`` by a tanh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..geometry import so3_grid
from ..geometry.rotations import sixd_to_matrix
from .encoders import fourier_crop

__all__ = ["PoseConformationEncoder", "EncodedImages", "grid_peaks"]


@dataclass
class EncodedImages:
    """What :class:`PoseConformationEncoder` says about a batch of ``B`` images.

    Attributes:
        rotations: ``(B, H, 3, 3)`` RELION ``A`` of each of the ``H`` pose heads.
        shifts_A: ``(B, H, 2)`` RELION origins in Å.
        z_mean, z_logvar: ``(B, zdim)`` the Gaussian over the latent (empty ``(B, 0)``
            when the encoder has no conformation head).
        rotation_logits: ``(B, N)`` logits over ``rotation_grid`` ``(N, 3, 3)`` when the
            rotation is classified (else None); ``grid_sigma_rad`` is the width of the
            soft targets of :meth:`rotation_nll`.
    """

    rotations: torch.Tensor
    shifts_A: torch.Tensor
    z_mean: torch.Tensor
    z_logvar: torch.Tensor
    rotation_logits: torch.Tensor | None = None
    rotation_grid: torch.Tensor | None = None
    grid_sigma_rad: float = 0.0

    def rotation_nll(self, rotations: torch.Tensor) -> torch.Tensor:
        """Per image ``(B,)``: cross-entropy of the classified rotation against the soft
        target ``p_i ~ exp(-d_i^2 / 2 sigma^2)``, ``d_i`` the angle from the true rotation
        ``rotations (B, 3, 3)`` (RELION ``A``) to grid rotation ``i``."""
        if self.rotation_logits is None or self.rotation_grid is None:
            raise ValueError("rotation_nll needs an encoder that classifies rotations (rotation_grid_level)")
        with torch.no_grad():
            cos = grid_cosines(rotations.to(self.rotation_grid), self.rotation_grid)
            target = torch.softmax(-(torch.arccos(cos.clamp(-1.0, 1.0)) ** 2) / (2 * self.grid_sigma_rad**2), dim=1)
        return -(target * torch.log_softmax(self.rotation_logits, dim=1)).sum(dim=1)

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
        rotation_grid_level: int | None = None,
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
        self.conformation = nn.Linear(hidden, 2 * self.zdim) if self.zdim else None
        self.rotation_grid_level = rotation_grid_level
        if rotation_grid_level is None:
            self.pose = nn.Linear(hidden, self.n_heads * 8)  # 6D rotation + 2 shift per head
            self.rotation_logits = None
            with torch.no_grad():  # heads start at different rotations, shifts at 0
                self.pose.weight.mul_(0.1)
                bias = torch.zeros(self.n_heads, 8)
                gen = torch.Generator().manual_seed(0)
                bias[:, :6] = torch.randn(self.n_heads, 6, generator=gen)
                self.pose.bias.copy_(bias.reshape(-1))
        else:
            grid = so3_grid.base_grid(int(rotation_grid_level))
            self.register_buffer("rotation_grid", torch.as_tensor(grid, dtype=torch.float32))
            self.spacing_rad = math.radians(so3_grid.grid_spacing_deg(int(rotation_grid_level)))
            self.pose = nn.Linear(hidden, 2)  # one shift, shared by the heads
            self.rotation_logits = nn.Linear(hidden, len(grid))
            with torch.no_grad():
                self.pose.weight.mul_(0.1)
                self.pose.bias.zero_()

    def forward(self, images: torch.Tensor) -> EncodedImages:
        x = fourier_crop(images.to(self.mask.dtype), self.input_box) * self.mask
        h = self.trunk(x[:, None])
        logits = None
        if self.rotation_logits is None:
            p = self.pose(h).reshape(len(h), self.n_heads, 8)
            rot = sixd_to_matrix(p[..., :6])
            shifts = self.max_shift_A * torch.tanh(p[..., 6:])
        else:
            logits = self.rotation_logits(h)
            rot = grid_peaks(logits, self.rotation_grid, self.spacing_rad, self.n_heads)
            shifts = (self.max_shift_A * torch.tanh(self.pose(h)))[:, None].expand(-1, self.n_heads, -1)
        if self.conformation is None:
            zm = zl = h.new_zeros(len(h), 0)
        else:
            zm, zl = self.conformation(h).chunk(2, dim=-1)
            zl = zl.clamp(-12.0, 6.0)
        if logits is None:
            return EncodedImages(rot, shifts, zm, zl)
        return EncodedImages(rot, shifts, zm, zl, logits, self.rotation_grid, 0.5 * self.spacing_rad)


def grid_peaks(logits: torch.Tensor, grid: torch.Tensor, spacing_rad: float, heads: int = 1) -> torch.Tensor:
    """The ``heads`` highest peaks of ``logits (B, N)`` over the rotations ``grid (N, 3, 3)``
    (RELION ``A``; ``spacing_rad`` its spacing): ``(B, heads, 3, 3)``.

    Each peak is the highest grid rotation at least two spacings from the higher peaks,
    refined below the spacing by the chordal mean of the grid rotations within 1.5
    spacings of it (and not near a higher peak), weighted by their softmax, orthonormalised by Gram-Schmidt of its
    first two columns; differentiable in ``logits``.
    """
    taken = torch.zeros_like(logits, dtype=torch.bool)
    near_cos, apart_cos = math.cos(1.5 * spacing_rad), math.cos(2.0 * spacing_rad)
    out = []
    for _ in range(heads):
        peak = logits.detach().masked_fill(taken, float("-inf")).argmax(dim=1)  # (B,)
        cos = grid_cosines(grid[peak], grid)  # (B, N): cosine of the angle from the peak
        w = torch.softmax(logits.masked_fill((cos < near_cos) | taken, float("-inf")), dim=1)
        mean = (w @ grid.reshape(len(grid), 9)).reshape(-1, 3, 3)
        out.append(sixd_to_matrix(mean[..., :, :2].transpose(-1, -2).reshape(-1, 6)))
        taken = taken | (cos > apart_cos)
    return torch.stack(out, dim=1)


def grid_cosines(rotations: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``(B, N)``: the cosine of the angle between each of ``rotations (B, 3, 3)`` and each
    of ``grid (N, 3, 3)``, ``(tr(R^T G) - 1) / 2``."""
    return (rotations.reshape(-1, 9) @ grid.reshape(len(grid), 9).T - 1) / 2
