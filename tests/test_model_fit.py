"""An atomic model is checked against the consensus map before a model-based method trains:
in the map's frame it fits; centred at the origin, or elsewhere, it is refused in one line."""

from __future__ import annotations

import json
from dataclasses import replace

import mrcfile
import numpy as np
import pytest

from cryohet.errors import InputError
from cryohet.io.atomic import read_atomic_model
from cryohet.reconstruction.model_fit import check_model_in_map, model_map_fit
from cryohet.representations.residue_model import residue_model
from cryohet.simulate.config import SimulationConfig
from cryohet.simulate.presets import bundled_model_path as model_path
from cryohet.simulate.simulator import simulate_dataset


@pytest.fixture(scope="module")
def igg_map(tmp_path_factory):
    """A single IgG state's map (D=48, 6 Å/px) and the bundled 1HZH moved into its frame
    (origin at voxel 0: the simulator centres the model's centre ``centre_A`` on the box centre)."""
    out = tmp_path_factory.mktemp("igg") / "data"
    simulate_dataset(SimulationConfig(preset="igg-1d", out=out, n_states=1, n_images=8, box=48, snr=1.0, seed=1))
    meta = json.loads((out / "meta.json").read_text())
    atoms = read_atomic_model(model_path("1hzh.pdb.gz"))
    box, apix = meta["box"], meta["apix"]
    framed = replace(atoms, coords_A=atoms.coords_A - np.asarray(meta["centre_A"]) + (box // 2) * apix)
    return mrcfile.read(out / "gt" / "state_000.mrc"), apix, framed


def test_a_model_in_the_map_frame_fits(igg_map):
    vol, apix, atoms = igg_map
    fit = check_model_in_map(residue_model(atoms), vol, apix)
    assert fit.correlation > 0.8, fit
    assert fit.fsc_05_A < 25.0 and fit.outside_fraction == 0.0  # 6 Å/px: Nyquist 12 Å
    # a Fab moved by 20 Å fits worse
    moved = atoms.coords_A.copy()
    moved[atoms.chain_ids == "L"] += 20.0
    worse = model_map_fit(residue_model(replace(atoms, coords_A=moved)), vol, apix)
    assert worse.correlation < fit.correlation - 0.05


def test_a_model_centred_at_the_origin_is_named_as_such(igg_map):
    vol, apix, atoms = igg_map
    centre = (vol.shape[0] // 2) * apix
    origin = replace(atoms, coords_A=atoms.coords_A - centre)
    with pytest.raises(InputError, match="centred at the origin.*--centred-model") as err:
        check_model_in_map(residue_model(origin), vol, apix, name="model.pdb")
    assert "\n" not in str(err.value) and str(err.value).startswith("model.pdb is centred")


def test_a_model_elsewhere_does_not_overlap(igg_map):
    vol, apix, atoms = igg_map
    away = replace(atoms, coords_A=atoms.coords_A + np.array([0.3, 0.0, 0.0]) * vol.shape[0] * apix)
    with pytest.raises(InputError, match="does not overlap the consensus map") as err:
        check_model_in_map(residue_model(away), vol, apix, name="model.pdb")
    assert "origin at voxel 0" in str(err.value)
