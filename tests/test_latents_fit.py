"""Latents fitted against a fixed decoder (:func:`cryohet.latents.fit_latents`): the minimum
of a known objective, rows independent of each other, never worse than the start."""

from __future__ import annotations

import torch

from cryohet.latents import fit_latents


def _quadratic(targets: torch.Tensor):
    return lambda z: ((z - targets) ** 2).sum(dim=1)


def test_reaches_the_minimum_of_data_plus_prior():
    torch.manual_seed(0)
    targets = torch.randn(6, 3)
    prior = 0.5  # |z - t|^2 + prior |z|^2 / 2 is smallest at z = 2 t / (2 + prior)
    z, value = fit_latents(_quadratic(targets), torch.zeros(6, 3), steps=400, lr=0.05, prior_weight=prior)
    expected = 2 * targets / (2 + prior)
    torch.testing.assert_close(z, expected, atol=2e-3, rtol=0)
    floor = ((expected - targets) ** 2).sum(1) + 0.5 * prior * (expected**2).sum(1)
    torch.testing.assert_close(value, floor, atol=1e-4, rtol=0)


def test_rows_are_fitted_independently():
    torch.manual_seed(1)
    targets, z0 = torch.randn(5, 2), torch.randn(5, 2)
    together, _ = fit_latents(_quadratic(targets), z0, steps=15, lr=0.1)
    alone, _ = fit_latents(_quadratic(targets[2:3]), z0[2:3], steps=15, lr=0.1)
    torch.testing.assert_close(together[2:3], alone)


def test_no_row_ends_worse_than_it_started():
    targets = torch.tensor([[0.0, 0.0], [3.0, -1.0]])
    z0 = torch.tensor([[0.0, 0.0], [2.9, -1.0]])  # the first row starts at its minimum
    start = _quadratic(targets)(z0)
    z, value = fit_latents(_quadratic(targets), z0, steps=5, lr=10.0)  # a step far too large
    assert torch.all(value <= start)
    torch.testing.assert_close(z[0], z0[0])
    same, _ = fit_latents(_quadratic(targets), z0, steps=0)
    torch.testing.assert_close(same, z0)
    assert not z0.requires_grad  # the caller's latents are left alone
