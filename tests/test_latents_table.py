"""Per-image latent tables: row-wise Adam touches only the batch's rows."""

from __future__ import annotations

import torch

from cryohet.latents.table import LatentTable


def test_latent_table_updates_only_batch_rows():
    table = LatentTable(10, 3, seed=0)
    before = table.z.clone()
    idx = torch.tensor([2, 5])
    table.step(idx, torch.ones(2, 3), lr=0.1)
    changed = (table.z != before).any(dim=1)
    assert changed.tolist() == [i in (2, 5) for i in range(10)]
    # first Adam step moves by lr against the gradient sign
    assert torch.allclose(table.z[idx], before[idx] - 0.1, atol=1e-6)


def test_a_row_trajectory_does_not_depend_on_the_other_rows_in_its_batch():
    a, b = LatentTable(6, 2, seed=1), LatentTable(6, 2, seed=1)
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(6, 2, generator=g) for _ in range(4)]
    for s in range(4):
        a.step(torch.tensor([0, 1, 2]), grads[s][:3], lr=0.05)  # row 0 with rows 1, 2
        b.step(torch.tensor([0]), grads[s][:1], lr=0.05)  # row 0 alone
        b.step(torch.tensor([3, 4]), grads[s][3:5], lr=0.05)  # other rows, other batch
    assert torch.equal(a.z[0], b.z[0])


def test_assign_restarts_the_moments_of_the_assigned_rows():
    t = LatentTable(4, 2, seed=0)
    t.step(torch.arange(4), torch.ones(4, 2), lr=0.1)
    t.assign(torch.tensor([1]), torch.tensor([[5.0, -5.0]]))
    assert torch.equal(t.z[1], torch.tensor([5.0, -5.0]))
    assert int(t.steps[1]) == 0 and int(t.steps[0]) == 1 and float(t.m[1].abs().sum()) == 0.0
