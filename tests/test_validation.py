"""Validated inputs: what a fault-injection trial broke ends in one ``error:`` line (or one
warning line), never in a traceback or a silent wrong result.

* the physics of particle metadata (STAR, cryoSPARC ``.cs``, cryoDRGN ``ctf.pkl``);
* Python warnings on the command line are one log line.
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

from cryohet.cli.app import main
from cryohet.errors import InputError
from cryohet.io.cryodrgn import read_ctf_pkl
from cryohet.io.particles import load_particles
from cryohet.io.star import read_star

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


def test_cli_shows_python_warnings_as_one_log_line(data, tmp_path, capsys, log_lines):
    tables = starfile.read(data / "particles.star", always_dict=True)
    tables["particles"] = tables["particles"].drop(columns=["rlnAngleTilt"])
    starfile.write(tables, data / "no_tilt.star", overwrite=True)
    code, err = _cli(capsys, "backproject", data / "no_tilt.star", "--out", tmp_path / "map.mrc")
    assert "needs poses" in _one_error(code, err)
    assert [r.levelno for r in log_lines if "poses treated as unknown" in r.getMessage()] == [logging.WARNING]
    assert "UserWarning" not in err and "warnings.warn" not in err
