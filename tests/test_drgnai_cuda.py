"""DRGN-AI on a CUDA device: the same numbers as on the CPU (float32), bf16 autocast close
to float32, the search's score still the training loss, and an ab initio run that recovers
the poses and the map as the CPU run does (tests/test_drgnai_abinit.py).

Skipped without a CUDA device; run on a lent GPU by ``benchmarks/gpu_check.sh``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from drgnai_helpers import AtLatent, random_rot, small_config

from cryohet.cli.app import main
from cryohet.io.source import ParticleSource
from cryohet.methods.base import load_run
from cryohet.methods.drgnai import DrgnaiConfig, train_drgnai
from cryohet.methods.drgnai.trainer import DrgnaiTrainer
from cryohet.metrics.pose_error import rotation_errors
from cryohet.pose.search import SearchSchedule, search_poses

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

DEVICE = "cuda"
PINNED = Path(__file__).parent / "data" / "pinned" / "data"


def _config(tmp_path, **kw) -> DrgnaiConfig:
    return small_config(tmp_path, **{"zdim": 2, **kw})


def _pair(tmp_path):
    """The same trainer on the CPU and on CUDA (same seed: same weights, tables and data)."""
    cpu = DrgnaiTrainer(_config(tmp_path / "c", amp=False), device="cpu")
    gpu = DrgnaiTrainer(_config(tmp_path / "g", amp=False), device=DEVICE)
    gpu.field.load_state_dict(cpu.field.state_dict())
    gpu.latents.load_state_dict(cpu.latents.state_dict())
    return cpu, gpu


def test_data_term_is_the_same_on_cuda_and_autocast_is_close(tmp_path):
    cpu, gpu = _pair(tmp_path)
    batch = cpu.dataset.get_batch(np.arange(24))
    rot = torch.as_tensor(random_rot(24), dtype=torch.float32)
    shifts = torch.randn(24, 2) * cpu.apix
    out = {}
    for name, t in (("cpu", cpu), ("gpu", gpu)):
        _, sub, observed, ctf = t._observe(batch, 10.0)
        z = t.latents.z[torch.arange(24, device=t.device)]
        with torch.no_grad():
            out[name] = t.data_term(sub, observed, ctf, rot.to(t.device), shifts.to(t.device), z).double().cpu()
            if name == "gpu":
                t.cfg.amp = True
                out["amp"] = t.data_term(sub, observed, ctf, rot.to(t.device), shifts.to(t.device), z).double().cpu()
                t.cfg.amp = False
    assert torch.allclose(out["gpu"], out["cpu"], rtol=1e-4), (out["gpu"] - out["cpu"]).abs().max()
    rel = float((out["amp"] - out["cpu"]).norm() / out["cpu"].norm())
    assert rel < 1e-2, rel  # bf16 operands: 1e-3 .. 1e-2


def test_search_score_is_the_training_loss_on_cuda(tmp_path):
    _, t = _pair(tmp_path)
    batch = t.dataset.get_batch(np.arange(16))
    index, _, obs_full, ctf_full = t._observe(batch, t.box / 2)
    _, sub, observed, ctf = t._observe(batch, 8.0)
    schedule = SearchSchedule(
        base_level=0, rounds=1, keep=3, neighbours=4, shift_extent_px=2.0, shift_n=3,
        radius_start_px=6.0, radius_end_px=8.0,
    )  # fmt: skip
    z = t.latents.z[index]
    grid_sources = [AtLatent(t.field, z[i]) for i in range(len(index))]
    with torch.no_grad():
        res = search_poses(obs_full, ctf_full, torch.arange(len(index)), grid_sources, t.likelihood, schedule)
        loss = t.data_term(sub, observed, ctf, res.rotations, res.shifts_A, z)
    assert res.rotations.device.type == DEVICE
    assert torch.allclose(res.scores.double(), loss.double(), rtol=2e-4, atol=1e-3)


def test_cuda_abinit_with_autocast_recovers_poses_and_map(tmp_path, one_state_igg):
    """The CPU test's run (tests/test_drgnai_abinit.py) on CUDA with bf16 autocast."""
    data = one_state_igg
    run = tmp_path / "abinit"
    cfg = DrgnaiConfig(
        data=ParticleSource(path=data / "particles.star"),
        out=str(run),
        zdim=0,
        pretrain_images=0,
        search_images=6000,
        epochs_sgd=2,
        field={"hidden": 64, "features": 64},
        search={"base_level": 1, "shift_n": 7},
        optim={"lr_field": 1e-3, "batch_size": 16},
        device=DEVICE,
        amp=True,
    )
    train_drgnai(cfg)
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    if DEVICE == "cuda":
        assert all(r.get("gpu_peak_mb", 0) > 0 for r in rows)
    rot, _ = load_run(run).poses()
    star = ParticleSource(path=data / "particles.star").load()
    err = rotation_errors(rot, np.asarray(star.rotations))
    assert np.median(err.rotation_deg) < 8.0, np.median(err.rotation_deg)
    code = main(["evaluate", str(run), "--gt", str(data), "--align", "-o", str(tmp_path / "eval")])
    assert code == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["per_conformation"]["masked"]["per_state"]["0"] > 0.40
