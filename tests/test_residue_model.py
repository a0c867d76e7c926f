"""Residue Gaussians of an atomic model (cryoSPHERE's representation) and moved models
written back with every atom: the map frame, electron counts, chain breaks, bad models."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest
import torch

from cryohet.errors import InputError
from cryohet.geometry.rotations import random_rotations
from cryohet.io.atomic import read_atomic_model, write_atomic_models
from cryohet.representations.residue_model import residue_model

IGG = Path(__file__).resolve().parents[1] / "src" / "cryohet" / "resources" / "models" / "1hzh.pdb.gz"


@pytest.fixture(scope="module")
def igg():
    return read_atomic_model(IGG)


def test_one_gaussian_per_residue_at_its_ca_with_its_electrons(igg):
    r = residue_model(igg)
    st = gemmi.read_structure(str(IGG))
    st.remove_alternative_conformations()
    n_ca = sum(1 for ch in st[0] for res in ch if res.find_atom("CA", "*") and gemmi.find_tabulated_residue(res.name)
               and gemmi.find_tabulated_residue(res.name).is_amino_acid())  # fmt: skip
    assert len(r) == n_ca == 1331
    assert r.chains == ["H", "K", "L", "M"] and set(r.kind) == {"protein"}
    ca = (igg.atom_names == "CA") & np.isin(igg.residue_names, ["GLY"]) & (igg.chain_ids == "H")
    assert np.allclose(r.coords_A[(r.residue_names == "GLY") & (r.chain_ids == "H")], igg.coords_A[ca])
    # every atom belongs to one residue, and the electron counts add up to the model's
    z = np.array([gemmi.Element(e).atomic_number for e in igg.elements])
    assert (r.atom_residue >= 0).all() and np.isclose(r.electrons.sum(), z.sum())
    gly = np.flatnonzero(r.residue_names == "GLY")[0]
    assert r.electrons[gly] == 27  # N, CA, C, O: 7 + 6 + 6 + 8 (no hydrogens in 1HZH)
    # hetero atoms (glycans) ride with the nearest residue
    het = np.flatnonzero(igg.is_hetero & (igg.residue_names != "HOH"))
    assert len(het) > 0
    d_own = np.linalg.norm(igg.coords_A[het] - r.coords_A[r.atom_residue[het]], axis=1)
    d_all = np.linalg.norm(igg.coords_A[het, None] - r.coords_A[None], axis=2).min(axis=1)
    assert np.allclose(d_own, d_all)


def test_chain_ends_and_gaps_break_continuity_numbering_does_not(igg):
    r = residue_model(igg)
    breaks = [(str(r.chain_ids[i]), int(r.residue_numbers[i])) for i in np.flatnonzero(~r.bonded_to_next)]
    # 4 chain ends and 2 disordered stretches; EU numbering skips numbers (H 130 -> 133 at 3.8 Å)
    assert breaks == [("H", 478), ("K", 127), ("K", 235), ("K", 475), ("L", 214), ("M", 214)]
    i = np.flatnonzero((r.chain_ids == "H") & (r.residue_numbers == 130))[0]
    assert r.residue_numbers[i + 1] == 133 and r.bonded_to_next[i]


def test_mixture_is_in_the_consensus_map_frame(igg):
    """The map's origin is voxel 0, so a residue at x Å lands on voxel x / apix: the rendered
    mixture's centre of mass (in voxels) times apix is the electron-weighted centroid."""
    r = residue_model(igg)
    box, apix = 96, 3.0
    vol = r.mixture(box, apix, sigma_A=2.0).to_volume(box, apix).double()
    zz, yy, xx = torch.meshgrid(*(torch.arange(box, dtype=torch.float64),) * 3, indexing="ij")
    com_px = torch.stack([(vol * a).sum() / vol.sum() for a in (xx, yy, zz)]).numpy()
    centroid = (r.coords_A * r.electrons[:, None]).sum(0) / r.electrons.sum()
    assert np.allclose(com_px * apix, centroid, atol=0.2), (com_px * apix, centroid)
    mass_A3 = float(vol.sum()) * apix**3
    assert abs(mass_A3 / r.electrons.sum() - 1.0) < 0.01


def test_moved_models_keep_every_atom_and_their_identity(igg, tmp_path):
    r = residue_model(igg)
    rot = np.repeat(np.eye(3)[None], len(r), axis=0)
    t = np.zeros((len(r), 3))
    moving = r.chain_ids == "L"
    rot[moving] = random_rotations(1, 3)[0]
    t[moving] = [5.0, -3.0, 2.0]
    moved = r.move_atoms(rot, t)
    light = igg.chain_ids == "L"
    assert np.allclose(moved[~np.isin(r.atom_residue, np.flatnonzero(moving))], igg.coords_A[~np.isin(
        r.atom_residue, np.flatnonzero(moving))])  # fmt: skip
    assert np.allclose(moved[light], igg.coords_A[light] @ rot[moving][0].T + t[moving][0])
    for suffix in ("pdb", "cif"):
        out = write_atomic_models(igg, [igg.coords_A, moved], tmp_path / f"series.{suffix}")
        st = gemmi.read_structure(str(out))
        assert len(st) == 2
        back = read_atomic_model(out)  # the first model
        assert np.allclose(back.coords_A, igg.coords_A, atol=1e-3)
        for name in ("chain_ids", "residue_numbers", "insertion_codes", "atom_names", "residue_names", "is_hetero"):
            assert (getattr(back, name) == getattr(igg, name)).all(), name
        assert np.allclose(back.b_factors, igg.b_factors) and np.allclose(back.occupancies, igg.occupancies)
        second = np.array([a.pos.tolist() for ch in st[1] for res in ch for a in res])
        assert np.allclose(second, moved, atol=1e-3)
    assert "MODEL        2" in (tmp_path / "series.pdb").read_text()
    assert (tmp_path / "series.cif").read_text().startswith("data_")


def test_bad_models_and_chains_are_refused_in_one_line(igg, tmp_path):
    with pytest.raises(InputError, match=r"chain Z not in the model \(chains with residues: H, K, L, M\)"):
        residue_model(igg, chains=["L", "Z"])
    assert residue_model(igg, chains=["L"]).movable.sum() == ((igg.chain_ids == "L") & (igg.atom_names == "CA")).sum()
    waters = tmp_path / "waters.pdb"
    waters.write_text(
        "HETATM    1  O   HOH A   1      10.000  10.000  10.000  1.00 20.00           O\n"
        "HETATM    2  O   HOH A   2      13.000  10.000  10.000  1.00 20.00           O\nEND\n"
    )
    with pytest.raises(InputError, match="no amino acids") as err:
        residue_model(read_atomic_model(waters))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="atoms"):
        write_atomic_models(igg, igg.coords_A[:10], tmp_path / "x.pdb")
