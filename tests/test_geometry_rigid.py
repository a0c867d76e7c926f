"""Rigid fits and motions: Kabsch recovers a known transform; motion about a pivot keeps shapes."""

from __future__ import annotations

import torch

from cryohet.geometry.rigid import kabsch, move_about_pivot
from cryohet.geometry.rotations import random_rotations


def test_kabsch_recovers_rotation_and_translation():
    g = torch.Generator().manual_seed(3)
    src = torch.randn(4, 30, 3, generator=g, dtype=torch.float64)
    R = torch.as_tensor(random_rotations(4, 1))
    t = torch.randn(4, 3, generator=g, dtype=torch.float64)
    dst = torch.einsum("mij,mpj->mpi", R, src) + t[:, None]
    r_fit, t_fit = kabsch(src, dst, torch.ones(4, 30, dtype=torch.float64))
    assert torch.allclose(r_fit, R, atol=1e-8) and torch.allclose(t_fit, t, atol=1e-8)


def test_kabsch_returns_a_proper_rotation_for_a_mirrored_set():
    g = torch.Generator().manual_seed(4)
    src = torch.randn(1, 20, 3, generator=g, dtype=torch.float64)
    dst = src * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)  # a reflection is not a rotation
    r_fit, _ = kabsch(src, dst, torch.ones(1, 20, dtype=torch.float64))
    assert torch.allclose(torch.det(r_fit), torch.ones(1, dtype=torch.float64))


def test_move_about_pivot_keeps_distances_and_the_pivot():
    g = torch.Generator().manual_seed(5)
    pivot = torch.randn(3, generator=g)
    offsets = torch.randn(10, 3, generator=g)
    R = torch.as_tensor(random_rotations(1, 2), dtype=torch.float32)[0]
    t = torch.randn(3, generator=g)
    moved = move_about_pivot(offsets, R, t, pivot)
    assert torch.allclose(torch.cdist(moved, moved), torch.cdist(offsets, offsets), atol=1e-5)
    assert torch.allclose(move_about_pivot(torch.zeros(3), R, t, pivot), pivot + t)
    # the same as rotating the absolute points about the pivot
    assert torch.allclose(moved, pivot + t + (R @ ((pivot + offsets) - pivot).T).T, atol=1e-5)
