"""load_particles: dispatch, subsets, and a one-line error for every kind of bad input."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryohet.data.synthetic import write_synthetic_particles
from cryohet.errors import ConfigError, InputError
from cryohet.io.mrc import write_stack, write_volume
from cryohet.io.particles import load_particles, save_converted
from cryohet.io.paths import ensure_not_input
from cryohet.io.source import ParticleSource


def _one_line_error(excinfo, *names: str | Path) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for name in names:
        assert str(name) in msg, f"{name} not named in: {msg}"
    return msg


def _star(tmp_path: Path, names: list[str], name="p.star", box: int | None = None) -> Path:
    df = pd.DataFrame({"rlnImageName": names, "rlnImagePixelSize": 2.0})
    if box is not None:
        df["rlnImageSize"] = box
    starfile.write(df, tmp_path / name, overwrite=True)
    return tmp_path / name


@pytest.fixture
def synthetic(tmp_path):
    star, meta = write_synthetic_particles(tmp_path / "set", n=24, box=8, apix=2.0, n_stacks=2)
    return star, meta


def test_ind_subset_keeps_original_index(synthetic, tmp_path):
    star, meta = synthetic
    with open(tmp_path / "ind.pkl", "wb") as fh:
        pickle.dump(np.array([20, 3, 7]), fh)
    sub = load_particles(star, ind=tmp_path / "ind.pkl")
    assert len(sub) == 3
    assert sub.original_index.tolist() == [20, 3, 7]
    np.testing.assert_allclose(sub.rotations, meta.rotations[[20, 3, 7]])
    assert load_particles(star, ind=np.array([5])).original_index.tolist() == [5]
    with pytest.raises(InputError, match="out of range") as ei:
        load_particles(star, ind=np.array([24]))
    _one_line_error(ei)


def test_txt_list_of_stacks(tmp_path):
    write_stack(tmp_path / "a.mrcs", np.zeros((3, 6, 6), np.float32), 1.2)
    write_stack(tmp_path / "b.mrcs", np.ones((2, 6, 6), np.float32), 1.2)
    (tmp_path / "list.txt").write_text("a.mrcs\nb.mrcs\n")
    meta = load_particles(tmp_path / "list.txt")
    assert len(meta) == 5 and meta.box == 6
    assert meta.file_index.tolist() == [0, 0, 0, 1, 1]
    assert meta.image_index.tolist() == [0, 1, 2, 0, 1]
    np.testing.assert_allclose(meta.apix, 1.2, rtol=1e-6)


def test_missing_stack(tmp_path):
    star = _star(tmp_path, ["1@nowhere.mrcs"])
    with pytest.raises(InputError, match="stack file not found") as ei:
        load_particles(star)
    _one_line_error(ei, tmp_path / "nowhere.mrcs", "p.star")
    with pytest.warns(UserWarning, match="stack file not found"):
        load_particles(star, stack_check="warn")


def test_index_beyond_stack(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.zeros((5, 8, 8), np.float32), 2.0)
    star = _star(tmp_path, ["1@s.mrcs", "6@s.mrcs"])
    with pytest.raises(InputError, match="image 6 .* holds only 5 images") as ei:
        load_particles(star)
    _one_line_error(ei, tmp_path / "s.mrcs")


def test_particle_counts_differ(synthetic, tmp_path):
    star, meta = synthetic
    with open(tmp_path / "poses.pkl", "wb") as fh:
        pickle.dump((meta.rotations[:-1].astype(np.float32), np.zeros((23, 2), np.float32)), fh)
    with pytest.raises(InputError, match="has 23 poses but .* has 24 particles") as ei:
        load_particles(star, poses=tmp_path / "poses.pkl")
    _one_line_error(ei, tmp_path / "poses.pkl")
    with open(tmp_path / "ctf.pkl", "wb") as fh:
        pickle.dump(np.ones((25, 9), np.float32), fh)
    with pytest.raises(InputError, match="has 25 CTF rows") as ei:
        load_particles(star, ctf=tmp_path / "ctf.pkl")
    _one_line_error(ei, tmp_path / "ctf.pkl")


def test_non_square_images(tmp_path):
    write_stack(tmp_path / "rect.mrcs", np.zeros((3, 8, 6), np.float32), 2.0)
    with pytest.raises(InputError, match="not square") as ei:
        load_particles(_star(tmp_path, ["1@rect.mrcs"]))
    _one_line_error(ei, tmp_path / "rect.mrcs")
    with pytest.raises(InputError, match="not square"):
        load_particles(tmp_path / "rect.mrcs")


def test_volume_where_stack_expected(tmp_path):
    write_volume(tmp_path / "vol.mrc", np.zeros((8, 8, 8), np.float32), 2.0)
    with pytest.raises(InputError, match="expected a 2D image stack") as ei:
        load_particles(_star(tmp_path, ["1@vol.mrc"]))
    _one_line_error(ei, tmp_path / "vol.mrc")


def test_truncated_and_corrupt_mrc(tmp_path):
    write_stack(tmp_path / "t.mrcs", np.zeros((10, 16, 16), np.float32), 2.0)
    size = os.path.getsize(tmp_path / "t.mrcs")
    with open(tmp_path / "t.mrcs", "r+b") as fh:
        fh.truncate(size - 3000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="truncated MRC file") as ei:
            load_particles(_star(tmp_path, ["1@t.mrcs"]))
    _one_line_error(ei, tmp_path / "t.mrcs")
    (tmp_path / "junk.mrcs").write_bytes(b"\x00" * 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="not a readable MRC") as ei:
            load_particles(tmp_path / "junk.mrcs")
    _one_line_error(ei, tmp_path / "junk.mrcs")


def test_box_mismatch_is_an_error_pixel_mismatch_a_warning(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.zeros((2, 8, 8), np.float32), 3.0)
    with pytest.raises(InputError, match="images are 8x8 pixels but .* box is 16") as ei:
        load_particles(_star(tmp_path, ["1@s.mrcs"], box=16))
    _one_line_error(ei, tmp_path / "s.mrcs")
    with pytest.warns(UserWarning, match="header pixel size 3 Å differs from 2 Å"):
        meta = load_particles(_star(tmp_path, ["1@s.mrcs"], name="q.star", box=8))
    np.testing.assert_allclose(meta.apix, 2.0)


def test_required_star_columns_missing(tmp_path):
    starfile.write(pd.DataFrame({"rlnDefocusU": [1.0]}), tmp_path / "nocol.star")
    with pytest.raises(InputError, match="missing required column rlnImageName") as ei:
        load_particles(tmp_path / "nocol.star")
    _one_line_error(ei, "nocol.star")


def test_pickle_with_code_is_refused(synthetic, tmp_path):
    star, _ = synthetic

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump(Evil(), fh)
    with pytest.raises(InputError, match="unsafe or unsupported pickle") as ei:
        load_particles(star, poses=tmp_path / "evil.pkl")
    _one_line_error(ei, tmp_path / "evil.pkl")


def test_output_would_overwrite_input(synthetic, tmp_path):
    star, _ = synthetic
    before = star.read_bytes()
    meta = load_particles(star)
    for target in (star, meta.image_files[0]):
        with pytest.raises(InputError, match="would overwrite the input") as ei:
            save_converted(meta, star_out=target)
        _one_line_error(ei, target)
    os.symlink(star, tmp_path / "link.star")
    with pytest.raises(InputError, match="would overwrite the input"):
        ensure_not_input(tmp_path / "link.star", [star])
    with pytest.raises(InputError, match="would overwrite the input"):
        ensure_not_input(tmp_path / "set" / ".." / "set" / "particles.star", [star])
    assert star.read_bytes() == before  # untouched


def test_unsupported_and_missing_files(tmp_path):
    (tmp_path / "x.foo").write_text("")
    with pytest.raises(InputError, match="unsupported particle file type") as ei:
        load_particles(tmp_path / "x.foo")
    _one_line_error(ei, "x.foo")
    with pytest.raises(InputError, match="file not found") as ei:
        load_particles(tmp_path / "absent.star")
    _one_line_error(ei, "absent.star")
    with pytest.raises(ConfigError, match="apix"):
        ParticleSource.build(path=tmp_path / "x.star", apix=-1.0)


def test_mrcs_pixel_size_from_header(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.zeros((2, 8, 8), np.float32), 1.0)
    with pytest.warns(UserWarning, match="placeholder"):
        load_particles(tmp_path / "s.mrcs")
    with mrcfile.open(tmp_path / "s.mrcs", mode="r+") as m:
        m.voxel_size = 0.0
    with pytest.raises(InputError, match="no pixel size"):
        load_particles(tmp_path / "s.mrcs")
    assert load_particles(tmp_path / "s.mrcs", apix=1.7).apix[0] == 1.7
