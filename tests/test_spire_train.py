"""CryoSPIRE end to end on a tiny two-state dataset: states separate, maps beat the
consensus, a killed run resumes, a corrupted checkpoint is a clear error."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from cryohet.cli.app import main
from cryohet.errors import RunDirError
from cryohet.io.source import ParticleSource
from cryohet.methods.base import load_run
from cryohet.methods.spire import SpireConfig, train_spire
from cryohet.metrics.fsc import fsc_cryobench
from cryohet.metrics.per_conformation import nearest_to_mean
from cryohet.simulate.config import SimulationConfig
from cryohet.simulate.simulator import simulate_dataset
from cryohet.training.checkpoint import latest_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_states(tmp_path_factory):
    """Cytochrome c oxidase with and without its COX2 subunits, 600 images at D=32."""
    out = tmp_path_factory.mktemp("two_states") / "data"
    simulate_dataset(
        SimulationConfig(preset="assembly", out=out, n_states=2, n_images=600, box=32, apix=9.0, snr=0.2, seed=5)
    )
    return out


def _config(data, out, epochs_a, epochs_b, **kw) -> SpireConfig:
    return SpireConfig(
        data=ParticleSource(path=data / "particles.star"),
        out=str(out),
        stage_a={"epochs": epochs_a},
        stage_b={"epochs": epochs_b, "hidden": 64},
        optim={"batch_size": 16},
        **kw,
    )


@pytest.fixture(scope="module")
def trained(two_states, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "spire"
    train_spire(_config(two_states, run, 12, 14))
    return run


def _assert_states_separate_and_beat_the_consensus(data, run) -> None:
    model = load_run(run)
    labels = np.load(data / "gt" / "labels.npy")
    z = model.latents
    assert z.shape == (600, 4)
    pred = KMeans(2, n_init=10, random_state=0).fit_predict(z)
    assert adjusted_rand_score(labels, pred) >= 0.9
    mask = mrcfile.read(data / "gt" / "mask.mrc")
    consensus = mrcfile.read(run / "consensus.mrc")
    for state, row in nearest_to_mean(z, labels).items():
        gt = mrcfile.read(data / "gt" / f"state_{state:03d}.mrc")
        ours = fsc_cryobench(model.volume(z[row]), gt, mask=mask).auc
        base = fsc_cryobench(consensus, gt, mask=mask).auc
        assert ours > base, (state, ours, base)


def test_two_states_separate_and_beat_the_consensus(two_states, trained):
    _assert_states_separate_and_beat_the_consensus(two_states, trained)


def test_run_directory_contract(trained):
    for name in ("config.yaml", "model.pt", "latents.npy", "poses.npz", "consensus.mrc", "run.log", "train_log.jsonl"):
        assert (trained / name).exists(), name
    gaussians = np.load(trained / "extras" / "gaussians.npz")
    motion = np.load(trained / "extras" / "part_motion.npz")
    k = int(gaussians["part"].max()) + 1
    assert motion["rotations"].shape == (600, k, 3, 3) and motion["occupancy"].shape == (600, k)
    rows = [json.loads(line) for line in (trained / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 27))
    assert all(r["images_per_s"] > 0 for r in rows)


def test_killed_run_resumes_and_finishes(two_states, tmp_path, killed_at_epoch):
    from cryohet.methods.spire import trainer as trainer_module

    run = tmp_path / "killed"
    cfg = _config(two_states, run, 2, 2)
    with killed_at_epoch(trainer_module.SpireTrainer, 3):  # killed during the first stage-B epoch... of the second
        train_spire(cfg)
    assert latest_checkpoint(run).name == "epoch_0003.pt"  # 3 epochs done
    train_spire(cfg, resume=True)
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert load_run(run).latents.shape == (600, 4)
    # the resumed run ends where an uninterrupted one does (a run is a function of its config)
    whole = tmp_path / "whole"
    train_spire(cfg.model_copy(update={"out": str(whole)}))
    rows_whole = [json.loads(line) for line in (whole / "train_log.jsonl").read_text().splitlines()]
    assert [r["data"] for r in rows_whole] == pytest.approx([r["data"] for r in rows], rel=1e-6)
    assert np.allclose(load_run(whole).latents, load_run(run).latents, atol=1e-5)


def test_corrupted_checkpoint_is_a_clear_error(two_states, trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "corrupt"
    shutil.copytree(trained, run)
    latest = latest_checkpoint(run)
    latest.write_bytes(latest.read_bytes()[:100])
    with pytest.raises(RunDirError, match="corrupt"):
        from cryohet.training.checkpoint import load_checkpoint

        load_checkpoint(latest)
    code = main(["train", "spire", str(two_states / "particles.star"), "--out", str(run), "--resume"])
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]  # progress/log lines may precede it
    assert code == 1 and "Traceback" not in err and last.startswith("error:") and "corrupt" in last


def test_volumes_command_writes_maps_and_part_maps(trained, tmp_path):
    """``cryohet volumes --parts``: one map per latent row at the requested voxel size, part
    maps that add up to the full map, and a ChimeraX script naming them."""
    z = np.load(trained / "latents.npy")[[0, 5]]
    np.save(tmp_path / "z.npy", z)
    out = tmp_path / "vols"
    code = main(
        [
            "volumes",
            str(trained),
            "--z",
            str(tmp_path / "z.npy"),
            "--out",
            str(out),
            "--parts",
            "--apix",
            "12.0",
            "--box",
            "24",
        ]
    )
    assert code in (0, None)
    model = load_run(trained)
    for i in range(2):
        with mrcfile.open(out / f"vol_{i:03d}.mrc") as m:
            assert m.data.shape == (24, 24, 24)
            assert abs(float(m.voxel_size.x) - 12.0) < 1e-4
            full = m.data.copy()
        parts = sorted(out.glob(f"vol_{i:03d}_part_*.mrc"))
        assert len(parts) == int(np.load(trained / "extras" / "gaussians.npz")["part"].max()) + 1
        total = sum(mrcfile.read(p).astype(np.float64) for p in parts)
        assert np.abs(total - full).max() <= 1e-3 * np.abs(full).max()
        assert np.allclose(full, model.volume(z[i], 24, 12.0), atol=1e-5 * np.abs(full).max())
    script = (out / "parts.cxc").read_text()
    assert "vol_000_part_00.mrc" in script


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_mixed_precision_run_separates_the_states(two_states, tmp_path):
    """The CUDA path (bf16 autocast for the networks) reaches what the CPU run reaches."""
    run = tmp_path / "spire_cuda"
    train_spire(_config(two_states, run, 12, 14, device="cuda"))
    _assert_states_separate_and_beat_the_consensus(two_states, run)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert all(row.get("gpu_peak_mb", 0) > 0 for row in log)
