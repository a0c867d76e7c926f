"""Atomic models through gemmi: PDB, gzipped PDB, mmCIF, filters, bad files."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest

from cryohet.errors import InputError
from cryohet.io.atomic import read_atomic_model

RESOURCES = __import__("pathlib").Path(__file__).resolve().parents[1] / "src" / "cryohet" / "resources" / "models"


def test_pdb_gz_and_cif_agree(tmp_path):
    model = read_atomic_model(RESOURCES / "1hzh.pdb.gz")
    assert len(model) > 10000
    assert model.coords_A.shape == (len(model), 3) and model.coords_A.dtype == np.float64
    # first ATOM record of 1HZH: GLN 1 N of chain H at (106.670, 138.421, 203.253)
    np.testing.assert_allclose(model.coords_A[0], [106.670, 138.421, 203.253], atol=1e-3)
    assert (model.elements[0], model.atom_names[0], model.residue_names[0]) == ("N", "N", "GLN")
    assert model.residue_numbers[0] == 1
    assert model.chains == ["H", "K", "L", "M", "A", "B"]  # heavy/light chains, then sugars
    st = gemmi.read_structure(str(RESOURCES / "1hzh.pdb.gz"))
    st.setup_entities()
    doc = st.make_mmcif_document()
    doc.write_file(str(tmp_path / "m.cif"))
    cif = read_atomic_model(tmp_path / "m.cif")
    np.testing.assert_allclose(cif.coords_A, model.coords_A, atol=1e-3)
    np.testing.assert_array_equal(cif.chain_ids, model.chain_ids)
    np.testing.assert_allclose(cif.b_factors, model.b_factors, atol=1e-2)


def test_filters_and_selection(tmp_path):
    model = read_atomic_model(RESOURCES / "1hzh.pdb.gz")
    dry = read_atomic_model(RESOURCES / "1hzh.pdb.gz", remove_waters=True, remove_hydrogens=True)
    n_water = int((model.residue_names == "HOH").sum())
    assert n_water > 0 and len(dry) == len(model) - n_water
    assert not np.isin(dry.residue_names, ["HOH", "WAT"]).any()
    assert not (dry.elements == "H").any()
    chain = model.chains[0]
    sub = model.select_chains([chain])
    assert set(sub.chain_ids) == {chain} and 0 < len(sub) < len(model)
    assert 0.0 <= model.occupancies.min() and model.occupancies.max() <= 1.0


def test_empty_and_bad_files(tmp_path):
    (tmp_path / "empty.pdb").write_text("HEADER    NOTHING\nEND\n")
    with pytest.raises(InputError, match="empty.pdb: contains no atoms"):
        read_atomic_model(tmp_path / "empty.pdb")
    with pytest.raises(InputError, match="file not found"):
        read_atomic_model(tmp_path / "absent.cif")
    (tmp_path / "bad.cif").write_text("data_x\nloop_\n_atom_site.id\n")
    with pytest.raises(InputError, match="bad.cif"):
        read_atomic_model(tmp_path / "bad.cif")
