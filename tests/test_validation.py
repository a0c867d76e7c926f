"""Validated inputs, configs and artefacts: what a fault-injection trial broke ends in one
``error:`` line (or one warning line), never in a traceback or a silent wrong result.

* the physics of particle metadata (STAR, cryoSPARC ``.cs``, cryoDRGN ``ctf.pkl``);
* edited or damaged run directories (resolved geometry, latents, poses, extras, weights,
  method version for reading and for ``--resume``);
* odd-box data, ``--out`` naming an input or an existing file, a non-UTF-8 training log.

Runs are trained once per module on the pinned 160-particle set (box 24, 14 Å/px).
"""

from __future__ import annotations

import logging
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import starfile
import yaml

from cryohet.cli.app import main
from cryohet.errors import CryohetError, InputError, RunDirError
from cryohet.io.cryodrgn import read_ctf_pkl
from cryohet.io.mrc import open_stack, write_stack
from cryohet.io.particles import load_particles
from cryohet.io.source import ParticleSource
from cryohet.io.star import read_star
from cryohet.methods import base
from cryohet.methods.base import load_run
from cryohet.methods.baselines import HomogeneousConfig, PCAConfig, train_homogeneous, train_pca
from cryohet.training.rundir import RunDir

DATA = Path(__file__).resolve().parent / "data" / "pinned" / "data"
N = 160


# ----------------------------------------------------------------------------- helpers
def _cli(capsys, *args) -> tuple[int, str]:
    """Exit code and stderr of ``cryohet ARGS``; a traceback fails the test (main re-raises)."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _one_error(code: int, err: str) -> str:
    assert code == 1, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and lines == err.strip().splitlines()[-1:], err
    return lines[0]


@pytest.fixture
def log_lines():
    """Messages logged on the ``cryohet`` logger during the test."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _Keep(level=logging.WARNING)
    logger = logging.getLogger("cryohet")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.fixture
def data(tmp_path) -> Path:
    """A private copy of the pinned data set (particles.star + particles.mrcs + gt/)."""
    return Path(shutil.copytree(DATA, tmp_path / "data"))


def _edit_star(star: Path, out: Path, **columns) -> Path:
    """``star`` with particle (or optics) columns replaced by ``columns`` (a value or a function of the column)."""
    tables = starfile.read(star, always_dict=True)
    for name, value in columns.items():
        table = "optics" if name in tables["optics"].columns else "particles"
        df = tables[table]
        df[name] = value(df[name]) if callable(value) else value
    starfile.write(tables, out, overwrite=True)
    return out


def _edit_config(run: Path, edit) -> None:
    raw = yaml.safe_load((run / "config.yaml").read_text())
    edit(raw)
    (run / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A homogeneous, a pca and a short CryoSPIRE run of the pinned set."""
    from cryohet.methods.spire import SpireConfig, train_spire

    root = tmp_path_factory.mktemp("runs")
    src = ParticleSource(path=DATA / "particles.star")
    spire = SpireConfig(
        data=src,
        out=str(root / "spire"),
        stage_a={"epochs": 1, "gaussians": 32},
        stage_b={"epochs": 1, "gaussians": 64, "hidden": 32},
        latent_search=0,
        init_regions=0,
    )
    return {
        "homogeneous": train_homogeneous(HomogeneousConfig(data=src, out=str(root / "hom"))),
        "pca": train_pca(PCAConfig(data=src, out=str(root / "pca"), components=2, iterations=2)),
        "spire": train_spire(spire),
    }


@pytest.fixture
def copy_run(runs, tmp_path):
    def make(method: str, name: str | None = None) -> Path:
        return Path(shutil.copytree(runs[method], tmp_path / (name or f"copy_{method}")))

    return make


def _z_file(tmp_path: Path, zdim: int) -> Path:
    np.save(tmp_path / "z.npy", np.zeros((1, zdim), np.float32))
    return tmp_path / "z.npy"


# ----------------------------------------------------------------------------- 1. physics of the input
def test_sign_flipped_defocus_is_an_error_that_names_file_and_column(data, tmp_path, capsys):
    star = _edit_star(
        data / "particles.star", data / "flipped.star", rlnDefocusU=lambda c: -c, rlnDefocusV=lambda c: -c
    )
    with pytest.raises(InputError, match="rlnDefocusU") as err:
        read_star(star)
    assert "flipped.star" in str(err.value) and "160 of 160" in str(err.value)
    out = tmp_path / "run"
    line = _one_error(*_cli(capsys, "train", "homogeneous", star, "--out", out))
    assert "rlnDefocusU" in line
    assert not (out / "model.pt").exists()


@pytest.mark.parametrize(
    "column, value",
    [
        ("rlnDefocusV", 0.0),  # zero without a phase plate
        ("rlnVoltage", 0.0),
        ("rlnSphericalAberration", -2.7),
        ("rlnAmplitudeContrast", 1.0),
        ("rlnAmplitudeContrast", -0.1),
        ("rlnImagePixelSize", 0.0),
        ("rlnImagePixelSize", -1.0),
        ("rlnDefocusU", np.nan),
    ],
)
def test_impossible_optics_are_errors(data, column, value):
    star = _edit_star(data / "particles.star", data / "bad.star", **{column: value})
    with pytest.raises(InputError, match=column):
        load_particles(star)


def test_in_focus_phase_plate_data_is_accepted(data):
    star = _edit_star(data / "particles.star", data / "vpp.star", rlnDefocusU=0.0, rlnDefocusV=0.0, rlnPhaseShift=90.0)
    assert len(load_particles(star)) == N


def test_unusual_values_warn_once_on_the_log_not_as_python_warnings(data, log_lines):
    # defocus in µm instead of Å, a 1 MV voltage, a large amplitude contrast: possible, but look like unit slips
    star = _edit_star(
        data / "particles.star",
        data / "odd_units.star",
        rlnDefocusU=lambda c: c / 1e4,
        rlnDefocusV=lambda c: c / 1e4,
        rlnVoltage=1000.0,
        rlnAmplitudeContrast=0.7,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw UserWarning
        meta = load_particles(star)
    assert len(meta) == N
    mine = [r.getMessage() for r in log_lines if "odd_units.star" in r.getMessage()]
    assert len(mine) == 3, mine  # defocus (U and V: one line), voltage, amplitude contrast
    assert all("\n" not in m for m in mine)
    load_particles(star)  # read again: no more lines
    assert len([r for r in log_lines if "odd_units.star" in r.getMessage()]) == 3


def test_ctf_pkl_and_cs_physics_are_checked(data, tmp_path):
    meta = load_particles(DATA / "particles.star")
    rows = meta.ctf.to_cryodrgn(meta.box, meta.apix)
    bad = rows.copy()
    bad[:, 2:4] *= -1  # flipped defocus
    with open(tmp_path / "ctf.pkl", "wb") as fh:
        pickle.dump(bad, fh)
    with pytest.raises(InputError, match="ctf.pkl.*column 2"):
        read_ctf_pkl(tmp_path / "ctf.pkl")
    with pytest.raises(InputError, match="ctf.pkl.*column 2"):
        load_particles(data / "particles.mrcs", ctf=tmp_path / "ctf.pkl")
    # cryoSPARC: a negative amplitude contrast
    dtype = [
        ("uid", "<u8"),
        ("blob/path", "S32"),
        ("blob/idx", "<u4"),
        ("blob/psize_A", "<f4"),
        ("ctf/df1_A", "<f4"),
        ("ctf/df2_A", "<f4"),
        ("ctf/accel_kv", "<f4"),
        ("ctf/cs_mm", "<f4"),
        ("ctf/amp_contrast", "<f4"),
    ]
    arr = np.zeros(4, dtype=dtype)
    arr["uid"], arr["blob/path"], arr["blob/idx"] = np.arange(4), b"particles.mrcs", np.arange(4)
    arr["blob/psize_A"], arr["ctf/df1_A"], arr["ctf/df2_A"] = 14.0, 15000.0, 15000.0
    arr["ctf/accel_kv"], arr["ctf/cs_mm"], arr["ctf/amp_contrast"] = 300.0, 2.7, -0.1
    with open(data / "p.cs", "wb") as fh:
        np.save(fh, arr)
    with pytest.raises(InputError, match="p.cs.*ctf/amp_contrast"):
        load_particles(data / "p.cs", stack_check="skip")
    arr["ctf/amp_contrast"] = 0.1
    with open(data / "p.cs", "wb") as fh:
        np.save(fh, arr)
    assert len(load_particles(data / "p.cs", stack_check="skip")) == 4


# ----------------------------------------------------------------------------- 2. edited or damaged run directories
@pytest.mark.parametrize("apix", [-8, 0, "x"])
def test_resolved_pixel_size_must_be_positive(copy_run, tmp_path, capsys, apix):
    run = copy_run("homogeneous")
    _edit_config(run, lambda raw: raw["resolved"].update(apix=apix))
    with pytest.raises(RunDirError):
        load_run(run)
    out = tmp_path / "vols"
    _one_error(*_cli(capsys, "volumes", run, "--z", _z_file(tmp_path, 1), "--out", out))
    assert not (out / "vol_000.mrc").exists()
    _one_error(*_cli(capsys, "analyze", run, "--no-umap", "--out", tmp_path / "an"))
    assert not (tmp_path / "an" / "report.html").exists()


@pytest.mark.parametrize("box", [0, -24, 23, 24.5, None])
def test_resolved_box_must_be_positive_and_even(copy_run, box):
    run = copy_run("pca")
    _edit_config(run, lambda raw: raw["resolved"].update(box=box))
    with pytest.raises(RunDirError):
        load_run(run)


def test_spire_box_zero_is_one_line(copy_run, tmp_path, capsys):
    run = copy_run("spire")
    _edit_config(run, lambda raw: raw.update(box=0))
    _one_error(*_cli(capsys, "volumes", run, "--z", _z_file(tmp_path, 4), "--out", tmp_path / "vols"))
    assert not (tmp_path / "vols" / "vol_000.mrc").exists()


def test_latents_must_match_the_particle_count(copy_run, tmp_path, capsys):
    run = copy_run("spire")
    np.save(run / "latents.npy", np.zeros((N - 60, 4), np.float32))
    with pytest.raises(RunDirError, match="latents.npy"):
        load_run(run).latents  # noqa: B018
    _one_error(*_cli(capsys, "analyze", run, "--no-umap", "--no-volumes", "--out", tmp_path / "an"))
    assert not (tmp_path / "an" / "report.html").exists()


@pytest.mark.parametrize(
    "latents",
    [np.zeros(N, np.float32), np.zeros((N, 1), np.int64), np.full((N, 1), np.nan, np.float32), np.zeros((N, 3))],
)
def test_latents_must_be_finite_2d_floats_of_the_model_size(copy_run, latents):
    run = copy_run("homogeneous")  # zdim 1 (one map)
    np.save(run / "latents.npy", latents)
    with pytest.raises(RunDirError, match="latents.npy"):
        load_run(run).latents  # noqa: B018


@pytest.mark.parametrize("version", [99, 0, "two", True])
def test_method_version_is_checked_alike_for_reading_and_resume(copy_run, capsys, version):
    run = copy_run("homogeneous")
    _edit_config(run, lambda raw: raw.update(method_version=version))
    with pytest.raises(RunDirError):
        load_run(run)
    with pytest.raises(RunDirError):
        base.check_run_method(run)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    _one_error(*_cli(capsys, "train", "homogeneous", DATA / "particles.star", "--out", run, "--resume"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


def test_spire_resume_refuses_a_newer_version_and_another_method(copy_run, runs, capsys):
    run = copy_run("spire")
    _edit_config(run, lambda raw: raw.update(method_version=99))
    config = (run / "config.yaml").read_text()
    _one_error(*_cli(capsys, "train", "spire", DATA / "particles.star", "--out", run, "--resume"))
    assert (run / "config.yaml").read_text() == config
    other = copy_run("homogeneous")
    line = _one_error(*_cli(capsys, "train", "spire", DATA / "particles.star", "--out", other, "--resume"))
    assert "homogeneous" in line


def test_damaged_poses_are_one_line(copy_run, tmp_path, capsys):
    run = copy_run("homogeneous")
    good = (run / "poses.npz").read_bytes()
    (run / "poses.npz").write_bytes(good[:300])
    with pytest.raises(RunDirError, match="poses.npz"):
        load_run(run).poses()
    _one_error(*_cli(capsys, "evaluate", run, "--gt", DATA, "--out", tmp_path / "ev"))
    # readable, but of the wrong shape or count
    np.savez(run / "poses.npz", rotations=np.zeros((N, 3, 3)), shifts_A=np.zeros((N, 3)))
    with pytest.raises(RunDirError, match="poses.npz"):
        load_run(run).poses()
    np.savez(run / "poses.npz", rotations=np.zeros((N - 1, 3, 3)), shifts_A=np.zeros((N - 1, 2)))
    with pytest.raises(RunDirError, match="poses.npz"):
        load_run(run).poses()


def test_damaged_extras_are_one_line(copy_run, tmp_path, capsys):
    run = copy_run("spire")
    motion = run / "extras" / "part_motion.npz"
    motion.write_bytes(motion.read_bytes()[:300])
    with pytest.raises(RunDirError, match="part_motion.npz"):
        RunDir(run).load_extra("part_motion")
    _one_error(*_cli(capsys, "analyze", run, "--no-umap", "--no-volumes", "--out", tmp_path / "an"))


@pytest.mark.parametrize("edit", ["zdim", "hidden"])
def test_weights_that_do_not_fit_the_config_are_one_line(copy_run, tmp_path, capsys, edit):
    run = copy_run("spire")
    if edit == "zdim":
        _edit_config(run, lambda raw: raw.update(zdim=3))
    else:
        _edit_config(run, lambda raw: raw["stage_b"].update(hidden=16))
    line = _one_error(*_cli(capsys, "volumes", run, "--z", _z_file(tmp_path, 3), "--out", tmp_path / "vols"))
    assert "model.pt" in line


def test_pca_weights_must_fit_box_and_components(copy_run):
    run = copy_run("pca")
    _edit_config(run, lambda raw: raw["resolved"].update(box=16))
    with pytest.raises(RunDirError, match="model.pt"):
        load_run(run)
    run2 = copy_run("pca", "pca2")
    _edit_config(run2, lambda raw: raw.update(components=3))
    with pytest.raises(RunDirError, match="model.pt"):
        load_run(run2)


# ----------------------------------------------------------------------------- 3. one line instead of a traceback
def test_non_utf8_training_log(copy_run, tmp_path, capsys):
    run = copy_run("homogeneous")
    with open(run / "train_log.jsonl", "ab") as fh:
        fh.write(b'{"epoch": 1, "note": "\xff\xfe"}\n')
    with pytest.raises(RunDirError, match="train_log.jsonl"):
        RunDir(run).read_log()
    _one_error(*_cli(capsys, "analyze", run, "--no-umap", "--no-volumes", "--out", tmp_path / "an"))


@pytest.fixture
def odd_data(tmp_path) -> Path:
    """The pinned set cropped to 23 x 23 px images (an odd box)."""
    meta = load_particles(DATA / "particles.star")
    stack, _ = open_stack(meta.image_files[0])
    out = tmp_path / "odd"
    out.mkdir()
    write_stack(out / "particles.mrcs", np.asarray(stack)[:, :23, :23].astype(np.float32), 14.0)
    tables = starfile.read(DATA / "particles.star", always_dict=True)
    tables["optics"]["rlnImageSize"] = 23
    starfile.write(tables, out / "particles.star", overwrite=True)
    return out / "particles.star"


@pytest.mark.parametrize("command", ["homogeneous", "spire", "backproject"])
def test_odd_box_data_is_one_line(odd_data, tmp_path, capsys, command):
    out = tmp_path / ("map.mrc" if command == "backproject" else "run")
    args = ["backproject"] if command == "backproject" else ["train", command]
    line = _one_error(*_cli(capsys, *args, odd_data, "--out", out))
    assert "-D 22" in line
    assert not out.is_file() and not (out / "model.pt").exists()


def test_odd_box_data_reconstructs_when_cropped_to_an_even_box(odd_data, tmp_path, capsys):
    code, err = _cli(capsys, "backproject", odd_data, "--out", tmp_path / "map.mrc", "-D", "22")
    assert code == 0, err
    assert (tmp_path / "map.mrc").exists()


@pytest.mark.parametrize("command", ["homogeneous", "spire"])
def test_training_out_on_the_star_file_is_refused(data, capsys, command):
    star = data / "particles.star"
    before = star.read_bytes()
    _one_error(*_cli(capsys, "train", command, star, "--out", star))
    assert star.read_bytes() == before


def test_training_out_on_another_file_is_refused(data, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep")
    _one_error(*_cli(capsys, "train", "homogeneous", data / "particles.star", "--out", target))
    assert target.read_text() == "keep"


def test_backproject_out_on_the_star_file_is_refused(data, capsys):
    star = data / "particles.star"
    before = star.read_bytes()
    _one_error(*_cli(capsys, "backproject", star, "--out", star))
    assert star.read_bytes() == before


def test_volumes_out_on_an_existing_file(runs, tmp_path, capsys):
    target = tmp_path / "map.mrc"
    target.write_bytes(b"keep")
    _one_error(*_cli(capsys, "volumes", runs["homogeneous"], "--z", _z_file(tmp_path, 1), "--out", target))
    assert target.read_bytes() == b"keep"


def test_errors_are_cryohet_errors_with_one_line(copy_run):
    """The messages themselves are single lines (CryohetError joins lines; torch's are long)."""
    run = copy_run("spire")
    _edit_config(run, lambda raw: raw["stage_b"].update(hidden=16))
    with pytest.raises(CryohetError) as err:
        load_run(run)
    assert "\n" not in str(err.value) and len(str(err.value)) < 600


def test_cli_shows_python_warnings_as_one_log_line(data, tmp_path, capsys, log_lines):
    tables = starfile.read(data / "particles.star", always_dict=True)
    tables["particles"] = tables["particles"].drop(columns=["rlnAngleTilt"])
    starfile.write(tables, data / "no_tilt.star", overwrite=True)
    code, err = _cli(capsys, "backproject", data / "no_tilt.star", "--out", tmp_path / "map.mrc")
    assert "needs poses" in _one_error(code, err)
    assert [r.levelno for r in log_lines if "poses treated as unknown" in r.getMessage()] == [logging.WARNING]
    assert "UserWarning" not in err and "warnings.warn" not in err
