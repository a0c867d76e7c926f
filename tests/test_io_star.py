"""RELION STAR reading/writing: fixtures other programs wrote, and round trips."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from cryohet.errors import InputError
from cryohet.geometry.rotations import euler_relion_to_matrix, random_rotations, rotation_angle_deg
from cryohet.io.cryodrgn import read_ctf_pkl
from cryohet.io.mrc import write_stack
from cryohet.io.particles import load_particles
from cryohet.io.safe_pickle import load_pickle
from cryohet.io.star import read_star, read_star_tables, write_star

pytestmark = pytest.mark.filterwarnings("ignore:.*non-standard MRC header:UserWarning")


def _assert_same_poses(a, b):
    assert rotation_angle_deg(a.rotations, b.rotations).max() < 1e-3  # degrees
    np.testing.assert_allclose(a.rotations, b.rotations, atol=1e-5)
    np.testing.assert_allclose(a.shifts_A, b.shifts_A, atol=1e-4)


def _assert_same_ctf(a, b, atol=1e-3):
    np.testing.assert_allclose(a.ctf.as_array(), b.ctf.as_array(), atol=atol, rtol=1e-7)


def _write_30_star(path: Path, rows: list[dict]) -> Path:
    starfile.write(pd.DataFrame(rows), path, overwrite=True)
    return path


# ------------------------------------------------------------------ fixtures
def test_relion31_fixture(shared_fixtures):
    meta = load_particles(shared_fixtures / "relion31.star", stack_check="skip")
    assert len(meta) == 5 and meta.box == 256
    np.testing.assert_allclose(meta.apix, 2.806)
    df = starfile.read(shared_fixtures / "relion31.star")["particles"]
    np.testing.assert_allclose(meta.ctf.defocus_u_A, df["rlnDefocusU"])
    np.testing.assert_allclose(meta.ctf.defocus_angle_deg, df["rlnDefocusAngle"])
    np.testing.assert_allclose(meta.ctf.voltage_kV, 300.0)
    np.testing.assert_allclose(meta.ctf.cs_mm, 0.01)
    np.testing.assert_allclose(meta.shifts_A, df[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy())
    A = euler_relion_to_matrix(df[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy())
    np.testing.assert_allclose(meta.rotations, A)
    np.testing.assert_array_equal(meta.image_index, np.arange(5))  # 000001@ -> 0
    assert meta.image_files == [(shared_fixtures / "relion31.mrcs").resolve()]
    # block order does not matter (v2 has data_particles before data_optics)
    v2 = load_particles(shared_fixtures / "relion31.v2.star", stack_check="skip")
    _assert_same_poses(meta, v2)
    _assert_same_ctf(meta, v2, atol=0)


def test_six_optics_groups_per_group_values(shared_fixtures):
    meta = read_star(shared_fixtures / "relion31.6opticsgroups.star")
    tables = starfile.read(shared_fixtures / "relion31.6opticsgroups.star")
    optics = tables["optics"].set_index("rlnOpticsGroup")
    g = tables["particles"]["rlnOpticsGroup"].to_numpy()
    assert len(meta) == 139 and meta.box == 196
    np.testing.assert_array_equal(meta.optics_group, g)
    np.testing.assert_allclose(meta.apix, optics.loc[g, "rlnImagePixelSize"].to_numpy())
    np.testing.assert_allclose(meta.ctf.cs_mm, optics.loc[g, "rlnSphericalAberration"].to_numpy())
    assert set(np.unique(meta.apix)) == {1.24, 1.25}  # not rlnMicrographPixelSize
    assert (meta.ctf.cs_mm[g == 4] == 2.6).all() and (meta.ctf.cs_mm[g != 4] == 2.7).all()
    with pytest.raises(InputError, match="different pixel sizes"):
        _ = meta.pixel_size


def test_relion5_fixture(shared_fixtures):
    meta = read_star(shared_fixtures / "relion5.star")
    assert len(meta) == 17 and meta.box == 448
    np.testing.assert_allclose(meta.apix, 0.89)
    np.testing.assert_allclose(meta.ctf.voltage_kV, 100.0)
    assert [p.name for p in meta.image_files] == ["toy_images_a.mrcs", "toy_images_b.mrcs"]
    assert meta.image_index[:3].tolist() == [0, 1, 2]
    assert meta.file_index[:3].tolist() == [0, 1, 0]
    assert meta.has_poses


def test_relion30_fixture_without_optics(shared_fixtures):
    meta = load_particles(shared_fixtures / "empiar_10076_7.star")
    assert meta.extras["star_version"] == "3.0"
    np.testing.assert_allclose(meta.apix, 5.0 * 1e4 / 38168)  # detector µm / magnification
    assert meta.box == 320  # from the stack header (no rlnImageSize)
    assert not meta.has_poses
    np.testing.assert_allclose(meta.ctf.defocus_u_A[:2], [15301.1, 15303.0])
    np.testing.assert_allclose(meta.ctf.amp_contrast, 0.07)
    assert meta.image_files[0].name == "empiar_10076_7.mrc"


def test_toy_ctf_equals_cryodrgn_pkl(shared_fixtures):
    with pytest.raises(InputError, match="no pixel size"):
        read_star(shared_fixtures / "toy_projections.star")
    meta = read_star(shared_fixtures / "toy_projections.star", apix=1.0)
    ref_ctf, ref_box, ref_apix = read_ctf_pkl(shared_fixtures / "test_ctf.pkl")
    assert meta.box == 30 and (ref_box == 30).all()
    np.testing.assert_allclose(meta.ctf.to_cryodrgn(meta.box, meta.apix), load_pickle(shared_fixtures / "test_ctf.pkl"))
    np.testing.assert_allclose(meta.ctf.phase_shift_deg, 90.0)


def test_nonstandard_header_warns_not_fails(shared_fixtures):
    with pytest.warns(UserWarning, match="non-standard MRC header"):
        meta = load_particles(shared_fixtures / "toy_projections.star", apix=1.0)
    assert len(meta) == 1000


def test_header_pixel_size_disagreement_warns_and_metadata_wins(shared_fixtures):
    with pytest.warns(UserWarning, match="header pixel size 1 Å differs from 2.806"):
        meta = load_particles(shared_fixtures / "relion31.star")
    np.testing.assert_allclose(meta.apix, 2.806)


# ------------------------------------------------------------------ round trips
def test_star_round_trip_fixture(shared_fixtures, tmp_path):
    meta = load_particles(shared_fixtures / "relion31.6opticsgroups.star", stack_check="skip")
    out = write_star(tmp_path / "out.star", meta)
    back = read_star(out)
    _assert_same_poses(meta, back)
    _assert_same_ctf(meta, back)
    np.testing.assert_allclose(back.apix, meta.apix)
    np.testing.assert_array_equal(back.optics_group, meta.optics_group)
    assert [p.name for p in back.image_files] == [p.name for p in meta.image_files]
    np.testing.assert_array_equal(back.image_index, meta.image_index)
    # the original optics table (beam tilt, Zernikes...) and extra columns are kept
    tables = starfile.read(out)
    assert "rlnEvenZernike" in tables["optics"].columns
    orig = starfile.read(shared_fixtures / "relion31.6opticsgroups.star")["particles"]
    for col in ("rlnClassNumber", "rlnRandomSubset", "rlnMicrographName", "rlnCoordinateX"):
        assert tables["particles"][col].tolist() == orig[col].tolist()


def test_write_subset_keeps_columns_and_indices(shared_fixtures, tmp_path):
    meta = load_particles(shared_fixtures / "relion31.star", stack_check="skip")
    sub = meta.subset([4, 1])
    out = write_star(tmp_path / "sub" / "sub.star", sub)
    text = out.read_text()
    assert "data_optics" in text and "# version 30001" in text
    tables = starfile.read(out)
    parts = tables["particles"]
    assert parts["rlnImageName"].str.startswith("000005@").iloc[0]
    assert parts["rlnImageName"].str.startswith("000002@").iloc[1]
    assert parts["rlnNrOfSignificantSamples"].tolist() == [59, 254]
    assert parts["rlnRandomSubset"].tolist() == [1, 1]
    assert tables["optics"]["rlnImageSize"].tolist() == [256]
    assert tables["optics"]["rlnImageDimensionality"].tolist() == [2]
    with pytest.warns(UserWarning, match="header pixel size"):
        back = load_particles(out)  # the absolute stack path still resolves
    _assert_same_poses(sub, back)


def test_synthetic_round_trip_relative_paths(tmp_path):
    from cryohet.data.synthetic import write_synthetic_particles

    star, meta = write_synthetic_particles(tmp_path, n=30, box=8, apix=[1.5, 2.0], n_stacks=3)
    names = starfile.read(star)["particles"]["rlnImageName"]
    assert names.iloc[0] == "000001@stack_0.mrcs"  # relative to the star's folder
    back = load_particles(star)
    _assert_same_poses(meta, back)
    _assert_same_ctf(meta, back)
    np.testing.assert_allclose(back.apix, meta.apix)
    assert len(back.image_files) == 3
    np.testing.assert_array_equal(back.file_index, meta.file_index)
    np.testing.assert_array_equal(back.image_index, meta.image_index)


def test_per_particle_values_override_optics(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.zeros((2, 4, 4), np.float32), 1.0)
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["g"],
            "rlnVoltage": [300.0],
            "rlnSphericalAberration": [2.7],
            "rlnAmplitudeContrast": [0.1],
            "rlnImagePixelSize": [1.5],
            "rlnImageSize": [4],
            "rlnImageDimensionality": [2],
        }
    )
    parts = pd.DataFrame(
        {
            "rlnImageName": ["1@s.mrcs", "2@s.mrcs"],
            "rlnOpticsGroup": [1, 1],
            "rlnDefocusU": [1e4, 2e4],
            "rlnDefocusV": [1e4, 2e4],
            "rlnDefocusAngle": [0.0, 0.0],
            "rlnVoltage": [200.0, 200.0],
        }
    )
    starfile.write({"optics": optics, "particles": parts}, tmp_path / "p.star")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = load_particles(tmp_path / "p.star")
    np.testing.assert_allclose(meta.ctf.voltage_kV, 200.0)
    np.testing.assert_allclose(meta.ctf.cs_mm, 2.7)
    np.testing.assert_allclose(meta.apix, 1.5)


def test_relion30_origins_in_pixels_and_unknown_poses(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.zeros((3, 4, 4), np.float32), 2.0)
    base = {
        "rlnDefocusU": 1e4,
        "rlnDefocusV": 1e4,
        "rlnVoltage": 300,
        "rlnSphericalAberration": 2.7,
        "rlnAmplitudeContrast": 0.1,
        "rlnMagnification": 10000,
        "rlnDetectorPixelSize": 2.0,
    }
    rows = [
        dict(
            base,
            rlnImageName=f"{i + 1}@s.mrcs",
            rlnAngleRot=10.0 * i,
            rlnAngleTilt=20.0,
            rlnAnglePsi=30.0,
            rlnOriginX=1.5 * i,
            rlnOriginY=-1.0,
        )
        for i in range(3)
    ]
    meta = load_particles(_write_30_star(tmp_path / "a.star", rows))
    np.testing.assert_allclose(meta.apix, 2.0)
    np.testing.assert_allclose(meta.shifts_A, [[0, -2], [3, -2], [6, -2]])  # pixels x 2 Å
    rows[1]["rlnAnglePsi"] = -999
    with pytest.warns(UserWarning, match="-999"):
        meta = load_particles(_write_30_star(tmp_path / "b.star", rows))
    assert not meta.has_poses
    for r in rows:
        r["rlnAngleRot"] = r["rlnAngleTilt"] = r["rlnAnglePsi"] = -999
    assert not load_particles(_write_30_star(tmp_path / "c.star", rows)).has_poses


def test_datadir_resolution(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_stack(data / "s.mrcs", np.zeros((2, 4, 4), np.float32), 1.0)
    rows = [{"rlnImageName": f"{i + 1}@Extract/job1/s.mrcs", "rlnImagePixelSize": 1.0} for i in range(2)]
    star = _write_30_star(tmp_path / "p.star", rows)
    with pytest.raises(InputError, match="stack file not found"):
        load_particles(star)
    meta = load_particles(star, datadir=data)  # datadir/basename
    assert meta.image_files == [(data / "s.mrcs").resolve()]
    (data / "Extract" / "job1").mkdir(parents=True)
    write_stack(data / "Extract" / "job1" / "s.mrcs", np.ones((2, 4, 4), np.float32), 1.0)
    meta = load_particles(star, datadir=data)  # datadir/path wins over datadir/basename
    assert meta.image_files == [(data / "Extract" / "job1" / "s.mrcs").resolve()]


def test_star_missing_columns_and_bad_names(tmp_path):
    with pytest.raises(InputError, match="missing required column rlnImageName"):
        read_star(_write_30_star(tmp_path / "a.star", [{"rlnDefocusU": 1.0, "rlnImagePixelSize": 1.0}]))
    with pytest.raises(InputError, match="rlnVoltage"):
        read_star(
            _write_30_star(
                tmp_path / "b.star",
                [{"rlnImageName": "1@s.mrcs", "rlnDefocusU": 1.0, "rlnDefocusV": 1.0, "rlnImagePixelSize": 1.0}],
            )
        )
    with pytest.raises(InputError, match="start at 1"):
        read_star(_write_30_star(tmp_path / "c.star", [{"rlnImageName": "0@s.mrcs", "rlnImagePixelSize": 1.0}]))
    with pytest.raises(InputError, match="NNN@stack"):
        read_star(_write_30_star(tmp_path / "d.star", [{"rlnImageName": "x@s.mrcs", "rlnImagePixelSize": 1.0}]))
    (tmp_path / "e.star").write_text("this is not a star file\n")
    with pytest.raises(InputError, match="e.star"):
        read_star_tables(tmp_path / "e.star")


def test_write_star_random_rotations_round_trip(tmp_path):
    from cryohet.data.synthetic import synthetic_metadata

    meta = synthetic_metadata(500, 32, 1.7, [tmp_path / "x.mrcs"], seed=3)
    meta.rotations[:5] = random_rotations(5, 9)
    meta.rotations[0] = np.eye(3)  # gimbal lock: tilt = 0
    out = write_star(tmp_path / "r.star", meta)
    back = read_star(out)
    _assert_same_poses(meta, back)
