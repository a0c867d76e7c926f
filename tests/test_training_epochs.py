"""Epochs are numbered the same way (from 1) in checkpoints, the log and the console, and
runs written before that numbering (from 0) still resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from cryohet.training.checkpoint import all_checkpoints, save_checkpoint
from cryohet.training.loop import epochs_done, run_epochs
from cryohet.training.rundir import RunDir


class Counter:
    """A trainer whose state is the list of epoch indices it was given."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def train_epoch(self, epoch: int) -> dict:
        self.seen.append(epoch)
        return {"n_images": 10, "data": float(epoch)}

    def get_state(self) -> dict:
        return {"seen": torch.tensor(self.seen)}

    def set_state(self, state: dict) -> None:
        self.seen = [int(x) for x in state["seen"]]


def _run(path: Path, n: int, resume: bool = False, trainer: Counter | None = None) -> Counter:
    trainer = trainer or Counter()
    run_epochs(RunDir(path), n, trainer.train_epoch, trainer.get_state, trainer.set_state, resume=resume)
    return trainer


def _rows(path: Path) -> list[int]:
    return [json.loads(x)["epoch"] for x in (path / "train_log.jsonl").read_text().splitlines() if x.strip()]


@pytest.fixture
def messages(caplog):
    logger = logging.getLogger("cryohet")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="cryohet")
    yield caplog
    logger.removeHandler(caplog.handler)


def test_checkpoint_log_and_console_agree(tmp_path, messages):
    run = tmp_path / "run"
    run.mkdir()
    trainer = _run(run, 3)
    assert trainer.seen == [0, 1, 2]  # the trainer gets 0-based indices (schedules, seeds)
    assert _rows(run) == [1, 2, 3]
    assert [p.name for p in all_checkpoints(run)] == ["epoch_0002.pt", "epoch_0003.pt"]  # the last two kept
    assert torch.load(all_checkpoints(run)[-1], weights_only=True)["epochs_done"] == 3
    assert [m for m in messages.messages if m.startswith("epoch ")][-1].startswith("epoch 3/3:")
    assert epochs_done(RunDir(run)) == 3

    _run(run, 5, resume=True)
    assert _rows(run) == [1, 2, 3, 4, 5]
    assert "resuming after epoch 3/5" in messages.messages
    shown = [m.split(":")[0] for m in messages.messages if m.startswith("epoch ")]
    assert shown.index("epoch 4/5") > shown.index("epoch 3/3") and shown[-1] == "epoch 5/5"


def test_a_run_numbered_from_zero_resumes(tmp_path):
    """A run of an older cryohet: rows 0, 1 and ``epoch_0001.pt`` holding two epochs."""
    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    rd = RunDir(run)
    for e in (0, 1):
        rd.append_log({"epoch": e, "n_images": 10, "data": float(e)})
    row = {"epoch": 1, "n_images": 10, "data": 1.0}
    save_checkpoint(
        run / "checkpoints" / "epoch_0001.pt", {"epoch": 1, "state": {"seen": torch.tensor([0, 1])}, "log_row": row}
    )
    assert epochs_done(rd) == 2
    trainer = _run(run, 4, resume=True)
    assert trainer.seen == [0, 1, 2, 3]  # epochs 3 and 4 trained, nothing twice
    assert _rows(run) == [1, 2, 3, 4]
    assert all_checkpoints(run)[-1].name == "epoch_0004.pt"
