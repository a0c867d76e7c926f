"""A tiny simulated hinge for the cryoSPHERE tests: a Fab (1HZH chains H 1-230 and L, no
glycans) whose light chain turns by 40° about an axis through the heavy chain; 2 states,
600 images at D=32 and 5 Å/px, SNR 1. The model is written in the consensus map's frame
(the simulator put ``centre_A`` on the box centre), as PDB and as mmCIF."""

from __future__ import annotations

import json
from pathlib import Path

import gemmi
import numpy as np

from cryohet.simulate.config import SimulationConfig
from cryohet.simulate.presets import bundled_model_path
from cryohet.simulate.simulator import simulate_dataset


def fab_structure() -> gemmi.Structure:
    st = gemmi.read_structure(str(bundled_model_path("1hzh.pdb.gz")))
    st.remove_hydrogens()
    st.remove_waters()
    model = st[0]
    for chain in model:  # glycans and other hetero residues out: a plain Fab
        for i in reversed(range(len(chain))):
            if chain[i].het_flag == "H":
                del chain[i]
    for name in ("K", "M"):
        model.remove_chain(name)
    heavy = model["H"]
    for i in reversed(range(len(heavy))):
        if heavy[i].seqid.num > 230:
            del heavy[i]
    return st


def fab_with_light_chain_body(path: Path, box: int, apix: float, **network: object) -> tuple:
    """The Fab written to ``path``, centred in a ``box``-pixel map at ``apix``: its residue
    model (every chain movable), a :class:`SphereNetwork` (``network`` keyword arguments)
    and its light chain as a searched body (pivot where the chain leaves the fold, a fixed
    oblique axis)."""
    import torch

    from cryohet.io.atomic import read_atomic_model
    from cryohet.methods.sphere.body_search import Body, body_pivot_A
    from cryohet.methods.sphere.network import SphereNetwork
    from cryohet.representations.residue_model import residue_model

    fab_structure().write_pdb(str(path))
    atoms = read_atomic_model(path)
    atoms.coords_A = atoms.coords_A - atoms.coords_A.mean(0) + (box // 2) * apix
    residues = residue_model(atoms, None)
    net = SphereNetwork(residues, box, apix, **network).eval()
    in_body = torch.as_tensor(np.asarray(residues.chain_ids) == "L")
    pivot = body_pivot_A(net.base_A, in_body, torch.as_tensor(residues.bonded_to_next))
    axis = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8]), dim=0)
    return residues, net, Body(torch.nonzero(in_body).squeeze(1), pivot, axis)


def shifted(st: gemmi.Structure, shift_A: np.ndarray) -> gemmi.Structure:
    out = st.clone()
    for model in out:
        for chain in model:
            for res in chain:
                for atom in res:
                    p = atom.pos
                    atom.pos = gemmi.Position(p.x + shift_A[0], p.y + shift_A[1], p.z + shift_A[2])
    return out


def make_hinge(root: Path, n_images: int = 600) -> tuple[Path, Path, Path]:
    """``(model_map.pdb, model_map.cif, data folder)`` of the hinge (module docstring)."""
    st = fab_structure()
    fab = root / "fab.pdb"
    st.write_pdb(str(fab))
    data = root / "data"
    simulate_dataset(SimulationConfig(
        preset="custom", model=fab, moving="L", axis="H:150,H:190", angle_min_deg=0.0, angle_max_deg=40.0,
        n_states=2, out=data, n_images=n_images, box=32, apix=5.0, snr=1.0, seed=5,
    ))  # fmt: skip
    meta = json.loads((data / "meta.json").read_text())
    in_map = shifted(st, -np.asarray(meta["centre_A"]) + (meta["box"] // 2) * meta["apix"])
    pdb, cif = root / "fab_map.pdb", root / "fab_map.cif"
    in_map.write_pdb(str(pdb))
    in_map.setup_entities()
    in_map.make_mmcif_document().write_file(str(cif))
    return pdb, cif, data
