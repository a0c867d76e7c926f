"""CryoBench per-conformation and per-image FSC protocols with stand-in decoders."""

from __future__ import annotations

import numpy as np
import pytest

from cryohet.metrics.per_conformation import nearest_to_mean, per_conformation_fsc, per_image_fsc

D = 16
AUC_MAX = (D / 2 - 1) / D


@pytest.fixture
def dataset(rng):
    n_states, per = 4, 50
    gt = [rng.standard_normal((D, D, D)).astype(np.float32) for _ in range(n_states)]
    labels = np.repeat(np.arange(n_states), per)
    latents = labels[:, None] + rng.normal(scale=0.1, size=(len(labels), 2))
    return latents, labels, gt


def test_nearest_to_mean(dataset):
    z, y, _ = dataset
    chosen = nearest_to_mean(z, y)
    for s, i in chosen.items():
        idx = np.flatnonzero(y == s)
        d = np.linalg.norm(z[idx] - z[idx].mean(axis=0), axis=1)
        assert i == idx[np.argmin(d)]


def test_perfect_decoder_scores_max(dataset):
    z, y, gt = dataset
    decode = lambda zz: gt[int(np.round(zz[0]))]  # noqa: E731
    res = per_conformation_fsc(z, y, decode, gt)
    np.testing.assert_array_equal(res.states, [0, 1, 2, 3])
    np.testing.assert_allclose(res.auc, AUC_MAX, atol=1e-6)
    assert res.summary()["auc_median"] == pytest.approx(AUC_MAX)
    assert res.std < 1e-9
    # ground truth as a mapping or a callable gives the same
    assert per_conformation_fsc(z, y, decode, dict(enumerate(gt))).mean == pytest.approx(res.mean)
    assert per_conformation_fsc(z, y, decode, lambda s: gt[s]).mean == pytest.approx(res.mean)


def test_wrong_decoder_and_mixed_states(dataset, rng):
    z, y, gt = dataset
    noise = {s: rng.standard_normal((D, D, D)) for s in range(4)}
    decode = lambda zz: gt[int(np.round(zz[0]))] if zz[0] < 1.5 else noise[int(np.round(zz[0]))]  # noqa: E731
    res = per_conformation_fsc(z, y, decode, gt)
    assert np.all(np.abs(res.auc[:2] - AUC_MAX) < 1e-6)
    assert np.all(res.auc[2:] < 0.15)
    assert res.mean == pytest.approx(np.mean(res.auc))
    assert res.median == pytest.approx(np.median(res.auc))
    # an alignment hook runs before the FSC
    fixed = per_conformation_fsc(z, y, decode, gt, align=lambda v, g: g)
    np.testing.assert_allclose(fixed.auc, AUC_MAX, atol=1e-6)


def test_per_image_variant(dataset):
    z, y, gt = dataset
    seen = []

    def decode(zz):
        seen.append(zz.copy())
        return gt[int(np.round(zz[0]))]

    res = per_image_fsc(z, y, decode, gt, n=20)
    np.testing.assert_array_equal(res.image_index, np.arange(0, 200, 10))
    assert len(seen) == 20 and np.allclose(seen[3], z[30])  # decoded at the image's own latent
    np.testing.assert_allclose(res.auc, AUC_MAX, atol=1e-6)
    assert set(res.class_auc) == {0, 1, 2, 3}
    assert res.summary()["auc_class_mean"] == pytest.approx(AUC_MAX)
    # |FSC|: an inverted decoder scores the same
    inv = per_image_fsc(z, y, lambda zz: -gt[int(np.round(zz[0]))], gt, n=8)
    np.testing.assert_allclose(inv.auc, AUC_MAX, atol=1e-6)
    with pytest.raises(ValueError):
        per_image_fsc(z, y, decode, gt, n=0)
