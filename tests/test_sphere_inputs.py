"""``cryohet train sphere`` refuses bad input in one line, before any training: a model that
does not overlap the consensus, a model centred at 0 (naming --centred-model, which then
places it), a file without residues, an absent chain, too few segments, particles without
poses; and a zero-epoch run writes the input model back unmoved, in the input's frame."""

from __future__ import annotations

import numpy as np
import pytest
import starfile
from sphere_helpers import make_hinge, shifted

from cryohet.cli.app import main
from cryohet.io.atomic import read_atomic_model


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("sphere_inputs")
    pdb, cif, data = make_hinge(root, n_images=200)
    return root, pdb, data


def _train(capsys, data, model, out, *extra):
    code = main(["train", "sphere", str(data / "particles.star"), "--model", str(model), "--out", str(out),
                 "--epochs", "0", *[str(e) for e in extra]])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    return code, (err[-1] if err else "")


def _one_line_error(code, line, *words):
    assert code != 0
    assert line.startswith("error: "), line
    for w in words:
        assert w in line, line


def test_a_model_elsewhere_is_refused(small, capsys, tmp_path):
    root, pdb, data = small
    far = tmp_path / "far.pdb"
    st = read_atomic_model(pdb)
    shifted(gemmi_from(pdb), np.array([60.0, 0.0, 0.0])).write_pdb(str(far))
    assert len(read_atomic_model(far)) == len(st)
    code, line = _train(capsys, data, far, tmp_path / "run")
    _one_line_error(code, line, "does not overlap the consensus map", "frame")
    assert not (tmp_path / "run" / "model.pt").exists()


def gemmi_from(path):
    import gemmi

    return gemmi.read_structure(str(path))


def test_a_centred_model_is_named_and_accepted_with_the_flag(small, capsys, tmp_path):
    root, pdb, data = small
    atoms = read_atomic_model(pdb)
    centred = tmp_path / "centred.pdb"
    # centred at 0: the map frame's box centre (16 px x 5 Å) moved to the origin
    shifted(gemmi_from(pdb), np.full(3, -80.0)).write_pdb(str(centred))
    code, line = _train(capsys, data, centred, tmp_path / "run")
    _one_line_error(code, line, "centred at the origin", "--centred-model")
    code, line = _train(capsys, data, centred, tmp_path / "run2", "--centred-model")
    assert code == 0, line
    # no epochs: the decoder starts at zero, so the mean model is the input, in the input's frame
    mean = read_atomic_model(tmp_path / "run2" / "model_mean.pdb")
    assert np.allclose(mean.coords_A, atoms.coords_A - 80.0, atol=2e-3)
    assert len(mean) == len(atoms)


def test_models_without_residues_absent_chains_and_too_few_segments(small, capsys, tmp_path):
    root, pdb, data = small
    waters = tmp_path / "waters.pdb"
    waters.write_text("HETATM    1  O   HOH W   1      80.000  80.000  80.000  1.00 10.00           O\nEND\n")
    code, line = _train(capsys, data, waters, tmp_path / "a")
    _one_line_error(code, line, "no amino acids")
    code, line = _train(capsys, data, pdb, tmp_path / "b", "--chains", "L,Z")
    _one_line_error(code, line, "chain Z not in the model")
    code, line = _train(capsys, data, pdb, tmp_path / "c", "--segments", "1")
    _one_line_error(code, line, "segments", "chains")
    code, line = _train(capsys, data, tmp_path / "missing.pdb", tmp_path / "d")
    _one_line_error(code, line, "not found")


def test_particles_without_poses_are_refused(small, capsys, tmp_path):
    root, pdb, data = small
    star = starfile.read(data / "particles.star", always_dict=True)
    parts = star["particles"]
    parts = parts.drop(columns=[c for c in parts.columns if c.startswith("rlnAngle") or c.startswith("rlnOrigin")])
    star["particles"] = parts
    out = data / "no_poses.star"
    starfile.write(star, out)
    code = main(["train", "sphere", str(out), "--model", str(pdb), "--out", str(tmp_path / "run"), "--epochs", "0"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    _one_line_error(code, line, "needs poses")
