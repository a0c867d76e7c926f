"""The moving average of a network's weights (training.weight_average): its recurrence, its
noise reduction, swapping the average in and out, and its state across a resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cryohet.training.weight_average import WeightAverage


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))


def _set(net: _Net, values, count: int = 0) -> None:
    with torch.no_grad():
        net.w.copy_(torch.as_tensor(values, dtype=torch.float32))
        net.count.fill_(count)


def test_recurrence_starts_at_the_first_weights_and_forgets_by_the_memory():
    net, avg = _Net(), WeightAverage(steps=4.0)
    d = math.exp(-1 / 4)
    expected = None
    for t in range(1, 8):
        _set(net, [t, 2 * t, -t], count=t)
        avg.update(net)
        w = np.array([t, 2 * t, -t], float)
        expected = w if expected is None else d * expected + (1 - d) * w
    state = avg.averaged_state(net)
    assert np.allclose(state["w"].numpy(), expected, atol=1e-5)
    assert int(state["count"]) == 7  # integers are copied, not averaged
    assert avg.updates == 7


def test_average_of_noisy_weights_has_the_variance_of_theory():
    """Weights = truth + white noise: the average's variance is (1 - d) / (1 + d) of the noise's."""
    rng = np.random.default_rng(0)
    net, avg = _Net(), WeightAverage(steps=20.0)
    net.w = nn.Parameter(torch.zeros(2000))
    for _ in range(400):  # 20 memories: the start is forgotten
        with torch.no_grad():
            net.w.copy_(torch.as_tensor(1.0 + rng.standard_normal(2000), dtype=torch.float32))
        avg.update(net)
    d = math.exp(-1 / 20)
    err = avg.averaged_state(net)["w"].numpy() - 1.0
    assert np.var(err) == pytest.approx((1 - d) / (1 + d), rel=0.1)
    assert np.var(net.w.detach().numpy() - 1.0) > 15 * np.var(err)  # the last step's is ~40x larger


def test_applied_swaps_the_average_in_and_the_weights_back():
    net, avg = _Net(), WeightAverage(steps=1.0)
    with avg.applied(net) as inside:  # no update yet: the net as it is
        assert torch.equal(inside.w, torch.zeros(3))
    _set(net, [1.0, 1.0, 1.0])
    avg.update(net)
    _set(net, [3.0, 3.0, 3.0])
    avg.update(net)
    d = math.exp(-1)
    with avg.applied(net):
        assert torch.allclose(net.w, torch.full((3,), d * 1.0 + (1 - d) * 3.0))
    assert torch.equal(net.w, torch.full((3,), 3.0))


def test_state_round_trip_continues_as_if_uninterrupted():
    net, a, b = _Net(), WeightAverage(steps=3.0), WeightAverage(steps=3.0)
    for t in range(5):
        _set(net, [t, t * t, 1.0])
        a.update(net)
    b.load_state_dict(a.state_dict())
    for t in range(5, 9):
        _set(net, [t, t * t, 1.0])
        a.update(net)
        b.update(net)
    assert torch.equal(a.averaged_state(net)["w"], b.averaged_state(net)["w"]) and a.updates == b.updates == 9


def test_memory_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        WeightAverage(steps=0.0)
