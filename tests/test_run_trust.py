"""Run directories you can trust (issue 19): clean overwrites, one identity, the same run on
resume, completion stamps, one writer, no log holes, clean stops and write failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from cryohet.cli.app import main
from cryohet.errors import ConfigError, RunDirError
from cryohet.io.source import ParticleSource
from cryohet.methods.base import load_run
from cryohet.methods.baselines import PCAConfig, train_pca
from cryohet.methods.baselines.pca import PCATrainer
from cryohet.training.lock import RunLock
from cryohet.training.rundir import RunDir

DATA = Path(__file__).resolve().parent / "data" / "pinned" / "data"
STAR = str(DATA / "particles.star")


class _Killed(Exception):
    pass


def _cfg(out, iterations=2, components=2, **kw) -> PCAConfig:
    return PCAConfig(
        data=ParticleSource(path=DATA / "particles.star"),
        out=str(out),
        components=components,
        iterations=iterations,
        **kw,
    )


def _kill_at(monkeypatch, epoch: int) -> None:
    original = PCATrainer.train_epoch

    def train_epoch(self, e):
        if e == epoch:
            raise _Killed
        return original(self, e)

    monkeypatch.setattr(PCATrainer, "train_epoch", train_epoch)


def _epochs(run: Path) -> list[int]:
    return [json.loads(x)["epoch"] for x in (run / "train_log.jsonl").read_text().splitlines() if x.strip()]


def _checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def test_overwrite_starts_clean_and_resume_finishes_the_new_run(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train_pca(_cfg(run, iterations=4))
    (run / "analyze").mkdir()
    (run / "analyze" / "report.html").write_text("old")
    old_id = yaml.safe_load((run / "config.yaml").read_text())["_run"]["id"]
    with monkeypatch.context() as m:
        _kill_at(m, 1)
        with pytest.raises(_Killed):
            train_pca(_cfg(run, iterations=2), overwrite=True)
    # nothing of the old run is left: its checkpoints, log rows, outputs, analysis, stamp
    assert _checkpoints(run) == ["epoch_0001.pt"] and _epochs(run) == [1]
    assert not (run / "analyze").exists() and not (run / "COMPLETED").exists() and not (run / "model.pt").exists()
    train_pca(_cfg(run, iterations=2), resume=True)
    assert _epochs(run) == [1, 2] and (run / "COMPLETED").exists()
    assert yaml.safe_load((run / "config.yaml").read_text())["_run"]["id"] != old_id


def test_overwrite_never_empties_a_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(RunDirError):
        train_pca(_cfg(folder), overwrite=True)
    assert (folder / "notes.txt").read_text() == "keep"


def test_resume_refuses_another_runs_checkpoints(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    with monkeypatch.context() as m:
        _kill_at(m, 1)
        for run in (a, b):
            with pytest.raises(_Killed):
                train_pca(_cfg(run))
    (b / "checkpoints" / "epoch_0001.pt").write_bytes((a / "checkpoints" / "epoch_0001.pt").read_bytes())
    with pytest.raises(RunDirError, match="another run"):
        train_pca(_cfg(b), resume=True)


def test_resume_is_the_same_run(tmp_path):
    run = tmp_path / "run"
    train_pca(_cfg(run, iterations=2))
    first = yaml.safe_load((run / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="components"):  # not resumable: refused, nothing trained
        train_pca(_cfg(run, iterations=2, components=3), resume=True)
    with pytest.raises(ConfigError, match="already trained 2 epochs"):
        train_pca(_cfg(run, iterations=1), resume=True)
    assert _epochs(run) == [1, 2]
    train_pca(_cfg(run, iterations=3), resume=True)  # more iterations: applied and recorded
    assert _epochs(run) == [1, 2, 3]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["iterations"] == 3 and cfg["_provenance"] == first["_provenance"]
    assert cfg["_run"]["id"] == first["_run"]["id"] and cfg["_resumes"][-1]["changes"] == ["iterations: 2 -> 3"]


def test_cli_resume_takes_the_runs_config_and_refuses_changed_data_or_an_edited_config(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _kill_at(m, 1)
        with pytest.raises(_Killed):
            main(["train", "pca", STAR, "-o", str(run), "--k", "2", "--iterations", "3"])
    other = tmp_path / "copy.star"
    other.write_text(Path(STAR).read_text().replace("particles.mrcs", str(DATA / "particles.mrcs")))
    assert main(["train", "pca", str(other), "-o", str(run), "--resume"]) == 1  # other particles: refused
    config = run / "config.yaml"
    original = config.read_text()
    config.write_text(original.replace("seed: 0", "seed: 7"))
    assert main(["train", "pca", STAR, "-o", str(run), "--resume"]) == 1  # edited config: refused
    config.write_text(original)
    assert main(["train", "pca", STAR, "-o", str(run), "--resume"]) == 0  # no options: the run's own config
    assert _epochs(run) == [1, 2, 3] and np.load(run / "latents.npy").shape == (160, 2)


def test_a_run_the_api_made_with_a_relative_path_resumes_from_the_cli(tmp_path, monkeypatch):
    """The API keeps 'data/particles.star' as given, the CLI passes the absolute path: the
    same file, so not a change of data; another file still is (the test above)."""
    monkeypatch.chdir(DATA.parent)
    run = tmp_path / "run"
    cfg = _cfg(run, iterations=3).model_copy(update={"data": ParticleSource(path=Path("data/particles.star"))})
    with monkeypatch.context() as m:
        _kill_at(m, 1)
        with pytest.raises(_Killed):
            train_pca(cfg)
    assert main(["train", "pca", STAR, "-o", str(run), "--resume"]) == 0
    assert _epochs(run) == [1, 2, 3]
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["path"] == "data/particles.star"


def test_a_run_started_before_a_field_was_added_resumes(tmp_path, monkeypatch):
    """A config field added to a method after a run started (absent from its config.yaml,
    taking its default) does not make the run's own config look edited; a changed value
    still does."""
    from cryohet.training import session
    from cryohet.training.identity import config_hash, flatten

    def without_seed(config, keys=None):  # an older cryohet, whose PCAConfig had no `seed`
        keys = flatten(config.model_dump(mode="json")) if keys is None else keys
        return config_hash(config, [k for k in keys if k != "seed"])

    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _kill_at(m, 1)
        m.setattr(session, "config_hash", without_seed)
        with pytest.raises(_Killed):
            main(["train", "pca", STAR, "-o", str(run), "--k", "2", "--iterations", "3"])
    config = run / "config.yaml"
    saved = yaml.safe_load(config.read_text())
    assert saved["seed"] == 0 and PCAConfig.model_fields["seed"].default == 0
    original = config.read_text()
    del saved["seed"]
    config.write_text(yaml.safe_dump(saved, sort_keys=False))
    with monkeypatch.context() as m:
        _kill_at(m, 2)
        with pytest.raises(_Killed):
            main(["train", "pca", STAR, "-o", str(run), "--resume"])
    resumed = yaml.safe_load(config.read_text())
    assert resumed["seed"] == 0 and resumed["_run"]["unhashed"] == ["seed"]  # whole again, and says so
    assert main(["train", "pca", STAR, "-o", str(run), "--resume"]) == 0  # and again
    assert _epochs(run) == [1, 2, 3]

    with monkeypatch.context() as m:  # the same run edited: refused
        _kill_at(m, 1)
        m.setattr(session, "config_hash", without_seed)
        with pytest.raises(_Killed):
            main(["train", "pca", STAR, "-o", str(tmp_path / "edited"), "--k", "2", "--iterations", "3"])
    edited = tmp_path / "edited" / "config.yaml"
    edited.write_text(original.replace("components: 2", "components: 3").replace(str(run), str(edited.parent)))
    assert main(["train", "pca", STAR, "-o", str(edited.parent), "--resume"]) == 1


def test_readers_require_a_finished_run(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    train_pca(_cfg(run, iterations=2))
    assert load_run(run).zdim == 2
    with monkeypatch.context() as m:
        _kill_at(m, 2)
        with pytest.raises(_Killed):
            train_pca(_cfg(run, iterations=3), resume=True)  # the resume removed COMPLETED
    with pytest.raises(RunDirError, match="unfinished"):
        load_run(run)
    assert load_run(run, allow_unfinished=True).zdim == 2  # looking at it as it is
    np.save(tmp_path / "z.npy", np.zeros((1, 2), np.float32))
    assert main(["volumes", str(run), "--z", str(tmp_path / "z.npy"), "--out", str(tmp_path / "v")]) == 1
    assert main(["evaluate", str(run), "--gt", str(DATA)]) == 1
    assert not (tmp_path / "v").exists()


def test_one_writer_per_run_and_the_lock_dies_with_its_process(tmp_path):
    run = tmp_path / "run"
    with RunLock(run):
        with pytest.raises(RunDirError, match=f"pid {os.getpid()}"):
            train_pca(_cfg(run))
    # a holder killed with SIGKILL leaves the file but not the lock
    code = (
        f"from cryohet.training.lock import RunLock; RunLock({str(run)!r}).acquire(); print('held', flush=True); "
        "import time; time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    proc.kill()
    proc.wait()
    assert (run / ".lock").exists()
    train_pca(_cfg(run), overwrite=True)
    assert (run / "COMPLETED").exists()


def test_a_kill_between_checkpoint_and_log_leaves_no_hole(tmp_path, monkeypatch):
    run = tmp_path / "run"
    original = RunDir.append_log

    def append_log(self, record):
        if record.get("epoch") == 2:  # the second epoch's row
            raise _Killed
        return original(self, record)

    with monkeypatch.context() as m:
        m.setattr(RunDir, "append_log", append_log)
        with pytest.raises(_Killed):
            train_pca(_cfg(run, iterations=3))
    assert _checkpoints(run)[-1] == "epoch_0002.pt" and _epochs(run) == [1]
    train_pca(_cfg(run, iterations=3), resume=True)
    assert _epochs(run) == [1, 2, 3]


def test_a_damaged_latest_checkpoint_names_the_previous_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _kill_at(m, 3)
        with pytest.raises(_Killed):
            train_pca(_cfg(run, iterations=4))
    latest = run / "checkpoints" / "epoch_0003.pt"
    latest.write_bytes(latest.read_bytes()[:200])
    with pytest.raises(RunDirError, match="epoch_0002.pt is intact"):
        train_pca(_cfg(run, iterations=4), resume=True)


def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    import errno

    import cryohet.training.checkpoint as ckpt

    def full(obj, path, *a, **k):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full)
    run = tmp_path / "run"
    assert main(["train", "pca", STAR, "-o", str(run), "--k", "2", "--iterations", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "no space left" in err[-1] and "Traceback" not in "\n".join(err)
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


def test_a_new_run_that_fails_on_its_input_leaves_no_folder(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "oracle", STAR, "-o", str(out), "--labels", str(tmp_path / "missing.npy")]) == 1
    assert not out.exists()


@pytest.mark.slow
def test_sigterm_stops_in_one_line_and_the_run_resumes(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "cryohet", "train", "pca", STAR, "-o", str(run), "--k", "2", "--iterations", "400"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "epoch_0002.pt").exists():
        assert time.time() < deadline and proc.poll() is None, "the run did not reach its second checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert proc.returncode == 143, err[-2000:]
    assert lines[-1].startswith("error:") and "--resume" in lines[-1] and "Traceback" not in err
    assert not (run / "COMPLETED").exists()
    done = len(_epochs(run))
    code = main(["train", "pca", STAR, "-o", str(run), "--resume", "--iterations", str(done + 1)])
    assert code == 0 and _epochs(run) == list(range(1, done + 2)) and (run / "COMPLETED").exists()


def test_a_spire_run_that_cannot_fit_in_memory_is_refused_before_training(tmp_path, monkeypatch, capsys):
    import cryohet.methods.spire.memory as memory

    assert memory.step_bytes(64, 4096, 64) > memory.step_bytes(32, 4096, 64) > memory.step_bytes(32, 1024, 64)
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(0.75 * 2**30))
    out = tmp_path / "run"
    code = main(["train", "spire", STAR, "-o", str(out), "--gaussians", "4096", "-b", "64"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and "--batch-size" in last and not out.exists()
    fits = int(last.split("--batch-size ")[1].split()[0].rstrip(";,"))
    assert 1 <= fits < 64 and memory.step_bytes(fits, 4096, 24) <= 0.9 * 0.75 * 2**30


def test_readers_look_at_an_unfinished_run_only_when_asked(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train_pca(_cfg(run, iterations=2))
    with monkeypatch.context() as m:
        _kill_at(m, 2)
        with pytest.raises(_Killed):
            train_pca(_cfg(run, iterations=3), resume=True)
    np.save(tmp_path / "z.npy", np.zeros((1, 2), np.float32))
    vols = ["volumes", str(run), "--z", str(tmp_path / "z.npy")]
    assert main([*vols, "--out", str(tmp_path / "v1")]) == 1
    assert main([*vols, "--out", str(tmp_path / "v2"), "--allow-unfinished"]) == 0
    assert main(["select", str(run), "--indices", str(tmp_path / "z.npy"), "--out", str(tmp_path / "s.pkl")]) == 1
