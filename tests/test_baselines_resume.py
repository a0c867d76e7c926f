"""Every baseline trains through the run session: a killed run resumes from its last
checkpoint and ends where an uninterrupted one does."""

from __future__ import annotations

import numpy as np
import pytest

from cryohet.errors import RunDirError
from cryohet.io.source import ParticleSource
from cryohet.methods.baselines import (
    Classify3DConfig,
    OracleConfig,
    PCAConfig,
    train_classify3d,
    train_oracle,
    train_pca,
)
from cryohet.methods.baselines.classify3d import Classify3DTrainer
from cryohet.methods.baselines.oracle import OracleTrainer
from cryohet.methods.baselines.pca import PCATrainer
from cryohet.training.checkpoint import latest_checkpoint

DATA = __import__("pathlib").Path(__file__).resolve().parent / "data" / "pinned" / "data"


class _Killed(Exception):
    pass


def _kill_at(monkeypatch, cls, epoch: int) -> None:
    original = cls.train_epoch

    def train_epoch(self, e):
        if e == epoch:
            raise _Killed
        return original(self, e)

    monkeypatch.setattr(cls, "train_epoch", train_epoch)


CASES = {
    "pca": (PCATrainer, train_pca, lambda src, out: PCAConfig(data=src, out=out, components=2, iterations=3)),
    "classify3d": (
        Classify3DTrainer,
        train_classify3d,
        lambda src, out: Classify3DConfig(data=src, out=out, classes=2, iterations=3, init="random", stop_changed=0.0),
    ),
    "oracle": (
        OracleTrainer,
        train_oracle,
        lambda src, out: OracleConfig(data=src, out=out, labels=DATA / "gt" / "labels.npy"),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_killed_baseline_resumes_and_matches(tmp_path, monkeypatch, name):
    cls, train, make = CASES[name]
    src = ParticleSource(path=DATA / "particles.star")
    if name == "classify3d":  # this easy set converges at once; run every iteration to test resuming
        monkeypatch.setattr(cls, "done", property(lambda self: False, lambda self, value: None))
    full = train(make(src, str(tmp_path / "full")))
    with monkeypatch.context() as m:
        _kill_at(m, cls, 1)
        with pytest.raises(_Killed):
            train(make(src, str(tmp_path / "killed")))
    assert latest_checkpoint(tmp_path / "killed").name == "epoch_0001.pt"  # after epoch 1
    with pytest.raises(RunDirError):  # a non-empty run directory is not silently reused
        train(make(src, str(tmp_path / "killed")))
    resumed = train(make(src, str(tmp_path / "killed")), resume=True)
    np.testing.assert_allclose(np.load(resumed / "latents.npy"), np.load(full / "latents.npy"), rtol=0, atol=1e-6)
    epochs = [
        int(line.split('"epoch": ')[1].split(",")[0]) for line in (resumed / "train_log.jsonl").read_text().splitlines()
    ]
    assert epochs == sorted(set(epochs)) and epochs[0] == 1  # one row per epoch, no hole, no duplicate


def test_a_converged_em_is_not_trained_again_on_resume(tmp_path):
    src = ParticleSource(path=DATA / "particles.star")
    run = train_classify3d(Classify3DConfig(data=src, out=str(tmp_path / "c"), classes=2, iterations=5))
    before = np.load(run / "latents.npy")
    rows = (run / "train_log.jsonl").read_text().splitlines()
    assert len(rows) < 5  # converged early
    train_classify3d(Classify3DConfig(data=src, out=str(tmp_path / "c"), classes=2, iterations=5), resume=True)
    assert (run / "train_log.jsonl").read_text().splitlines() == rows
    np.testing.assert_array_equal(np.load(run / "latents.npy"), before)


def test_cli_resume_continues_a_baseline_run_with_its_own_config(tmp_path, monkeypatch):
    from cryohet.cli.app import main
    from cryohet.methods.baselines.pca import PCATrainer

    star = str(DATA / "particles.star")
    out = str(tmp_path / "pca")
    with monkeypatch.context() as m:
        _kill_at(m, PCATrainer, 2)
        with pytest.raises(_Killed):
            main(["train", "pca", star, "--out", out, "--k", "2", "--iterations", "3"])
    assert main(["train", "pca", star, "--out", out, "--k", "2", "--iterations", "3"]) != 0  # not silently reused
    assert main(["train", "pca", star, "--out", out, "--resume", "--k", "2", "--iterations", "3"]) == 0
    rows = (tmp_path / "pca" / "train_log.jsonl").read_text().splitlines()
    assert len(rows) == 3 and np.load(tmp_path / "pca" / "latents.npy").shape == (160, 2)
