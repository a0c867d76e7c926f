"""Shared test fixtures.

External fixtures (files other programs wrote) live in ``../shared/data`` beside the
checkout (override with ``CRYOHET_SHARED_DATA``); tests that need them skip with a clear
reason when the folder is absent (a user's clone) and run in CI.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CRYOHET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two xdist workers on two cores: one thread each in every pool (torch's, and numpy's and
    # scipy's OpenBLAS, which torch.set_num_threads does not reach), and in the processes the
    # tests start. Two-thread pools beside a busy worker spin against it: the sphere hinge
    # fixture took 205 s instead of 32 s with the other core busy, with two torch threads.
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"
    torch.set_num_threads(1)
    threadpool_limits(1)


@pytest.fixture(autouse=True)
def _one_torch_thread_per_worker():
    """Every test starts with the worker's one torch thread, whatever a test before it in
    the same worker left (a library that resets OpenMP's count; see test_umap_...)."""
    if os.environ.get("PYTEST_XDIST_WORKER") and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """``../shared/data/fixtures``; skips the test when it is not there."""
    path = SHARED_DATA / "fixtures"
    if not path.is_dir():
        pytest.skip(f"external fixtures not found at {path} (set CRYOHET_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def one_state_igg(tmp_path_factory) -> Path:
    """The ab initio tests' set (DRGN-AI, HetACUMN, map alignment): one IgG state, 300 images
    at D=32 (12 Å/px), SNR 1, seed 2, simulated once per test process. Its STAR file has the
    true poses (ab initio runs ignore them); ``gt/`` holds the map and mask. Read only."""
    from cryohet.simulate.config import SimulationConfig
    from cryohet.simulate.simulator import simulate_dataset

    out = tmp_path_factory.mktemp("one_state_igg") / "data"
    simulate_dataset(SimulationConfig(preset="igg-1d", out=out, n_states=1, n_images=300, box=32, snr=1.0, seed=2))
    return out


@pytest.fixture
def killed_at_epoch(monkeypatch):
    """``with killed_at_epoch(Trainer, epoch): train(cfg)`` -- the trainer class's
    ``train_epoch`` raises ``KeyboardInterrupt`` when asked for ``epoch`` (0-based), as a kill
    during that epoch would; the block expects it, and the class is whole again after it."""

    @contextlib.contextmanager
    def kill(trainer_cls, epoch: int):
        original = trainer_cls.train_epoch

        def dying(self, e, *args, **kwargs):
            if e == epoch:
                raise KeyboardInterrupt
            return original(self, e, *args, **kwargs)

        with monkeypatch.context() as m:
            m.setattr(trainer_cls, "train_epoch", dying)
            with pytest.raises(KeyboardInterrupt):
                yield

    return kill


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
