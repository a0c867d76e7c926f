"""cryoDRGN pickles: exact layout, and pkl <-> star round trips."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cryohet.errors import InputError
from cryohet.geometry.rotations import random_rotations
from cryohet.io.cryodrgn import (
    poses_from_cryodrgn,
    poses_to_cryodrgn,
    read_ctf_pkl,
    read_ind_pkl,
    read_poses_pkl,
    write_ctf_pkl,
    write_ind_pkl,
    write_poses_pkl,
)
from cryohet.io.mrc import write_stack
from cryohet.io.particles import load_particles, save_converted
from cryohet.io.safe_pickle import load_pickle
from cryohet.io.star import read_star

pytestmark = pytest.mark.filterwarnings("ignore:.*non-standard MRC header:UserWarning")


def _stack_with_pkls(tmp_path, n=12, box=16, apix=2.5):
    write_stack(tmp_path / "s.mrcs", np.random.default_rng(0).standard_normal((n, box, box)).astype(np.float32), apix)
    rot = random_rotations(n, 4).astype(np.float32)
    trans = np.random.default_rng(1).uniform(-0.1, 0.1, (n, 2)).astype(np.float32)
    with open(tmp_path / "poses.pkl", "wb") as fh:
        pickle.dump((rot, trans), fh)
    ctf = np.zeros((n, 9), np.float32)
    ctf[:, 0], ctf[:, 1] = box, apix
    ctf[:, 2], ctf[:, 3], ctf[:, 4] = 15000.0, 14500.0, 33.0
    ctf[:, 5], ctf[:, 6], ctf[:, 7], ctf[:, 8] = 300.0, 2.7, 0.1, 0.0
    with open(tmp_path / "ctf.pkl", "wb") as fh:
        pickle.dump(ctf, fh)
    return rot, trans, ctf


def test_writer_layout_is_cryodrgns(tmp_path):
    A = random_rotations(5, 0)
    shifts = np.arange(10.0).reshape(5, 2)
    write_poses_pkl(tmp_path / "p.pkl", A, shifts, box=64, apix=2.0)
    with open(tmp_path / "p.pkl", "rb") as fh:
        obj = pickle.load(fh)  # plain pickle, as cryoDRGN/RECOVAR load it
    assert isinstance(obj, tuple) and len(obj) == 2
    rot, trans = obj
    assert rot.dtype == np.float32 and rot.shape == (5, 3, 3)
    assert trans.dtype == np.float32 and trans.shape == (5, 2)
    np.testing.assert_allclose(rot, A, atol=1e-7)  # R = A
    np.testing.assert_allclose(trans, shifts / 2.0 / 64)  # +origin_px / D, no sign flip
    write_ind_pkl(tmp_path / "ind.pkl", [3, 1])
    assert read_ind_pkl(tmp_path / "ind.pkl").tolist() == [3, 1]


def test_mrcs_with_pkls_to_star_and_back(tmp_path):
    rot, trans, ctf = _stack_with_pkls(tmp_path)
    meta = load_particles(tmp_path / "s.mrcs", poses=tmp_path / "poses.pkl", ctf=tmp_path / "ctf.pkl")
    np.testing.assert_allclose(meta.shifts_A, trans * 16 * 2.5, rtol=1e-6)
    np.testing.assert_allclose(meta.rotations, rot)
    save_converted(meta, star_out=tmp_path / "out.star")
    star = load_particles(tmp_path / "out.star")
    np.testing.assert_allclose(star.rotations, meta.rotations, atol=1e-5)
    np.testing.assert_allclose(star.shifts_A, meta.shifts_A, atol=1e-4)
    save_converted(star, poses_out=tmp_path / "p2.pkl", ctf_out=tmp_path / "c2.pkl")
    rot2, trans2 = load_pickle(tmp_path / "p2.pkl")
    np.testing.assert_allclose(rot2, rot, atol=1e-5)
    np.testing.assert_allclose(trans2, trans, atol=1e-4 / (16 * 2.5))
    np.testing.assert_allclose(load_pickle(tmp_path / "c2.pkl"), ctf, rtol=1e-6)


def test_toy_angles_pkl_reads(shared_fixtures):
    rot, trans = read_poses_pkl(shared_fixtures / "toy_angles.pkl")  # rotations only
    assert rot.shape == (1000, 3, 3) and trans is None
    with pytest.warns(UserWarning):
        meta = load_particles(
            shared_fixtures / "toy_projections.mrcs",
            poses=shared_fixtures / "toy_angles.pkl",
            ctf=shared_fixtures / "test_ctf.pkl",
        )
    np.testing.assert_allclose(meta.apix, 1.0)  # from ctf.pkl
    np.testing.assert_allclose(meta.shifts_A, 0.0)
    np.testing.assert_allclose(meta.rotations, rot)


def test_ctf_pkl_pixel_size_scales_with_box(tmp_path):
    """cryoDRGN's ctf.pkl Apix belongs to its D: images at another box get Apix*D/box."""
    _stack_with_pkls(tmp_path, box=16, apix=2.5)
    ctf = load_pickle(tmp_path / "ctf.pkl")
    ctf[:, 0], ctf[:, 1] = 64, 0.625  # the same data described at the original box 64
    with open(tmp_path / "ctf64.pkl", "wb") as fh:
        pickle.dump(ctf, fh)
    meta = load_particles(tmp_path / "s.mrcs", ctf=tmp_path / "ctf64.pkl")
    np.testing.assert_allclose(meta.apix, 2.5)


def test_poses_round_trip_functions():
    A = random_rotations(50, 2)
    shifts = np.random.default_rng(0).uniform(-20, 20, (50, 2))
    r, t = poses_to_cryodrgn(A, shifts, 128, 1.1)
    A2, s2 = poses_from_cryodrgn(r, t, 128, 1.1)
    np.testing.assert_allclose(A2, A, atol=1e-6)
    np.testing.assert_allclose(s2, shifts, atol=1e-4)


def test_bad_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump(Evil(), fh)
    with pytest.raises(InputError, match="evil.pkl: unsafe or unsupported pickle"):
        read_poses_pkl(tmp_path / "evil.pkl")
    with open(tmp_path / "shape.pkl", "wb") as fh:
        pickle.dump(np.zeros((4, 8), np.float32), fh)
    with pytest.raises(InputError, match=r"shape.pkl: not a cryoDRGN CTF file"):
        read_ctf_pkl(tmp_path / "shape.pkl")
    with pytest.raises(InputError, match="shape.pkl: rotations must be"):
        read_poses_pkl(tmp_path / "shape.pkl")
    with open(tmp_path / "notrot.pkl", "wb") as fh:
        pickle.dump((np.ones((2, 3, 3), np.float32), np.zeros((2, 2), np.float32)), fh)
    with pytest.raises(InputError, match="not rotations"):
        read_poses_pkl(tmp_path / "notrot.pkl")
    with open(tmp_path / "neg.pkl", "wb") as fh:
        pickle.dump(np.array([1, -2]), fh)
    with pytest.raises(InputError, match="non-negative"):
        read_ind_pkl(tmp_path / "neg.pkl")


def test_star_to_pkl_matches_relion_fixture(shared_fixtures, tmp_path):
    meta = read_star(shared_fixtures / "relion31.star")
    save_converted(meta, poses_out=tmp_path / "p.pkl", ctf_out=tmp_path / "c.pkl")
    rot, trans = load_pickle(tmp_path / "p.pkl")
    np.testing.assert_allclose(trans[0], np.array([0.019324, -0.64686]) / 2.806 / 256, rtol=1e-5)
    ctf = load_pickle(tmp_path / "c.pkl")
    np.testing.assert_allclose(ctf[0], [256, 2.806, 13108.082418, 12845.582418, -160.39, 300, 0.01, 0.1, 0], rtol=1e-6)
    write_ctf_pkl(tmp_path / "c3.pkl", meta.ctf, 256, meta.apix)
    np.testing.assert_array_equal(load_pickle(tmp_path / "c3.pkl"), ctf)
