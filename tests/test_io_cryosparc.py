"""cryoSPARC .cs reading, checked against cryoDRGN's conversion of the same file."""

from __future__ import annotations

import numpy as np
import pytest

from cryohet.errors import InputError
from cryohet.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle, random_rotations
from cryohet.io.cryodrgn import poses_to_cryodrgn
from cryohet.io.cryosparc import load_cs, merge_passthrough, read_cs, write_cs_subset
from cryohet.io.mrc import write_stack
from cryohet.io.particles import load_particles, save_converted
from cryohet.io.safe_pickle import load_pickle
from cryohet.io.star import read_star

CS = "cryosparc_P12_J24_001_particles.cs"


def test_cs_poses_and_ctf_equal_cryodrgn_conversion(shared_fixtures, tmp_path):
    meta = load_particles(shared_fixtures / CS, stack_check="skip")
    assert len(meta) == 2019 and meta.box == 180
    np.testing.assert_allclose(meta.apix, 2.95, rtol=1e-6)
    rot, trans = load_pickle(shared_fixtures / "pose.cs.pkl")
    ctf_ref = load_pickle(shared_fixtures / "ctf.cs.pkl")
    # through the writers, exactly as `cryohet convert` does
    save_converted(meta, poses_out=tmp_path / "poses.pkl", ctf_out=tmp_path / "ctf.pkl")
    our_rot, our_trans = load_pickle(tmp_path / "poses.pkl")
    assert our_rot.dtype == np.float32 and our_trans.dtype == np.float32
    np.testing.assert_allclose(our_rot, rot, atol=1e-5)
    np.testing.assert_allclose(our_trans, trans, atol=1e-6)
    ours = load_pickle(tmp_path / "ctf.pkl")
    assert ours.shape == (2019, 9) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ctf_ref, rtol=1e-6, atol=1e-5)


def test_cs_shift_sign_and_units(shared_fixtures):
    """alignments3D/shift is in pixels at alignments3D/psize_A, same sign as RELION's origin."""
    arr = load_cs(shared_fixtures / CS)
    meta = read_cs(shared_fixtures / CS)
    np.testing.assert_allclose(
        meta.shifts_A, arr["alignments3D/shift"] * arr["alignments3D/psize_A"][:, None], rtol=1e-6
    )
    np.testing.assert_allclose(meta.rotations, np.swapaxes(axis_angle_to_matrix(arr["alignments3D/pose"]), 1, 2))
    # blob/idx is 0-based; paths resolve under the project folder layout
    np.testing.assert_array_equal(meta.image_index, arr["blob/idx"])
    assert len(meta.image_files) == 50


def test_cs_alignment_pixel_size_differs_from_blob(shared_fixtures, tmp_path):
    arr = load_cs(shared_fixtures / CS)[:10].copy()
    arr["alignments3D/psize_A"] = 1.475  # refined at half the pixel size, then downsampled
    np.save(tmp_path / "x.cs", arr)
    (tmp_path / "x.cs.npy").rename(tmp_path / "x.cs")
    meta = read_cs(tmp_path / "x.cs")
    np.testing.assert_allclose(meta.shifts_A, arr["alignments3D/shift"] * 1.475, rtol=1e-6)
    np.testing.assert_allclose(meta.apix, 2.95, rtol=1e-6)


def test_empiar_cs_matches_star(shared_fixtures):
    cs = load_particles(shared_fixtures / "empiar_10076_7.cs")
    star = load_particles(shared_fixtures / "empiar_10076_7.star")
    np.testing.assert_allclose(cs.apix, star.apix, rtol=1e-6)
    np.testing.assert_allclose(cs.ctf.as_array(), star.ctf.as_array(), rtol=1e-6, atol=1e-4)
    assert cs.image_files == star.image_files
    np.testing.assert_array_equal(cs.image_index, star.image_index)
    assert not cs.has_poses


def _tiny_cs(tmp_path, n=6, name="p.cs", prefix=b">"):
    write_stack(tmp_path / "stack.mrcs", np.zeros((n, 8, 8), np.float32), 1.5)
    dt = [
        ("uid", "<u8"),
        ("blob/path", "S20"),
        ("blob/idx", "<u4"),
        ("blob/shape", "<u4", (2,)),
        ("blob/psize_A", "<f4"),
        ("alignments3D/pose", "<f4", (3,)),
        ("alignments3D/shift", "<f4", (2,)),
        ("alignments3D/psize_A", "<f4"),
    ]
    arr = np.zeros(n, dtype=dt)
    arr["uid"] = np.arange(100, 100 + n)[::-1]
    arr["blob/path"] = prefix + b"stack.mrcs"
    arr["blob/idx"] = np.arange(n)
    arr["blob/shape"] = 8
    arr["blob/psize_A"] = 1.5
    arr["alignments3D/pose"] = matrix_to_axis_angle(np.swapaxes(random_rotations(n, 1), 1, 2))
    arr["alignments3D/shift"] = np.arange(2 * n).reshape(n, 2) / 4
    arr["alignments3D/psize_A"] = 1.5
    with open(tmp_path / name, "wb") as fh:
        np.save(fh, arr)
    return tmp_path / name, arr


def test_passthrough_merge_on_uid(tmp_path):
    path, arr = _tiny_cs(tmp_path)
    pt = np.zeros(
        len(arr),
        dtype=[
            ("uid", "<u8"),
            ("ctf/df1_A", "<f4"),
            ("ctf/df2_A", "<f4"),
            ("ctf/accel_kv", "<f4"),
            ("ctf/cs_mm", "<f4"),
            ("ctf/amp_contrast", "<f4"),
            ("ctf/df_angle_rad", "<f4"),
            ("ctf/phase_shift_rad", "<f4"),
        ],
    )
    pt["uid"] = arr["uid"][::-1]  # different order: must be matched on uid
    pt["ctf/df1_A"] = 1000.0 + pt["uid"]
    pt["ctf/df2_A"] = 900.0 + pt["uid"]
    pt["ctf/accel_kv"], pt["ctf/cs_mm"], pt["ctf/amp_contrast"] = 300, 2.7, 0.1
    pt["ctf/df_angle_rad"], pt["ctf/phase_shift_rad"] = np.pi / 2, np.pi
    with open(tmp_path / "pt.cs", "wb") as fh:
        np.save(fh, pt)
    meta = load_particles(path, passthrough=tmp_path / "pt.cs")
    np.testing.assert_allclose(meta.ctf.defocus_u_A, 1000.0 + arr["uid"])
    np.testing.assert_allclose(meta.ctf.defocus_angle_deg, 90.0, rtol=1e-6)
    np.testing.assert_allclose(meta.ctf.phase_shift_deg, 180.0, rtol=1e-6)
    assert meta.image_files == [(tmp_path / "stack.mrcs").resolve()]  # leading '>' stripped
    with pytest.raises(InputError, match="lacks 1 of the 6 particle uids"):
        merge_passthrough(arr, pt[1:], tmp_path / "pt.cs")


def test_cs_to_star_round_trip(tmp_path):
    path, _ = _tiny_cs(tmp_path)
    meta = load_particles(path)
    save_converted(meta, star_out=tmp_path / "out.star")
    back = read_star(tmp_path / "out.star")
    np.testing.assert_allclose(back.rotations, meta.rotations, atol=1e-5)
    np.testing.assert_allclose(back.shifts_A, meta.shifts_A, atol=1e-4)
    np.testing.assert_allclose(back.apix, 1.5, rtol=1e-6)
    assert back.image_files == meta.image_files and back.box == 8


def test_fixture_cs_to_star_round_trip(shared_fixtures, tmp_path):
    meta = read_cs(shared_fixtures / CS)
    save_converted(meta, star_out=tmp_path / "out.star")
    back = read_star(tmp_path / "out.star")
    np.testing.assert_allclose(back.rotations, meta.rotations, atol=1e-5)
    np.testing.assert_allclose(back.shifts_A, meta.shifts_A, atol=1e-4)
    # .cs values are float32: written as float32's shortest text (37675.08, not 37675.07812),
    # they read back equal at float32 precision
    np.testing.assert_allclose(back.ctf.as_array(), meta.ctf.as_array(), rtol=6e-8, atol=1e-6)
    assert np.array_equal(back.ctf.as_array().astype(np.float32), meta.ctf.as_array().astype(np.float32))
    r1, t1 = poses_to_cryodrgn(back.rotations, back.shifts_A, back.box, back.apix)
    r0, t0 = load_pickle(shared_fixtures / "pose.cs.pkl")
    np.testing.assert_allclose(r1, r0, atol=1e-5)
    np.testing.assert_allclose(t1, t0, atol=1e-6)


def test_write_cs_subset(tmp_path):
    path, arr = _tiny_cs(tmp_path)
    out = write_cs_subset(tmp_path / "sel.cs", path, [4, 0, 2])
    sub = np.load(out)
    assert sub.dtype == arr.dtype
    np.testing.assert_array_equal(sub, arr[[4, 0, 2]])
    with pytest.raises(InputError, match="overwrite the input"):
        write_cs_subset(path, path, [0])
    with pytest.raises(InputError, match="out of range"):
        write_cs_subset(tmp_path / "bad.cs", path, [6])


def test_bad_cs_files(tmp_path):
    (tmp_path / "junk.cs").write_bytes(b"not numpy at all")
    with pytest.raises(InputError, match="junk.cs: not a readable cryoSPARC"):
        read_cs(tmp_path / "junk.cs")
    with open(tmp_path / "plain.cs", "wb") as fh:
        np.save(fh, np.zeros(3))
    with pytest.raises(InputError, match="named fields"):
        read_cs(tmp_path / "plain.cs")
    with open(tmp_path / "nopath.cs", "wb") as fh:
        np.save(fh, np.zeros(3, dtype=[("uid", "<u8"), ("blob/idx", "<u4")]))
    with pytest.raises(InputError, match="missing required field blob/path"):
        read_cs(tmp_path / "nopath.cs")
