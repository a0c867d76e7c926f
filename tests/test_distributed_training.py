"""Training on several processes (torch.distributed, gloo on CPU) gives one process's results.

* two ranks at batch b match one process at batch 2b: per-epoch losses within 1e-4
  (relative), and the latent tables are identical on both ranks;
* every image is trained once per epoch and written once, also for an odd number of
  particles that leaves one rank an empty share of the last step;
* a run killed in stage B on two ranks finishes in one process, and the reverse;
* the baselines' per-image passes split across ranks give one process's maps and latents;
* ``torchrun -m cryohet train ...`` runs the CLI on two ranks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from dist_workers import PINNED, run_ranks, spire_config, train_baseline_rank, train_spire_rank

pytestmark = pytest.mark.slow


def _log(run) -> list[dict]:
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def odd_set(tmp_path_factory):
    """601 particles: with 2 ranks at batch 100 the last step has one image (one rank gets none)."""
    from cryohet.simulate.config import SimulationConfig
    from cryohet.simulate.simulator import simulate_dataset

    out = tmp_path_factory.mktemp("odd") / "data"
    simulate_dataset(
        SimulationConfig(preset="assembly", out=out, n_states=2, n_images=601, box=24, apix=14.0, snr=0.3, seed=2)
    )
    return out


def test_two_ranks_match_one_process_at_twice_the_batch(tmp_path):
    from cryohet.methods.spire import train_spire

    one = train_spire(spire_config(PINNED, tmp_path / "one", batch=16))
    tables = tmp_path / "tables"
    tables.mkdir()
    assert not run_ranks(2, train_spire_rank, PINNED, tmp_path / "two", 8, tables)
    two = tmp_path / "two"
    a, b = _log(one), _log(two)
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == list(range(1, 6))
    for ra, rb in zip(a, b):
        assert ra["n_images"] == rb["n_images"] == 160
        assert abs(ra["data"] - rb["data"]) <= 1e-4 * abs(ra["data"]), (ra["epoch"], ra["data"], rb["data"])
    z0, z1 = np.load(tables / "rank0.npy"), np.load(tables / "rank1.npy")
    np.testing.assert_array_equal(z0, z1)
    np.testing.assert_array_equal(np.load(two / "latents.npy"), z0)
    config = (two / "config.yaml").read_text()
    assert "world_size: 2" in config


def test_odd_dataset_trains_and_writes_each_particle_once(odd_set, tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    assert not run_ranks(2, train_spire_rank, odd_set, tmp_path / "run", 100, tables)
    z = np.load(tmp_path / "run" / "latents.npy")
    assert z.shape == (601, 3) and np.isfinite(z).all()
    assert all(r["n_images"] == 601 for r in _log(tmp_path / "run"))
    motion = np.load(tmp_path / "run" / "extras" / "part_motion.npz")
    assert motion["occupancy"].shape[0] == 601 and np.isfinite(motion["occupancy"]).all()
    np.testing.assert_array_equal(np.load(tables / "rank0.npy"), np.load(tables / "rank1.npy"))


def test_two_rank_run_killed_in_stage_b_finishes_in_one_process(tmp_path):
    from cryohet.methods.spire import train_spire

    run = tmp_path / "run"
    tables = tmp_path / "tables"
    tables.mkdir()
    failures = run_ranks(2, train_spire_rank, PINNED, run, 8, tables, 3)  # dies before epoch 4 (stage B)
    assert failures  # the ranks were killed
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == "epoch_0003.pt"
    train_spire(spire_config(PINNED, run, batch=16), resume=True)
    assert [r["epoch"] for r in _log(run)] == list(range(1, 6))
    assert np.load(run / "latents.npy").shape == (160, 3)


def test_one_process_run_killed_in_stage_b_finishes_on_two_ranks(tmp_path, monkeypatch):
    from cryohet.methods.spire import train_spire
    from cryohet.methods.spire.trainer import SpireTrainer

    run = tmp_path / "run"
    original = SpireTrainer.train_epoch

    def train_epoch(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return original(self, epoch)

    with monkeypatch.context() as m:
        m.setattr(SpireTrainer, "train_epoch", train_epoch)
        with pytest.raises(KeyboardInterrupt):
            train_spire(spire_config(PINNED, run, batch=16))
    tables = tmp_path / "tables"
    tables.mkdir()
    assert not run_ranks(2, train_spire_rank, PINNED, run, 8, tables)
    assert [r["epoch"] for r in _log(run)] == list(range(1, 6))
    np.testing.assert_array_equal(np.load(tables / "rank0.npy"), np.load(tables / "rank1.npy"))
    assert np.load(run / "latents.npy").shape == (160, 3)


@pytest.mark.parametrize("name", ["homogeneous", "pca", "classify3d"])
def test_baselines_on_two_ranks_match_one_process(tmp_path, name):
    train_baseline_rank(0, name, PINNED, tmp_path / "one")
    assert not run_ranks(2, train_baseline_rank, name, PINNED, tmp_path / "two")
    from cryohet.methods.base import load_run

    one, two = load_run(tmp_path / "one"), load_run(tmp_path / "two")
    za, zb = one.latents, two.latents
    np.testing.assert_allclose(zb, za, rtol=0, atol=1e-4 * max(1.0, float(np.abs(za).max())))
    va, vb = one.volume(za[0]), two.volume(zb[0])
    assert float(np.abs(va - vb).max()) <= 1e-4 * float(np.abs(va).max())


def test_torchrun_runs_the_cli_on_two_ranks(tmp_path):
    torchrun = shutil.which("torchrun", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert torchrun, "torchrun comes with torch"
    out = tmp_path / "homog"
    cmd = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "cryohet", "train", "homogeneous"]
    cmd += [str(PINNED / "particles.star"), "--out", str(out)]
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=240, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "consensus.mrc").exists() and np.load(out / "latents.npy").shape == (160, 1)


def test_sphere_on_two_ranks_and_a_killed_run_finishing_in_one_process(tmp_path):
    """cryoSPHERE's gradients are averaged by hand (no DDP hooks): two ranks train, rank 0
    writes one latent per particle, and a two-rank run killed at epoch 2 finishes in one
    process from its checkpoint."""
    from dist_workers import train_sphere_rank
    from sphere_helpers import make_hinge

    from cryohet.io.source import ParticleSource
    from cryohet.methods.base import load_run
    from cryohet.methods.sphere import SphereConfig, train_sphere

    _, cif, data = make_hinge(tmp_path, n_images=160)
    assert not run_ranks(2, train_sphere_rank, data, cif, tmp_path / "two", 16)
    two = load_run(tmp_path / "two")
    assert two.latents.shape == (160, 2) and np.isfinite(two.latents).all()
    assert [r["n_images"] for r in _log(tmp_path / "two")] == [160, 160, 160]
    assert "world_size: 2" in (tmp_path / "two" / "config.yaml").read_text()
    run = tmp_path / "killed"
    run_ranks(2, train_sphere_rank, data, cif, run, 16, 2)  # both ranks die at epoch 2
    assert [r["epoch"] for r in _log(run)] == [1, 2]
    cfg = SphereConfig(data=ParticleSource(path=data / "particles.star"), out=str(run), model=str(cif), segments=4,
                       zdim=2, epochs=3, optim={"batch_size": 32})  # fmt: skip
    train_sphere(cfg, resume=True)
    assert [r["epoch"] for r in _log(run)] == [1, 2, 3]
    assert load_run(run).latents.shape == (160, 2)
