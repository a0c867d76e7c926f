"""One Gaussian per residue of an atomic model: cryoSPHERE's coarse representation.

**Residues.** Every amino acid (by gemmi's residue table, or any residue with a ``CA``
and ``N``) is represented at its ``CA``, every nucleotide at its ``C1'`` (``C1*`` in old
files). Its amplitude is the residue's electron count: the sum of the atomic numbers of
its atoms in the file (hydrogens only if the file has them). Every other atom (ligands,
ions, glycans, waters, residues without their representative atom) moves with the
nearest represented residue (by distance to its representative atom), so that a moved
model keeps every atom.

**Frame.** Coordinates are the model file's, in Å, and the model must sit in the frame of
the particles' consensus map as ``cryohet backproject`` writes it (the map's origin at
voxel 0, so the particle centre is at ``(D // 2) * apix`` Å on each axis): the frame a
model has after fitting it into that map in ChimeraX. :meth:`ResidueModel.centres_A`
gives the positions from the box centre, the :class:`GaussianMixture` convention.

**Continuity.** ``bonded_to_next[i]`` is True when residue ``i + 1`` follows ``i`` in the
file within the same chain at the representative-atom distance of a bonded pair (< 4.5 Å
for amino acids, < 8 Å for nucleotides): a continuity term must not pull across a gap
(missing residues) or a chain end. The numbering is not used: antibody numbering skips
numbers between bonded residues, and insertion codes (82, 82A, 82B) repeat them.
"""

from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np
import torch

from ..errors import InputError, file_error
from ..io.atomic import AtomicModel
from .gaussian_mixture import GaussianMixture, peak_from_mass

__all__ = ["ResidueModel", "residue_model"]

_BOND_LIMIT_A = {"protein": 4.5, "nucleic": 8.0}


@dataclass
class ResidueModel:
    """The residues of an atomic model, one Gaussian each (module docstring).

    Attributes:
        coords_A: ``(R, 3)`` representative-atom positions ``(x, y, z)`` in Å, model frame.
        electrons: ``(R,)`` electron count of each residue.
        chain_ids, residue_numbers, insertion_codes, residue_names: ``(R,)`` identity of each residue.
        kind: ``(R,)`` ``"protein"`` or ``"nucleic"``.
        movable: ``(R,)`` bool: in the chains the method may move (all when none were named).
        bonded_to_next: ``(R,)`` bool (module docstring; False for the last residue).
        atom_residue: ``(N,)`` index of the residue each atom of ``atoms`` moves with.
        atoms: the full atomic model (every atom, for writing moved models).
    """

    coords_A: np.ndarray
    electrons: np.ndarray
    chain_ids: np.ndarray
    residue_numbers: np.ndarray
    insertion_codes: np.ndarray
    residue_names: np.ndarray
    kind: np.ndarray
    movable: np.ndarray
    bonded_to_next: np.ndarray
    atom_residue: np.ndarray
    atoms: AtomicModel

    def __len__(self) -> int:
        return len(self.coords_A)

    @property
    def chains(self) -> list[str]:
        """Chains with represented residues, in file order."""
        _, first = np.unique(self.chain_ids, return_index=True)
        return [str(self.chain_ids[i]) for i in sorted(first)]

    def centres_A(self, box: int, apix: float) -> np.ndarray:
        """``(R, 3)`` positions in Å from the centre of a ``box``-pixel map at ``apix`` Å/px
        whose origin is voxel 0 (the consensus map's frame): ``coords - (box // 2) * apix``."""
        return self.coords_A - (box // 2) * float(apix)

    def mixture(
        self, box: int, apix: float, sigma_A: float = 2.0, device: torch.device | str = "cpu"
    ) -> GaussianMixture:
        """The residues as a :class:`GaussianMixture` (Å from the box centre), each of mass
        its electron count (per Å^3: amplitude ``electrons / ((2 pi)^{3/2} sigma^3)``)."""
        centres = torch.as_tensor(self.centres_A(box, apix), dtype=torch.float32, device=device)
        amps = peak_from_mass(torch.as_tensor(self.electrons, dtype=torch.float32, device=device), float(sigma_A))
        return GaussianMixture(centres, amps, torch.tensor(float(sigma_A), device=device))

    def move_atoms(self, rotations: np.ndarray, translations_A: np.ndarray) -> np.ndarray:
        """Every atom moved rigidly with its residue: ``x' = R_r x + t_r`` in the model frame
        (``rotations (R, 3, 3)`` act on column vectors about the model frame's origin,
        ``translations_A (R, 3)``). Returns ``(N, 3)`` float64."""
        r = np.asarray(rotations, dtype=np.float64)[self.atom_residue]
        t = np.asarray(translations_A, dtype=np.float64)[self.atom_residue]
        return np.einsum("nij,nj->ni", r, self.atoms.coords_A) + t


def _residue_kind(name: str, atom_names: set[str]) -> str | None:
    info = gemmi.find_tabulated_residue(name)
    if info is not None and info.is_amino_acid():
        return "protein"
    if info is not None and info.is_nucleic_acid():
        return "nucleic"
    if "CA" in atom_names and "N" in atom_names:  # a modified amino acid missing from the table
        return "protein"
    return None


def residue_model(atoms: AtomicModel, chains: list[str] | None = None) -> ResidueModel:
    """The residue Gaussians of ``atoms`` (module docstring); ``chains`` names the movable ones.

    Raises :class:`InputError` (one line) for a model without amino acids or nucleotides
    and for a named chain that the model does not have.
    """
    name = atoms.source if atoms.source is not None else "the model"
    n = len(atoms)
    key = np.stack(
        [atoms.chain_ids, atoms.residue_numbers.astype(str), atoms.insertion_codes, atoms.residue_names], axis=1
    )
    starts = np.flatnonzero(np.r_[True, (key[1:] != key[:-1]).any(axis=1)])
    ends = np.r_[starts[1:], n]
    z = np.array([gemmi.Element(e).atomic_number for e in atoms.elements], dtype=np.float64)
    reps, kinds, spans = [], [], []
    for a, b in zip(starts, ends):
        names = [str(x) for x in atoms.atom_names[a:b]]
        kind = _residue_kind(str(atoms.residue_names[a]), set(names))
        rep_name = {"protein": ("CA",), "nucleic": ("C1'", "C1*")}.get(kind or "", ())
        rep = next((a + names.index(r) for r in rep_name if r in names), None)
        if kind is None or rep is None:
            continue
        reps.append(rep)
        kinds.append(kind)
        spans.append((a, b))
    if not reps:
        raise file_error(name, "no amino acids (CA) or nucleotides (C1') to represent; is it an atomic model?")
    rep_idx = np.asarray(reps)
    coords = atoms.coords_A[rep_idx]
    atom_residue = np.full(n, -1, dtype=np.int64)
    for i, (a, b) in enumerate(spans):
        atom_residue[a:b] = i
    orphans = np.flatnonzero(atom_residue < 0)
    if len(orphans):  # ligands, ions, waters: with the nearest represented residue
        for c in range(0, len(orphans), 4096):
            sel = orphans[c : c + 4096]
            d2 = ((atoms.coords_A[sel, None, :] - coords[None]) ** 2).sum(-1)
            atom_residue[sel] = d2.argmin(axis=1)
    electrons = np.bincount(atom_residue, weights=z, minlength=len(rep_idx))
    chain_ids = atoms.chain_ids[rep_idx]
    resnum = atoms.residue_numbers[rep_idx]
    kind_arr = np.asarray(kinds)
    limit = np.array([_BOND_LIMIT_A[k] for k in kinds])
    step = np.linalg.norm(np.diff(coords, axis=0), axis=1)
    bonded = np.zeros(len(rep_idx), dtype=bool)
    icode = atoms.insertion_codes[rep_idx]
    # file order within a chain, judged by distance alone: antibody (Kabat/EU) numbering
    # skips numbers between bonded residues (1HZH: H 130 -> 133 at 3.8 Å), while missing
    # residues leave a gap in space (1HZH: K 127 -> 137 at 10.9 Å)
    bonded[:-1] = (chain_ids[1:] == chain_ids[:-1]) & (kind_arr[1:] == kind_arr[:-1]) & (step < limit[:-1])
    present = list(dict.fromkeys(chain_ids.tolist()))
    if chains:
        missing = [c for c in chains if c not in present]
        if missing:
            raise InputError(
                f"{name}: chain {', '.join(missing)} not in the model (chains with residues: {', '.join(present)})"
            )
        movable = np.isin(chain_ids, list(chains))
    else:
        movable = np.ones(len(rep_idx), dtype=bool)
    return ResidueModel(
        coords_A=coords,
        electrons=electrons,
        chain_ids=chain_ids,
        residue_numbers=resnum,
        insertion_codes=icode,
        residue_names=atoms.residue_names[rep_idx],
        kind=kind_arr,
        movable=movable,
        bonded_to_next=bonded,
        atom_residue=atom_residue,
        atoms=atoms,
    )
