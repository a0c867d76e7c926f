"""Circular, spherical and threshold masks with cosine soft edges."""

from __future__ import annotations

import math

import pytest
import torch

from cryohet.imaging.masks import circular_mask, cosine_edge, spherical_mask, threshold_mask


def test_cosine_edge_profile():
    r = torch.tensor([0.0, 5.0, 6.0, 7.0, 9.0, 20.0])
    m = cosine_edge(r, 5.0, 4.0)
    expected = [1.0, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.0, 0.0]
    assert torch.allclose(m, torch.tensor(expected), atol=1e-6)
    assert torch.equal(cosine_edge(r, 6.0, 0.0), torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]))


def test_circular_and_spherical_masks():
    m2 = circular_mask(32, radius_px=10, soft_edge_px=4)
    assert m2.shape == (32, 32)
    assert m2[16, 16] == 1 and m2[16, 26] == 1 and m2[16, 28] == pytest.approx(0.5) and m2[0, 0] == 0
    m3 = spherical_mask(33, radius_px=8, soft_edge_px=2)
    assert m3.shape == (33, 33, 33)
    assert m3[16, 16, 16] == 1 and m3[16, 16, 25] == pytest.approx(0.5) and m3[16, 16, 27] == 0
    # Rotational symmetry about the centre index.
    assert torch.equal(m3, m3.transpose(0, 2)) and torch.equal(
        m3, torch.flip(m3, dims=(2,))
    )  # odd box: centre 16 of 0..32
    assert circular_mask(16).sum() == pytest.approx(math.pi * 64, rel=0.1)


def test_threshold_mask_dilation_and_edge():
    box = 40
    c = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    r = torch.sqrt(x * x + y * y + z * z)
    vol = (r <= 6).float() * 3.0
    m = threshold_mask(vol, threshold=1.0, dilate_px=3, soft_edge_px=4)
    # 1 within 3 px of the (digital) ball (r <= 9), 0.5 at r = 6 + 3 + 2, 0 beyond r = 13.
    assert torch.all(m[r <= 8.5] == 1)
    assert float(m[20, 20, 31]) == pytest.approx(0.5, abs=0.05)
    assert torch.all(m[r >= 13.5] == 0)
    hard = threshold_mask(vol, threshold=1.0)
    assert torch.equal(hard, (vol > 1.0).float())
    with pytest.raises(ValueError):
        threshold_mask(vol, threshold=10.0)
