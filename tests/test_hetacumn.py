"""HetACUMN on the pinned two-state set (D=24, SNR 0.3, given poses): the encoder separates
the states, ``cryohet infer`` reproduces the run's latents and makes a run directory of the
particles, bad input is one line, and a killed run resumes to the same result."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import starfile
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from cryohet.cli.app import main
from cryohet.io.source import ParticleSource
from cryohet.methods.hetacumn import HetacumnConfig, train_hetacumn

pytestmark = pytest.mark.slow

PINNED = Path(__file__).resolve().parent / "data" / "pinned" / "data"
STAR = PINNED / "particles.star"


def _config(out: Path, **kw) -> HetacumnConfig:
    base = dict(
        data=ParticleSource(path=STAR),
        out=str(out),
        poses_mode="fixed",
        zdim=1,
        epochs=100,
        field={"hidden": 32, "blocks": 1, "features": 32},
        encoder={"input_box": 24, "channels": (16, 32, 64), "hidden": 64},
        optim={"batch_size": 16},
        snapshot_every=0,
    )
    base.update(kw)
    return HetacumnConfig(**base)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_hetacumn(_config(tmp_path_factory.mktemp("het") / "run"))


def test_the_encoder_separates_two_states(run):
    z = np.load(run / "latents.npy")
    labels = np.load(PINNED / "gt" / "labels.npy")
    assert z.shape == (160, 1)
    ari = adjusted_rand_score(labels, KMeans(2, n_init=5, random_state=0).fit_predict(z))
    assert ari >= 0.9, ari
    for name in ("config.yaml", "model.pt", "poses.npz", "map.mrc", "extras/encoder.npz", "COMPLETED"):
        assert (run / name).exists(), name


def test_infer_reproduces_the_latents_and_makes_a_run_directory(run, tmp_path, capsys):
    out = tmp_path / "inferred"
    assert main(["infer", str(run), str(STAR), "--out", str(out)]) == 0
    assert "images/s" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(out / "latents.npy"), np.load(run / "latents.npy"), atol=1e-5)
    parts = starfile.read(out / "particles.star", always_dict=True)["particles"]
    assert len(parts) == 160 and "rlnAngleRot" in parts.columns
    # the folder is a run of these particles for the other commands
    assert main(["volumes", str(out), "-o", str(tmp_path / "vols")]) == 0
    assert main(["select", str(out), "--latent-box", "z0:0:", "-o", str(tmp_path / "s.pkl")]) == 0
    assert main(["infer", str(run), str(STAR), "--out", str(out)]) == 1  # not mixed with the old one


def _one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1, err
    return err[0]


def test_infer_refuses_other_methods_and_other_pixel_sizes(run, tmp_path, capsys):
    homo = tmp_path / "homo"
    assert main(["train", "homogeneous", str(STAR), "-o", str(homo)]) == 0
    capsys.readouterr()
    assert main(["infer", str(homo), str(STAR), "-o", str(tmp_path / "x")]) == 1
    assert "no encoder" in _one_error(capsys)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(PINNED / "particles.mrcs", other / "particles.mrcs")
    tables = starfile.read(STAR, always_dict=True)
    tables["optics"]["rlnImagePixelSize"] = 7.0
    starfile.write(tables, other / "particles.star")
    assert main(["infer", str(run), str(other / "particles.star"), "-o", str(tmp_path / "y")]) == 1
    assert "expects images that give 14 Å/px" in _one_error(capsys)


def test_a_killed_run_resumes_to_the_same_result(tmp_path):
    whole = train_hetacumn(_config(tmp_path / "whole", epochs=4, snapshot_every=1))
    part = train_hetacumn(_config(tmp_path / "part", epochs=2, snapshot_every=1))
    (part / "COMPLETED").unlink()  # as if killed after epoch 2
    resumed = train_hetacumn(_config(tmp_path / "part", epochs=4, snapshot_every=1), resume=True)
    np.testing.assert_allclose(np.load(resumed / "latents.npy"), np.load(whole / "latents.npy"), atol=1e-5)
    assert sorted(p.name for p in (resumed / "epochs").iterdir()) == [f"epoch_{e:04d}" for e in (1, 2, 3, 4)]
