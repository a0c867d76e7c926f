"""DRGN-AI killed in each phase (pretrain, search, joint descent) resumes and ends where an
uninterrupted run ends; the run directory follows the run contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cryohet.io.mrc import read_volume
from cryohet.io.source import ParticleSource
from cryohet.methods.base import load_run
from cryohet.methods.drgnai import DrgnaiConfig, train_drgnai
from cryohet.training.checkpoint import latest_checkpoint, load_checkpoint

pytestmark = pytest.mark.slow

PINNED = Path(__file__).parent / "data" / "pinned" / "data"


def _config(out: Path) -> DrgnaiConfig:
    """160 images at D=24: 1 pretrain epoch, 2 search epochs, 2 joint epochs with local pose
    searches (the latents seeded at the first, the clusters' frames aligned at the second);
    a small field."""
    return DrgnaiConfig(
        data=ParticleSource(path=PINNED / "particles.star"),
        out=str(out),
        zdim=2,
        pretrain_images=160,
        search_images=320,
        epochs_sgd=2,
        frame_align_every=1,
        frame_clusters=2,
        field={"hidden": 32, "blocks": 1, "features": 32},
        search={"base_level": 0, "rounds": 2, "keep": 2, "shift_n": 4, "radius_start_px": 6, "radius_end_px": 10,
                "clusters": 2, "local_step_deg": 2.0},
        optim={"batch_size": 40},
    )  # fmt: skip


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("drgnai") / "whole"
    train_drgnai(_config(run))
    return run


def test_run_directory_contract(whole):
    for name in ("config.yaml", "model.pt", "latents.npy", "poses.npz", "map.mrc", "run.log", "train_log.jsonl"):
        assert (whole / name).exists(), name
    rows = _rows(whole)
    assert [r["phase"] for r in rows] == ["pretrain", "search", "search", "sgd", "sgd"]
    assert [("latent_init_s" in r) for r in rows] == [False, False, False, True, False]  # seeded once
    assert [("frame_align_s" in r) for r in rows] == [False, False, False, False, True]
    model = load_run(whole)
    assert model.latents.shape == (160, 2)
    rot, shifts = model.poses()
    assert rot.shape == (160, 3, 3) and shifts.shape == (160, 2)
    assert np.allclose(rot @ np.swapaxes(rot, 1, 2), np.eye(3), atol=1e-5)
    scores = np.load(whole / "extras" / "pose_search.npz")
    assert np.isfinite(scores["best_score"]).all() and np.isfinite(scores["score_z"]).all()
    assert int(np.load(whole / "extras" / "map_check.npz")["hollow"]) in (0, 1)
    vol = model.volume(model.latents.mean(axis=0))
    assert vol.shape == (24, 24, 24) and np.isfinite(vol).all()
    # model.pt holds the field averaged over the joint steps (8 of them), not the last step's
    state = load_checkpoint(latest_checkpoint(whole))["state"]
    written = torch.load(whole / "model.pt", weights_only=True)["field"]
    assert state["field_average"]["updates"] == 8
    for name, value in state["field_average"]["average"].items():
        assert torch.equal(written[name], value), name
    assert not torch.equal(written["network.output.weight"], state["field"]["network.output.weight"])


@pytest.mark.parametrize("kill_at", [0, 2, 4], ids=["pretrain", "search", "sgd"])
def test_killed_in_each_phase_resumes_to_the_same_end(whole, tmp_path, killed_at_epoch, kill_at):
    from cryohet.methods.drgnai import trainer as trainer_module

    run = tmp_path / "killed"
    with killed_at_epoch(trainer_module.DrgnaiTrainer, kill_at):
        train_drgnai(_config(run))
    last = latest_checkpoint(run)
    assert (last is None) if kill_at == 0 else last.name == f"epoch_{kill_at:04d}.pt"
    train_drgnai(_config(run), resume=True)
    assert [r["epoch"] for r in _rows(run)] == [1, 2, 3, 4, 5]
    assert [r["data"] for r in _rows(run)] == pytest.approx([r["data"] for r in _rows(whole)], rel=1e-5)
    assert np.allclose(load_run(run).latents, load_run(whole).latents, atol=1e-5)
    assert np.allclose(np.load(run / "poses.npz")["rotations"], np.load(whole / "poses.npz")["rotations"], atol=1e-5)
    # the averaged field (model.pt, map.mrc) resumes too
    assert np.allclose(read_volume(run / "map.mrc")[0], read_volume(whole / "map.mrc")[0], atol=1e-5)
