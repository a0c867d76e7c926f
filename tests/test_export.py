"""``cryohet export`` (a run's poses back in the user's format) and ``cryohet volumes`` without
``--z`` and with ``--flip``.

The runs are real homogeneous runs (``train_homogeneous``) on the pinned data (160 particles,
D=24, 14 Å/px) written as a RELION 3.1 STAR file with more columns and two optics groups, and
as cryoSPARC ``.cs`` files with the fields of a real refinement (shared fixtures). After
training, each run's ``poses.npz`` is replaced by other poses, as a method that estimates poses
writes them, so an export that carried the source's poses over would fail the round trips.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from cryohet.analysis.config import ExportConfig, build_config
from cryohet.analysis.export import export_poses
from cryohet.analysis.volumes import write_volumes
from cryohet.cli.app import main
from cryohet.errors import ConfigError, InputError, RunDirError
from cryohet.geometry.hand import mirror_poses, mirror_volume
from cryohet.geometry.rotations import random_rotations
from cryohet.io.cryodrgn import poses_from_cryodrgn, read_poses_pkl, write_ind_pkl
from cryohet.io.cryosparc import load_cs, read_cs
from cryohet.io.source import ParticleSource
from cryohet.io.star import read_star, read_star_tables
from cryohet.methods.baselines import HomogeneousConfig, train_homogeneous
from cryohet.representations import VoxelVolume
from cryohet.representations.render import render
from cryohet.training.rundir import RunDir

PINNED = Path(__file__).resolve().parent / "data" / "pinned" / "data"
N, BOX, APIX = 160, 24, 14.0
POSE_COLUMNS = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]
CS_REFINEMENT = "cryosparc_P12_J24_001_particles.cs"


def _estimated_poses(run: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Replace the run's poses (the input's, for a homogeneous run) by others; returns them as stored."""
    n = len(RunDir(run).load_poses()[0])
    shifts = np.random.default_rng(seed).uniform(-20.0, 20.0, size=(n, 2))
    RunDir(run).save_poses(random_rotations(n, seed), shifts)
    return RunDir(run).load_poses()  # float32 on disk


def _train(data: ParticleSource, out: Path) -> Path:
    return Path(train_homogeneous(HomogeneousConfig(data=data, out=str(out))))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The pinned particles with a RELION-like STAR: two optics groups (one extra optics column),
    micrograph names, coordinates, classes, half-sets and floats with more digits than 10."""
    folder = tmp_path_factory.mktemp("export") / "data"
    folder.mkdir()
    shutil.copy(PINNED / "particles.mrcs", folder)
    parts, optics = read_star_tables(PINNED / "particles.star")
    rng = np.random.default_rng(0)
    parts["rlnOpticsGroup"] = 1 + np.arange(N) % 2
    parts["rlnMicrographName"] = [f"MotionCorr/job002/mic_{i % 5:03d}.mrc" for i in range(N)]
    parts["rlnCoordinateX"] = 100.5 + 3.25 * np.arange(N)
    parts["rlnClassNumber"] = 1 + np.arange(N) % 3
    parts["rlnRandomSubset"] = 1 + np.arange(N) % 2
    parts["rlnDefocusU"] = parts["rlnDefocusU"] + 0.123457  # 11 significant digits
    parts["rlnLogLikeliContribution"] = rng.normal(0.0, 1.0, N) * 1e5
    two = pd.concat([optics, optics], ignore_index=True)
    two["rlnOpticsGroup"] = [1, 2]
    two["rlnOpticsGroupName"] = ["opticsGroup1", "opticsGroup2"]
    two["rlnMicrographOriginalPixelSize"] = 3.5
    starfile.write({"optics": two, "particles": parts}, folder / "particles.star")
    return folder


@pytest.fixture(scope="module")
def star_run(data, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    run = _train(ParticleSource(path=data / "particles.star"), tmp_path_factory.mktemp("runs") / "hom")
    return (run, *_estimated_poses(run, 1))


@pytest.fixture(scope="module")
def ind_run(data, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """A run on 40 of the particles, in a shuffled order (cryoDRGN ind.pkl)."""
    ind = np.random.default_rng(3).permutation(N)[:40]
    write_ind_pkl(data / "ind40.pkl", ind)
    src = ParticleSource(path=data / "particles.star", ind=data / "ind40.pkl")
    run = _train(src, tmp_path_factory.mktemp("runs") / "hom_ind")
    return (run, *_estimated_poses(run, 2), ind)


@pytest.fixture(scope="module")
def cs_data(shared_fixtures, data) -> tuple[np.ndarray, Path, Path, Path]:
    """The first 160 rows of a real cryoSPARC refinement (its dtype, uids, CTF, alignments with
    ``alignments3D/psize_A`` 2.95 Å, scores ...) pointing at the pinned images; also split into a
    main file (uid, blob) and a shuffled passthrough (uid, ctf, alignments3D)."""
    full = load_cs(shared_fixtures / CS_REFINEMENT)[:N].copy()
    full["blob/path"] = b"particles.mrcs"
    full["blob/idx"] = np.arange(N)
    full["blob/shape"] = BOX
    full["blob/psize_A"] = APIX
    with open(data / "J24_particles.cs", "wb") as fh:
        np.save(fh, full)
    main_fields = [f for f in full.dtype.names if f == "uid" or f.startswith("blob/")]
    pt_fields = [f for f in full.dtype.names if f not in main_fields or f == "uid"]
    perm = np.random.default_rng(7).permutation(N)
    for name, fields, rows in (("J5_particles.cs", main_fields, np.arange(N)), ("J5_passthrough.cs", pt_fields, perm)):
        part = np.empty(N, dtype=[(f, full.dtype[f]) for f in fields])
        for f in fields:
            part[f] = full[f][rows]
        with open(data / name, "wb") as fh:
            np.save(fh, part)
    return full, data / "J24_particles.cs", data / "J5_particles.cs", data / "J5_passthrough.cs"


@pytest.fixture(scope="module")
def cs_run(cs_data, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    run = _train(ParticleSource(path=cs_data[1]), tmp_path_factory.mktemp("runs") / "hom_cs")
    return (run, *_estimated_poses(run, 4))


def _export(run: Path, out: Path, **kw):
    return export_poses(ExportConfig(run=run, out=out, **kw))


def _assert_same_poses(meta, rotations, shifts, atol_rot=1e-7, atol_shift_A=1e-5):
    np.testing.assert_allclose(meta.rotations, rotations, atol=atol_rot)
    np.testing.assert_allclose(meta.shifts_A, shifts, atol=atol_shift_A)


# ----------------------------------------------------------------------------- .star
def test_star_export_replaces_only_the_poses(star_run, data):
    run, rot, shifts = star_run
    out = data / "exported.star"  # beside the source: rlnImageName stays as it was
    done = _export(run, out)
    assert (done.out, done.n, done.flip, done.extra_files) == (out, N, False, ())
    _assert_same_poses(read_star(out), rot, shifts)  # cryohet's own reader gives the run's poses back
    source, written = starfile.read(data / "particles.star"), starfile.read(out)
    pd.testing.assert_frame_equal(written["optics"], source["optics"])  # the optics table, as it was
    p0, p1 = source["particles"], written["particles"]
    assert list(p1.columns) == list(p0.columns)  # every column, in its order
    others = [c for c in p0.columns if c not in POSE_COLUMNS]
    pd.testing.assert_frame_equal(p1[others], p0[others])  # row for row, value for value
    assert not np.allclose(p1["rlnAngleTilt"], p0["rlnAngleTilt"], atol=1e-3)  # the poses did change


def test_star_export_elsewhere_points_at_the_same_images(star_run, data, tmp_path):
    run, rot, shifts = star_run
    out = tmp_path / "elsewhere" / "particles.star"
    _export(run, out)
    back, source = read_star(out), read_star(data / "particles.star")
    _assert_same_poses(back, rot, shifts)
    assert back.image_files == source.image_files
    np.testing.assert_array_equal(back.image_index, source.image_index)
    p0, p1 = starfile.read(data / "particles.star")["particles"], starfile.read(out)["particles"]
    others = [c for c in p0.columns if c not in [*POSE_COLUMNS, "rlnImageName"]]
    pd.testing.assert_frame_equal(p1[others], p0[others])


def test_ind_run_exports_its_rows_in_its_order(ind_run, data, tmp_path):
    run, rot, shifts, ind = ind_run
    _export(run, tmp_path / "sub.star")
    back = read_star(tmp_path / "sub.star")
    assert len(back) == len(ind)
    _assert_same_poses(back, rot, shifts)
    p0, p1 = starfile.read(data / "particles.star")["particles"], starfile.read(tmp_path / "sub.star")["particles"]
    others = [c for c in p0.columns if c not in [*POSE_COLUMNS, "rlnImageName"]]
    pd.testing.assert_frame_equal(p1[others], p0[others].iloc[ind].reset_index(drop=True))
    np.testing.assert_array_equal(back.image_index, ind)  # the images of those particles

    _export(run, tmp_path / "poses.pkl")
    r, t = read_poses_pkl(tmp_path / "poses.pkl")
    assert len(r) == len(ind)
    A, s = poses_from_cryodrgn(r, t, BOX, APIX)
    np.testing.assert_allclose(A, rot, atol=1e-7)
    np.testing.assert_allclose(s, shifts, atol=1e-4)


def test_pkl_export_is_cryodrgns_layout(star_run, tmp_path):
    run, rot, shifts = star_run
    _export(run, tmp_path / "poses.pkl")
    r, t = read_poses_pkl(tmp_path / "poses.pkl")
    np.testing.assert_allclose(r, rot, atol=1e-7)  # cryoDRGN's R is RELION's A
    np.testing.assert_allclose(t, shifts / (BOX * APIX), atol=1e-7)  # fractions of the box


# ----------------------------------------------------------------------------- .cs
def test_cs_export_replaces_only_pose_and_shift(cs_run, cs_data, tmp_path):
    run, rot, shifts = cs_run
    full, source = cs_data[0], cs_data[1]
    out = tmp_path / "J24_exported.cs"
    _export(run, out)
    got = np.load(out, allow_pickle=False)
    assert got.dtype == full.dtype  # same fields, same types: cryoSPARC imports it as it did the source
    for f in full.dtype.names:
        if f not in ("alignments3D/pose", "alignments3D/shift"):
            np.testing.assert_array_equal(got[f], full[f], err_msg=f)
    np.testing.assert_array_equal(got["alignments3D/psize_A"], np.float32(2.95))  # shifts stay in its pixels
    _assert_same_poses(read_cs(out), rot, shifts, atol_rot=1e-6, atol_shift_A=1e-4)
    assert not np.allclose(got["alignments3D/pose"], full["alignments3D/pose"], atol=1e-3)

    _export(run, tmp_path / "J24.star")  # a .cs run exports a converted STAR, as convert writes it
    _assert_same_poses(read_star(tmp_path / "J24.star"), rot, shifts)
    assert read_star(tmp_path / "J24.star").image_files == read_cs(source).image_files


def test_cs_export_with_passthrough_adds_the_alignments(cs_data, tmp_path):
    full, _, main_cs, pt_cs = cs_data
    run = _train(ParticleSource(path=main_cs, passthrough=pt_cs), tmp_path / "hom_pt")
    rot, shifts = _estimated_poses(run, 5)
    out = tmp_path / "out" / "J5_exported.cs"
    done = _export(run, out)
    pt_out = tmp_path / "out" / "J5_exported_passthrough.cs"
    assert done.extra_files == (pt_out,)
    got, main = np.load(out, allow_pickle=False), load_cs(main_cs)
    for f in main.dtype.names:  # the main rows unchanged, the alignments added after them
        np.testing.assert_array_equal(got[f], main[f], err_msg=f)
    assert got.dtype.names == (*main.dtype.names, "alignments3D/pose", "alignments3D/shift", "alignments3D/psize_A")
    np.testing.assert_array_equal(got["alignments3D/psize_A"], np.float32(2.95))  # the passthrough's, as read
    pt = np.load(pt_out, allow_pickle=False)
    for f in pt.dtype.names:  # the passthrough rows of the same particles, in their order
        np.testing.assert_array_equal(pt[f], full[f], err_msg=f)
    _assert_same_poses(read_cs(out, passthrough=pt_out), rot, shifts, atol_rot=1e-6, atol_shift_A=1e-4)
    pt_bytes = pt_cs.read_bytes()
    for bad in (pt_cs, main_cs.parent / "J5.cs"):  # J5.cs would write its passthrough over the input one
        with pytest.raises(InputError, match="overwrite the input"):
            _export(run, bad, overwrite=True)
    assert not (main_cs.parent / "J5.cs").exists() and pt_cs.read_bytes() == pt_bytes


# ----------------------------------------------------------------------------- the hand
def test_flip_exports_the_poses_of_the_flipped_map(star_run, data, tmp_path):
    """The map and the exported poses, and the mirrored map (volumes --flip) and the exported
    --flip poses, make the same images through the shared forward model."""
    run, rot, shifts = star_run
    _export(run, tmp_path / "flipped.star", flip=True)
    flipped = read_star(tmp_path / "flipped.star")
    rot_m, shifts_m = mirror_poses(rot, shifts)
    _assert_same_poses(flipped, rot_m, shifts_m)
    _export(run, tmp_path / "flipped.pkl", flip=True)
    np.testing.assert_allclose(read_poses_pkl(tmp_path / "flipped.pkl")[0], rot_m, atol=1e-7)

    write_volumes(run, None, tmp_path / "map")
    write_volumes(run, None, tmp_path / "map_flipped", flip=True)
    vol = mrcfile.read(tmp_path / "map" / "vol_000.mrc")
    vol_m = mrcfile.read(tmp_path / "map_flipped" / "vol_000.mrc")
    np.testing.assert_array_equal(vol_m, mirror_volume(vol))
    assert mrcfile.open(tmp_path / "map_flipped" / "vol_000.mrc").voxel_size.x == pytest.approx(APIX)

    # the images, compared inside 0.45 cycles/px (the projector's outermost shell is one-sided),
    # of the maps with their face plane k = 0 emptied: its mirror image lies outside the box
    # (tests/test_geometry_hand.py), and a consensus of 160 particles has noise up to the faces
    ctf = torch.tensor(flipped.ctf.as_array()[:12], dtype=torch.float32)  # rows 0..11
    k = torch.fft.fftshift(torch.fft.fftfreq(BOX))
    inner = (k[:, None] ** 2 + k[None, :] ** 2).sqrt() < 0.45
    t = torch.float32

    def images(v, r, s):
        v = torch.from_numpy(v.copy())
        v[0] = 0.0
        return render(VoxelVolume(v, APIX), torch.tensor(r[:12], dtype=t), torch.tensor(s[:12], dtype=t), ctf, BOX,
                      APIX, output="fourier")[:, inner]  # fmt: skip

    ref = images(vol, rot, shifts)
    scale = float(ref.abs().max())
    assert float((images(vol_m, flipped.rotations, flipped.shifts_A) - ref).abs().max()) < 1e-5 * scale
    assert float((images(vol_m, rot, shifts) - ref).abs().max()) > 0.1 * scale  # the hand matters


def test_volumes_without_z_is_the_map_at_the_mean_latent(star_run, tmp_path, capsys):
    run = star_run[0]
    assert main(["volumes", str(run), "--out", str(tmp_path / "v")]) == 0
    assert "at the mean latent" in capsys.readouterr().out
    with mrcfile.open(run / "consensus.mrc") as m:  # a homogeneous run: its single map
        np.testing.assert_allclose(mrcfile.read(tmp_path / "v" / "vol_000.mrc"), m.data, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["vol_000.mrc"]


class _PartModel:
    """A stand-in part-aware model: records the latents it is asked for."""

    method, box, apix, zdim = "fake", 8, 2.0, 2

    def __init__(self):
        rng = np.random.default_rng(0)
        self.latents = rng.normal(size=(50, 2)).astype(np.float32)
        self.asked: list[np.ndarray] = []
        self.vol = rng.random((8, 8, 8)).astype(np.float32)

    def volumes(self, zs, box, apix):
        for z in zs:
            self.asked.append(np.array(z))
            yield self.vol * (1 + z[0])

    def part_volumes(self, z, box, apix):
        return {"a": self.vol, "b": self.vol[::-1].copy()}


def test_volumes_mean_latent_and_flipped_parts(tmp_path, monkeypatch):
    fake = _PartModel()
    monkeypatch.setattr("cryohet.methods.base.load_run", lambda *a, **k: fake)
    run = tmp_path / "run"
    run.mkdir()
    written = write_volumes(run, None, tmp_path / "out", parts=True, flip=True)
    assert len(fake.asked) == 1
    np.testing.assert_allclose(fake.asked[0], fake.latents.mean(axis=0), rtol=1e-6)
    assert [p.name for p in written] == ["vol_000.mrc", "vol_000_part_00.mrc", "vol_000_part_01.mrc", "parts.cxc"]
    mean = fake.latents.mean(axis=0)
    np.testing.assert_allclose(mrcfile.read(written[0]), mirror_volume(fake.vol * (1 + mean[0])), rtol=1e-6)
    np.testing.assert_array_equal(mrcfile.read(written[1]), mirror_volume(fake.vol))
    np.testing.assert_array_equal(mrcfile.read(written[2]), mirror_volume(fake.vol[::-1]))


# ----------------------------------------------------------------------------- refusals and the CLI
def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def test_cli_export_and_its_refusals(star_run, data, tmp_path, capsys):
    run = str(star_run[0])
    out = tmp_path / "p.star"
    assert main(["export", run, "--out", str(out), "--flip"]) == 0
    assert "wrote the poses of 160 particles (mirrored hand)" in capsys.readouterr().out
    before = out.read_bytes()
    assert main(["export", run, "--out", str(out)]) == 1  # an existing output needs --overwrite
    assert "--overwrite" in _one_error(capsys) and out.read_bytes() == before
    assert main(["export", run, "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != before
    capsys.readouterr()
    source = data / "particles.star"
    source_bytes = source.read_bytes()
    assert main(["export", run, "--out", str(source), "--overwrite"]) == 1  # never an input
    assert "overwrite the input" in _one_error(capsys) and source.read_bytes() == source_bytes
    assert main(["export", run, "--out", str(tmp_path / "p.cs")]) == 1  # nothing cryoSPARC to carry over
    assert "needs a cryoSPARC .cs particle source" in _one_error(capsys)
    assert not (tmp_path / "p.cs").exists()
    assert main(["export", run, "--out", str(tmp_path / "p.txt")]) == 1
    assert ".star, .cs or .pkl" in _one_error(capsys)


def test_a_run_without_poses_is_refused(star_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(star_run[0], run)
    (run / "poses.npz").unlink()
    with pytest.raises(RunDirError, match="no poses"):
        _export(run, tmp_path / "p.star")
    assert not (tmp_path / "p.star").exists()
    with pytest.raises(ConfigError, match=".star, .cs or .pkl"):
        build_config(ExportConfig, run=run, out=tmp_path / "p.mrc")
