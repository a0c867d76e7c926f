"""Per-epoch snapshots (cryoDRGN's z.N.pkl / weights.N.pkl habit): ``--epoch`` for
``analyze``, ``volumes``, ``select`` and ``evaluate``, a convergence view, and ``--load``
to start from another run's weights."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch
from drgnai_helpers import small_config

from cryohet.analysis.convergence import neighbours_kept, procrustes_change
from cryohet.cli.app import main
from cryohet.errors import RunDirError
from cryohet.methods.base import load_run, load_run_latents
from cryohet.methods.drgnai import train_drgnai
from cryohet.methods.drgnai.trainer import DrgnaiTrainer
from cryohet.training.checkpoint import load_checkpoint
from cryohet.training.snapshots import snapshot_epochs

pytestmark = pytest.mark.slow

EPOCHS = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """DRGN-AI with the given poses, zdim 2, three epochs, a snapshot after each."""
    root = tmp_path_factory.mktemp("snap")
    cfg = small_config(root, zdim=2, poses_mode="fixed", epochs_sgd=EPOCHS, snapshot_every=1)
    return train_drgnai(cfg)


def test_every_epoch_is_kept_and_the_last_is_the_run(run):
    assert snapshot_epochs(run) == [1, 2, 3]
    for e in (1, 2, 3):
        assert {p.name for p in (run / "epochs" / f"epoch_{e:04d}").iterdir()} == {
            "model.pt",
            "latents.npy",
            "poses.npz",
        }
    final, last = load_run(run), load_run(run, epoch=EPOCHS)
    np.testing.assert_array_equal(final.latents, last.latents)
    z = final.latents.mean(axis=0)
    np.testing.assert_allclose(final.volume(z), last.volume(z), rtol=1e-6, atol=1e-6)
    first = load_run(run, epoch=1)
    assert not np.allclose(first.latents, final.latents)  # the latents trained on
    second = np.load(run / "epochs" / "epoch_0002" / "latents.npy")
    np.testing.assert_array_equal(load_run_latents(run, epoch=2), second)
    with pytest.raises(RunDirError, match=r"no snapshot of epoch 7 \(snapshots: 1, 2, 3\)"):
        load_run(run, epoch=7)


def test_commands_take_epoch_and_analyze_shows_convergence(run, tmp_path, capsys):
    assert main(["volumes", str(run), "--epoch", "1", "-o", str(tmp_path / "v1")]) == 0
    early = load_run(run, epoch=1)
    np.testing.assert_allclose(
        mrcfile.read(tmp_path / "v1" / "vol_000.mrc"), early.volume(early.latents.mean(axis=0)), rtol=1e-5, atol=1e-5
    )
    assert main(["volumes", str(run), "--epoch", "9", "-o", str(tmp_path / "v9")]) == 1
    assert "no snapshot of epoch 9" in capsys.readouterr().err
    assert main(["select", str(run), "--epoch", "2", "--latent-box", "z0:0:", "-o", str(tmp_path / "s.pkl")]) == 0
    z2 = np.load(run / "epochs" / "epoch_0002" / "latents.npy")
    assert f"wrote {int((z2[:, 0] >= 0).sum())} of {len(z2)}" in capsys.readouterr().out
    data = Path(small_config(tmp_path).data.path).parent
    assert main(["evaluate", str(run), "--gt", str(data), "--epoch", "1"]) == 0
    metrics = json.loads((run / "eval.1" / "metrics.json").read_text())
    assert metrics["epoch"] == 1 and metrics["n_particles"] == len(early.latents)
    assert main(["evaluate", str(run), "--gt", str(data), "--epoch", "9", "-o", str(tmp_path / "e9")]) == 1
    assert "no snapshot of epoch 9" in capsys.readouterr().err
    args = ["--k", "2", "--pcs", "1", "--pc-steps", "2", "--no-umap", "--no-report"]
    assert main(["analyze", str(run), "--epoch", "2", *args]) == 0
    assert (run / "analyze.2" / "kmeans2" / "labels.npy").exists()
    assert main(["analyze", str(run), *args]) == 0
    table = np.genfromtxt(run / "analyze" / "convergence.csv", delimiter=",", names=True)
    assert list(table["epoch"]) == [1.0, 2.0, 3.0]
    assert table["neighbours_kept"][-1] == pytest.approx(1.0) and table["map_auc"][-1] == pytest.approx(1.0)
    assert (run / "analyze" / "plots" / "convergence.png").exists()


def test_load_starts_from_another_runs_weights(run, tmp_path, capsys):
    cfg = small_config(tmp_path, zdim=2, poses_mode="fixed", epochs_sgd=1, load=str(run))
    trainer = DrgnaiTrainer(cfg)
    saved = load_checkpoint(run / "model.pt")["field"]
    for k, v in trainer.field.state_dict().items():
        torch.testing.assert_close(v.cpu(), saved[k])
    wrong = small_config(tmp_path, zdim=3, poses_mode="fixed", epochs_sgd=1, load=str(run / "model.pt"))
    with pytest.raises(RunDirError, match="do not fit this run's network"):
        DrgnaiTrainer(wrong)
    star = str(Path(small_config(tmp_path).data.path))
    assert main(["train", "spire", star, "-o", str(tmp_path / "x"), "--load", str(run)]) != 0  # not a spire option


def test_convergence_measures_ignore_a_turned_latent_space():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    turned = 2.5 * z @ q
    assert neighbours_kept(z, turned) == pytest.approx(1.0)
    assert procrustes_change(z, turned) < 1e-9
    assert procrustes_change(z, turned + rng.normal(0, 0.5, size=z.shape)) > 0.05
    assert neighbours_kept(z, rng.normal(size=(300, 3))) < 0.2
