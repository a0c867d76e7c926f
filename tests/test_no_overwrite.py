"""No command destroys a file, and output folders are never mixed.

For every command that writes (select, convert, volumes, downsample, analyze, fsc,
evaluate, backproject, simulate), on the pinned 160-particle dataset and a homogeneous
run trained on it:

(a) an existing output (file, or non-empty folder) is refused with a non-zero exit and
    stays byte-identical;
(b) with ``--overwrite`` the output is the new one, and nothing of an old folder remains;
(c) an input passed as the output (or a folder holding an input) is refused even with
    ``--overwrite``, and the input stays byte-identical;
(d) a writer failing in the middle leaves the old output byte-identical and no
    temporary file or folder.

Checks are on exit codes, which files exist and their bytes, not on wording. The helpers
of :mod:`cryohet.io.outputs` are tested directly at the end.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cryohet.cli.app import main
from cryohet.errors import InputError
from cryohet.io.outputs import atomic_path, atomic_write, check_output, staged_files, staged_folder

PINNED = Path(__file__).resolve().parent / "data" / "pinned" / "data"


# --------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A private copy of the pinned dataset, and a homogeneous run trained on it."""
    from cryohet.io.source import ParticleSource
    from cryohet.methods.baselines import HomogeneousConfig, train_homogeneous

    root = tmp_path_factory.mktemp("no_overwrite")
    data = root / "data"
    shutil.copytree(PINNED, data)
    run = Path(
        train_homogeneous(
            HomogeneousConfig(data=ParticleSource(path=str(data / "particles.star")), out=str(root / "run"))
        )
    )
    return {"root": root, "data": data, "run": run}


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or ``path`` itself), hidden ones included, with its bytes."""
    if path.is_file():
        return {".": path.read_bytes()}
    return {f.relative_to(path).as_posix(): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders (``.NAME.tmp-*``, ``.NAME.old-*``) anywhere under ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name or ".old-" in p.name or p.suffix == ".tmp")


def fail_on_call(monkeypatch, target: str, call: int = 1) -> None:
    """Replace ``module.attribute`` by a wrapper that runs the real writer, and on call number
    ``call`` raises a full-disk error after it (the file was written, the command was not done;
    the CLI ends it in one line)."""
    module_name, attr = target.rsplit(".", 1)
    module = __import__(module_name, fromlist=[attr])
    real = getattr(module, attr)
    calls = {"n": 0}

    def broken(*args, **kwargs):
        calls["n"] += 1
        result = real(*args, **kwargs)
        if calls["n"] >= call:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return result

    monkeypatch.setattr(module, attr, broken)


def plant_old_folder(folder: Path) -> dict[str, bytes]:
    """An old output folder with a stale file and a file the new output also writes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stale.mrc").write_bytes(b"stale map from an older run")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "old.txt").write_text("old")
    return snapshot(folder)


@dataclass
class Case:
    """One writer command: its command line for an output path, what the output is, and
    which writer to break in the middle."""

    argv: Callable[[dict, Path], list]
    kind: str  # "file" or "folder"
    new_file: str  # a file the new output has (relative to the folder; "." for a file output)
    break_target: str
    break_call: int = 1


def _rows_file(world) -> Path:
    path = world["root"] / "rows.txt"
    if not path.exists():
        path.write_text("\n".join(str(i) for i in range(0, 160, 3)) + "\n")
    return path


def _z_file(world) -> Path:
    path = world["root"] / "z.npy"
    if not path.exists():
        np.save(path, np.zeros((2, 1), np.float32))
    return path


CASES = {
    "select": Case(
        lambda w, out: ["select", w["run"], "--indices", _rows_file(w), "--out", out],
        "file",
        ".",
        "cryohet.io.star.write_star",
    ),
    "convert": Case(
        lambda w, out: ["convert", w["data"] / "particles.star", "--poses-out", out],
        "file",
        ".",
        "cryohet.io.particles.write_poses_pkl",
    ),
    "volumes": Case(
        lambda w, out: ["volumes", w["run"], "--z", _z_file(w), "--out", out],
        "folder",
        "vol_001.mrc",
        "cryohet.analysis.volumes.write_volume",
    ),
    "downsample": Case(
        lambda w, out: ["downsample", w["data"] / "particles.star", "-D", "12", "--out", out],
        "folder",
        "particles.12.star",
        "cryohet.data.downsample.write_star",
    ),
    "analyze": Case(
        lambda w, out: ["analyze", w["run"], "--out", out, "--k", "2", "--pcs", "0", "--no-umap", "--no-report"],
        "folder",
        "summary.json",
        "cryohet.analysis.series.write_volume",
    ),
    "fsc": Case(
        lambda w, out: ["fsc", w["data"] / "gt" / "state_000.mrc", w["data"] / "gt" / "state_001.mrc", "--json", out],
        "file",
        ".",
        "cryohet.evaluation.fsc_report.write_report_json",
    ),
    "evaluate": Case(
        lambda w, out: ["evaluate", w["run"], "--gt", w["data"], "--out", out],
        "folder",
        "metrics.json",
        "cryohet.evaluation.evaluate_plots.plot_fsc_overview",
    ),
    "backproject": Case(
        lambda w, out: ["backproject", w["data"] / "particles.star", "--out", out],
        "file",
        ".",
        "cryohet.workflows.backproject.write_volume",
    ),
    "simulate": Case(
        lambda w, out: [
            "simulate",
            "assembly",
            "--out",
            out,
            "-n",
            "12",
            "-D",
            "24",
            "--apix",
            "14",
            "--n-states",
            "2",
        ],
        "folder",
        "particles.star",
        "cryohet.simulate.simulator.write_star",
    ),
}


def _out(world, name: str, tag: str) -> Path:
    suffix = {"select": ".star", "convert": ".pkl", "fsc": ".json", "backproject": ".mrc"}.get(name, "")
    return world["root"] / "outputs" / f"{name}_{tag}{suffix}"


def _plant_old(case: Case, out: Path) -> dict[str, bytes]:
    if case.kind == "folder":
        return plant_old_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"an older output the user wants to keep")
    return snapshot(out)


def _run(argv: list) -> int:
    return main([str(a) for a in argv])


def _inputs_snapshot(world) -> dict[str, bytes]:
    return {**snapshot(world["data"]), **{f"run/{k}": v for k, v in snapshot(world["run"]).items()}}


# --------------------------------------------------------------------------- (a) and (b)
@pytest.mark.parametrize("name", list(CASES))
def test_existing_output_is_refused_then_replaced_with_overwrite(name, world, capsys):
    case = CASES[name]
    out = _out(world, name, "ab")
    old = _plant_old(case, out)
    assert _run(case.argv(world, out)) != 0
    assert "Traceback" not in capsys.readouterr().err
    assert snapshot(out) == old  # byte-identical
    assert leftovers(out.parent) == []

    assert _run([*case.argv(world, out), "--overwrite"]) == 0
    new = snapshot(out)
    assert new != old
    if case.kind == "folder":
        assert case.new_file in new
        assert "stale.mrc" not in new and "sub/old.txt" not in new and not (out / "sub").exists()
    else:
        assert new["."] != old["."] and len(new["."]) > 0
    assert leftovers(out.parent) == []


@pytest.mark.parametrize("name", list(CASES))
def test_a_fresh_output_and_an_empty_folder_need_no_flag(name, world):
    case = CASES[name]
    out = _out(world, name, "fresh")
    if case.kind == "folder":
        out.mkdir(parents=True)  # an empty folder is not an output to protect
    assert _run(case.argv(world, out)) == 0
    assert (case.new_file in snapshot(out)) if case.kind == "folder" else out.is_file()
    assert leftovers(out.parent) == []


# --------------------------------------------------------------------------- (c)
def _input_as_output(name: str, world) -> list[Path]:
    """Outputs that are (or hold) one of the command's inputs."""
    data, run = world["data"], world["run"]
    star = data / "particles.star"
    return {
        "select": [star],  # its index file: test_select_refuses_its_index_file
        "convert": [star, data / "particles.mrcs"],
        "volumes": [_z_file(world), world["root"], run, run / "checkpoints", run / "extras"],
        "downsample": [star, data, world["root"]],
        "analyze": [run, run / "checkpoints", run / "extras", world["root"]],
        "fsc": [data / "gt" / "state_000.mrc", data / "gt" / "state_001.mrc"],
        "evaluate": [run, run / "checkpoints", data, data / "gt", world["root"]],
        "backproject": [],  # the map must be .mrc: test_backproject_refuses_its_stack_as_the_map
        "simulate": [],  # the model file, below
    }[name]


@pytest.mark.parametrize("name", list(CASES))
def test_an_input_as_output_is_refused_even_with_overwrite(name, world, capsys):
    case = CASES[name]
    before = _inputs_snapshot(world)
    for target in _input_as_output(name, world):
        assert _run([*case.argv(world, target), "--overwrite"]) != 0, target
        assert "Traceback" not in capsys.readouterr().err
    assert _inputs_snapshot(world) == before
    assert leftovers(world["root"]) == []


def test_select_refuses_its_index_file(world, tmp_path):
    rows = tmp_path / "rows.pkl"
    from cryohet.io.cryodrgn import write_ind_pkl

    write_ind_pkl(rows, np.arange(10))
    before = rows.read_bytes()
    assert _run(["select", world["run"], "--indices", rows, "--out", rows, "--overwrite"]) != 0
    assert rows.read_bytes() == before


def test_backproject_refuses_its_stack_as_the_map(world, tmp_path):
    """A stack named .mrc read by the STAR file cannot be the output map."""
    stack = tmp_path / "stack.mrc"
    shutil.copyfile(world["data"] / "particles.mrcs", stack)
    star = tmp_path / "p.star"
    star.write_text((world["data"] / "particles.star").read_text().replace("@particles.mrcs", "@stack.mrc"))
    before = stack.read_bytes()
    assert _run(["backproject", star, "--out", stack, "--overwrite"]) != 0
    assert stack.read_bytes() == before and leftovers(tmp_path) == []


def test_simulate_refuses_a_folder_holding_its_model(world, tmp_path):
    src = Path(__import__("cryohet").__file__).parent / "resources" / "models" / "1hzh.pdb.gz"
    folder = tmp_path / "sim"
    folder.mkdir()
    model = folder / "model.pdb.gz"
    shutil.copyfile(src, model)
    before = snapshot(folder)
    base = ["simulate", "custom", "--model", model, "--apix", "3", "-n", "4", "-D", "24"]
    assert _run([*base, "--out", folder, "--overwrite"]) != 0
    assert _run([*base, "--out", model, "--overwrite"]) != 0
    assert snapshot(folder) == before


def test_a_copy_of_the_input_elsewhere_is_replaced_only_with_overwrite(world, tmp_path):
    """The fault-injection case: the output is a byte-identical copy of the input star."""
    star = world["data"] / "particles.star"
    copy = tmp_path / "copy.star"
    shutil.copyfile(star, copy)
    before = copy.read_bytes()
    assert _run(["convert", star, "--star-out", copy]) != 0
    assert copy.read_bytes() == before
    assert _run(["select", world["run"], "--indices", _rows_file(world), "--out", copy]) != 0
    assert copy.read_bytes() == before
    assert _run(["convert", star, "--star-out", copy, "--overwrite"]) == 0  # another file: allowed
    assert star.read_bytes() == before and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- (d)
@pytest.mark.parametrize("name", list(CASES))
def test_a_failure_while_writing_keeps_the_old_output(name, world, monkeypatch):
    case = CASES[name]
    out = _out(world, name, "d")
    old = _plant_old(case, out)
    fail_on_call(monkeypatch, case.break_target, case.break_call)
    assert _run([*case.argv(world, out), "--overwrite"]) == 1  # one line ("no space left"), no traceback
    assert snapshot(out) == old
    assert leftovers(out.parent) == []
    assert leftovers(world["run"]) == [] and leftovers(world["data"]) == []


def test_multi_file_outputs_appear_together_or_not_at_all(world, monkeypatch, tmp_path):
    """backproject writes five files, convert three, fsc two: a failure after the first keeps every old one."""
    out = tmp_path / "map.mrc"
    names = ["map.mrc", "map_half1.mrc", "map_half2.mrc", "map_fsc.json", "map_fsc.png"]
    for i, n in enumerate(names):
        (tmp_path / n).write_bytes(f"old {i}".encode())
    before = snapshot(tmp_path)
    fail_on_call(monkeypatch, "cryohet.workflows.backproject.write_volume", 2)
    assert _run(["backproject", world["data"] / "particles.star", "--out", out, "--overwrite"]) == 1
    assert snapshot(tmp_path) == before

    monkeypatch.undo()
    outs = [tmp_path / "poses.pkl", tmp_path / "ctf.pkl", tmp_path / "p.star"]
    for o in outs:
        o.write_bytes(b"old")
    before = snapshot(tmp_path)
    fail_on_call(monkeypatch, "cryohet.io.particles.write_ctf_pkl")
    argv = ["convert", world["data"] / "particles.star", "--poses-out", outs[0], "--ctf-out", outs[1]]
    assert _run([*argv, "--star-out", outs[2], "--overwrite"]) == 1  # one line ("no space left"), no traceback
    assert snapshot(tmp_path) == before
    monkeypatch.undo()
    # one existing output refuses the whole command: nothing else is written either
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "ctf.pkl").write_bytes(b"keep")
    fresh = [tmp_path / "fresh" / n for n in ("poses.pkl", "ctf.pkl", "p.star")]
    argv = ["convert", world["data"] / "particles.star", "--poses-out", fresh[0], "--ctf-out", fresh[1]]
    assert _run([*argv, "--star-out", fresh[2]]) != 0
    assert snapshot(tmp_path / "fresh") == {"ctf.pkl": b"keep"}
    assert leftovers(tmp_path) == []


def test_analyze_rerun_replaces_the_whole_folder_and_never_the_run(world):
    from cryohet.io.mrc import write_volume

    run = world["run"]
    _run(["analyze", run, "--k", "2", "--pcs", "0", "--no-umap", "--no-report", "--overwrite"])
    analysis = run / "analyze"
    write_volume(analysis / "kmeans2" / "vol_009.mrc", np.zeros((4, 4, 4), np.float32), 1.0)  # stale map
    run_files = {k: v for k, v in snapshot(run).items() if not k.startswith("analyze/") and k != "run.log"}
    assert _run(["analyze", run, "--k", "2", "--pcs", "0", "--no-umap", "--no-report"]) != 0
    assert (analysis / "kmeans2" / "vol_009.mrc").exists()
    assert _run(["analyze", run, "--k", "2", "--pcs", "0", "--no-umap", "--no-report", "--overwrite"]) == 0
    assert not (analysis / "kmeans2" / "vol_009.mrc").exists() and (analysis / "kmeans2" / "vol_000.mrc").exists()
    after = {k: v for k, v in snapshot(run).items() if not k.startswith("analyze/") and k != "run.log"}
    assert after == run_files and leftovers(run) == []


# --------------------------------------------------------------------------- the helpers
def test_check_output_rules(tmp_path):
    inp = tmp_path / "in.star"
    inp.write_text("x")
    with pytest.raises(InputError):
        check_output(inp, [inp], overwrite=True)
    link = tmp_path / "link.star"
    link.symlink_to(inp)
    with pytest.raises(InputError):
        check_output(link, [inp], overwrite=True)  # a link to the input
    hard = tmp_path / "hard.star"
    os.link(inp, hard)
    with pytest.raises(InputError):
        check_output(hard, [inp], overwrite=True)  # a hard link to it
    with pytest.raises(InputError):
        check_output(tmp_path / "d" / ".." / "in.star", [inp], overwrite=True)
    other = tmp_path / "other.star"
    other.write_text("x")
    with pytest.raises(InputError):
        check_output(other, [inp])
    assert check_output(other, [inp], overwrite=True) == other
    with pytest.raises(InputError):
        check_output(tmp_path, [], overwrite=True)  # a folder where a file goes
    with pytest.raises(InputError):
        check_output(other, [], overwrite=True, folder=True)  # a file where a folder goes
    with pytest.raises(InputError):
        check_output(tmp_path, [inp], overwrite=True, folder=True)  # holds the input
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_output(empty, [inp], folder=True) == empty
    assert check_output(tmp_path / "new", [inp], folder=True) == tmp_path / "new"


def test_atomic_writers_clean_up_after_a_failure(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half")
        raise RuntimeError("boom")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        assert tmp.suffix == ".json" and tmp.parent == tmp_path
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    with atomic_write(target) as fh:
        fh.write("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_staged_files_and_folder(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    with pytest.raises(RuntimeError), staged_files([a, b]) as (ta, tb):
        ta.write_text("new a")
        raise RuntimeError
    assert a.read_text() == "old a" and not b.exists()
    with staged_files([a, b]) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]

    folder = tmp_path / "out"
    old = plant_old_folder(folder)
    with pytest.raises(InputError), staged_folder(folder):
        pass  # not empty, no overwrite: refused before anything is written
    with pytest.raises(RuntimeError), staged_folder(folder, overwrite=True) as work:
        assert work.parent == tmp_path and work.name.startswith(".out.tmp-")
        (work / "new.txt").write_text("new")
        raise RuntimeError
    assert snapshot(folder) == old
    with staged_folder(folder, overwrite=True) as work:
        (work / "new.txt").write_text("new")
    assert snapshot(folder) == {"new.txt": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "out"]


def test_staged_folder_puts_the_old_folder_back_when_the_swap_fails(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    old = plant_old_folder(folder)
    real_rename = os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".out.tmp-"):
            raise OSError(errno.EXDEV, "cannot move the new folder in (injected)")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="injected"), staged_folder(folder, overwrite=True) as work:
        (work / "new.txt").write_text("new")
    assert snapshot(folder) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
