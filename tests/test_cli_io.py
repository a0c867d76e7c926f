"""``cryohet info / convert / downsample`` end to end, in process (``main([...])``)."""

from __future__ import annotations

import pickle

import mrcfile
import numpy as np
import pytest

from cryohet.cli.app import main
from cryohet.data.synthetic import write_synthetic_particles
from cryohet.io.particles import load_particles
from cryohet.io.safe_pickle import load_pickle


@pytest.fixture
def star(tmp_path):
    path, _ = write_synthetic_particles(tmp_path / "in", n=15, box=16, apix=[1.2, 1.3], n_stacks=2, seed=2)
    return path


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_clean_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code != 0
    assert "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


def test_info(star, capsys):
    code, out, _ = _run(capsys, "info", star)
    assert code == 0
    for text in ("particles", "15", "16 px", "1.2, 1.3 Å/px", "optics groups", "opticsGroup2", "CTF", "2 of 2 found"):
        assert text in out, text


def test_info_fixture_cs(shared_fixtures, capsys):
    code, out, _ = _run(capsys, "info", shared_fixtures / "cryosparc_P12_J24_001_particles.cs")
    assert code == 0
    assert "2,019" in out and "180 px" in out and "2.95" in out and "0 of 50 found" in out


def test_convert_round_trip(star, tmp_path, capsys):
    code, out, _ = _run(
        capsys,
        "convert",
        star,
        "--poses-out",
        tmp_path / "poses.pkl",
        "--ctf-out",
        tmp_path / "ctf.pkl",
        "--star-out",
        tmp_path / "o" / "out.star",
    )
    assert code == 0 and "wrote" in out
    meta = load_particles(star)
    rot, trans = load_pickle(tmp_path / "poses.pkl")
    np.testing.assert_allclose(rot, meta.rotations, atol=1e-6)
    np.testing.assert_allclose(trans, meta.shifts_A / meta.apix[:, None] / 16, atol=1e-6)
    ctf = load_pickle(tmp_path / "ctf.pkl")
    np.testing.assert_allclose(ctf[:, 1], meta.apix, rtol=1e-6)
    back = load_particles(tmp_path / "o" / "out.star")
    np.testing.assert_allclose(back.rotations, meta.rotations, atol=1e-5)
    # an ind.pkl selects particles; outputs hold only those
    with open(tmp_path / "ind.pkl", "wb") as fh:
        pickle.dump(np.array([3, 9]), fh)
    code, _, _ = _run(capsys, "convert", star, "--ind", tmp_path / "ind.pkl", "--poses-out", tmp_path / "sub.pkl")
    assert code == 0
    np.testing.assert_allclose(load_pickle(tmp_path / "sub.pkl")[0], meta.rotations[[3, 9]], atol=1e-6)
    # pickles whose count does not match the stack are refused
    _assert_clean_error(
        *_run(
            capsys,
            "convert",
            tmp_path / "in" / "stack_0.mrcs",
            "--poses",
            tmp_path / "sub.pkl",
            "--apix",
            "1.2",
            "--star-out",
            tmp_path / "x.star",
        ),
        "sub.pkl",
        "has 2 poses but",
    )


def test_downsample(star, tmp_path, capsys):
    code, out, _ = _run(capsys, "downsample", star, "-D", "8", "--out", tmp_path / "ds", "--chunk", "4")
    assert code == 0
    with mrcfile.open(tmp_path / "ds" / "particles.8.mrcs") as m:
        assert m.data.shape == (15, 8, 8)
    back = load_particles(tmp_path / "ds" / "particles.8.star")
    np.testing.assert_allclose(np.unique(back.apix), [2.4, 2.6])
    code, out, err = _run(capsys, "downsample", star, "-D", "32", "--out", tmp_path / "ds2")
    _assert_clean_error(code, out, err, "cannot downsample 16-pixel images to a box of 32")


def test_bad_inputs_exit_cleanly(star, tmp_path, capsys):
    _assert_clean_error(*_run(capsys, "info", tmp_path / "absent.star"), "absent.star", "file not found")
    _assert_clean_error(*_run(capsys, "convert", star, "--star-out", star), str(star), "would overwrite the input")
    assert star.read_text().count("data_particles") == 1  # untouched
    _assert_clean_error(*_run(capsys, "convert", star), "nothing to write")
    _assert_clean_error(*_run(capsys, "info", star, "--apix", "-1"), "apix")
    stack = star.parent / "stack_0.mrcs"
    stack.write_bytes(stack.read_bytes()[:2000])  # truncate a stack
    _assert_clean_error(
        *_run(capsys, "downsample", star, "-D", "8", "--out", tmp_path / "o"), "stack_0.mrcs", "truncated"
    )
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump({"not": "an array"}, fh)
    _assert_clean_error(*_run(capsys, "info", star, "--poses", tmp_path / "evil.pkl"), "evil.pkl")


def _bad_case(case: str, tmp_path):
    """Files for one kind of bad input; returns (cli args, words the error must contain)."""
    import pandas as pd
    import starfile

    from cryohet.io.mrc import write_stack, write_volume

    def star_for(stack_name: str, index: int = 1, **cols) -> str:
        df = pd.DataFrame({"rlnImageName": [f"{index}@{stack_name}"], "rlnImagePixelSize": [2.0], **cols})
        starfile.write(df, tmp_path / "p.star", overwrite=True)
        return str(tmp_path / "p.star")

    write_stack(tmp_path / "ok.mrcs", np.zeros((3, 8, 8), np.float32), 2.0)
    if case == "missing stack":
        # info/convert only warn (they report what exists); commands reading pixels fail
        return ["downsample", star_for("gone.mrcs"), "-D", "4", "--out", tmp_path / "o"], ["gone.mrcs", "not found"]
    if case == "index beyond stack":
        return ["info", star_for("ok.mrcs", 4)], ["ok.mrcs", "holds only 3 images"]
    if case == "non-square":
        write_stack(tmp_path / "rect.mrcs", np.zeros((2, 8, 6), np.float32), 2.0)
        return ["info", star_for("rect.mrcs")], ["rect.mrcs", "not square"]
    if case == "3D volume":
        write_volume(tmp_path / "vol.mrc", np.zeros((8, 8, 8), np.float32), 2.0)
        return ["info", star_for("vol.mrc")], ["vol.mrc", "expected a 2D image stack"]
    if case == "missing column":
        starfile.write(pd.DataFrame({"rlnDefocusU": [1.0]}), tmp_path / "nocol.star")
        return ["info", tmp_path / "nocol.star"], ["nocol.star", "rlnImageName"]
    if case == "count mismatch":
        with open(tmp_path / "ctf.pkl", "wb") as fh:
            pickle.dump(np.ones((5, 9), np.float32), fh)
        return ["info", tmp_path / "ok.mrcs", "--ctf", tmp_path / "ctf.pkl"], ["ctf.pkl", "has 5 CTF rows"]
    if case == "box mismatch":
        return ["info", star_for("ok.mrcs", rlnImageSize=[16])], ["ok.mrcs", "box is 16"]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "missing stack",
        "index beyond stack",
        "non-square",
        "3D volume",
        "missing column",
        "count mismatch",
        "box mismatch",
    ],
)
def test_cli_bad_input_cases(case, tmp_path, capsys):
    args, needles = _bad_case(case, tmp_path)
    _assert_clean_error(*_run(capsys, *args), *needles)
