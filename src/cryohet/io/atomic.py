"""Atomic models (PDB, mmCIF, optionally gzipped) through ``gemmi``.

Only the first model of a file is read. Coordinates are in Å in the file's frame
(``(x, y, z)`` columns, unlike volume arrays which are ``(z, y, x)``). Alternative
conformations are reduced to one (gemmi's ``remove_alternative_conformations``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import gemmi
import numpy as np

from ..errors import file_error

__all__ = ["AtomicModel", "read_atomic_model", "write_atomic_models"]


@dataclass
class AtomicModel:
    """Per-atom arrays of one model, all of length N.

    Attributes:
        coords_A: (N, 3) float64 Cartesian ``(x, y, z)`` in Å.
        elements: (N,) element symbols (``"C"``, ``"Fe"``), title case.
        atom_names: (N,) atom names (``"CA"``).
        chain_ids: (N,) chain names.
        residue_numbers: (N,) int sequence numbers.
        insertion_codes: (N,) insertion codes (``""`` for none; Kabat-numbered antibodies
            have residues 82, 82A, 82B, ...).
        residue_names: (N,) residue names (``"GLY"``, ``"HOH"``).
        b_factors: (N,) isotropic B in Å².
        occupancies: (N,) occupancy in [0, 1].
        is_hetero: (N,) bool, HETATM records.
        source: the file it came from.
    """

    coords_A: np.ndarray
    elements: np.ndarray
    atom_names: np.ndarray
    chain_ids: np.ndarray
    residue_numbers: np.ndarray
    insertion_codes: np.ndarray
    residue_names: np.ndarray
    b_factors: np.ndarray
    occupancies: np.ndarray
    is_hetero: np.ndarray
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.coords_A)

    def subset(self, mask: np.ndarray) -> AtomicModel:
        """Atoms selected by a boolean mask or an index array."""
        kw = {f.name: getattr(self, f.name)[mask] for f in fields(self) if f.name != "source"}
        return AtomicModel(**kw, source=self.source)

    def select_chains(self, chains: list[str] | tuple[str, ...]) -> AtomicModel:
        """Atoms of the named chains."""
        return self.subset(np.isin(self.chain_ids, list(chains)))

    @property
    def chains(self) -> list[str]:
        """Chain names in file order."""
        _, first = np.unique(self.chain_ids, return_index=True)
        return [str(self.chain_ids[i]) for i in sorted(first)]


def _read_structure(p: Path, remove_hydrogens: bool, remove_waters: bool) -> gemmi.Structure:
    """The structure as :func:`read_atomic_model` sees it (same filters, same atom order)."""
    if not p.exists():
        raise file_error(p, "file not found")
    try:
        st = gemmi.read_structure(str(p))
    except Exception as err:  # noqa: BLE001 - gemmi raises RuntimeError/ValueError on bad input
        raise file_error(
            p, f"not a readable PDB/mmCIF file ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from None
    if len(st) == 0:
        raise file_error(p, "contains no atoms (no MODEL records)")
    st.remove_alternative_conformations()
    if remove_hydrogens:
        st.remove_hydrogens()
    if remove_waters:
        st.remove_waters()
    return st


def read_atomic_model(path: str | Path, *, remove_hydrogens: bool = False, remove_waters: bool = False) -> AtomicModel:
    """Read the first model of a PDB/mmCIF file (``.pdb``, ``.cif``, ``.ent``, ``.gz``)."""
    p = Path(path)
    st = _read_structure(p, remove_hydrogens, remove_waters)
    model = st[0]
    coords, elem, names, chains, resnum, icode, resname, bfac, occ, het = ([] for _ in range(10))
    for chain in model:
        for res in chain:
            for atom in res:
                pos = atom.pos
                coords.append((pos.x, pos.y, pos.z))
                elem.append(atom.element.name)
                names.append(atom.name)
                chains.append(chain.name)
                resnum.append(res.seqid.num)
                icode.append(res.seqid.icode.strip())
                resname.append(res.name)
                bfac.append(atom.b_iso)
                occ.append(atom.occ)
                het.append(res.het_flag == "H")
    if not coords:
        raise file_error(p, "contains no atoms" + (" after filtering" if remove_hydrogens or remove_waters else ""))
    return AtomicModel(
        coords_A=np.asarray(coords, dtype=np.float64),
        elements=np.asarray(elem, dtype=str),
        atom_names=np.asarray(names, dtype=str),
        chain_ids=np.asarray(chains, dtype=str),
        residue_numbers=np.asarray(resnum, dtype=np.int64),
        insertion_codes=np.asarray(icode, dtype=str),
        residue_names=np.asarray(resname, dtype=str),
        b_factors=np.asarray(bfac, dtype=np.float64),
        occupancies=np.asarray(occ, dtype=np.float64),
        is_hetero=np.asarray(het, dtype=bool),
        source=p,
    )


def write_atomic_models(
    source: AtomicModel,
    coords_A: list[np.ndarray] | np.ndarray,
    path: str | Path,
    *,
    remove_hydrogens: bool = False,
    remove_waters: bool = False,
) -> Path:
    """Write ``source``'s first model with new coordinates, one MODEL per entry of ``coords_A``.

    ``coords_A``: ``(N, 3)`` or a list/stack of them, in the atom order of ``source`` (read
    by :func:`read_atomic_model` with the same ``remove_*`` flags). Everything else comes
    from ``source``'s file unchanged: chains, residue numbers and insertion codes, atom
    names, B-factors, occupancies, HETATM records, cell and header. The format follows the
    suffix of ``path``: ``.cif``/``.mmcif`` (optionally ``.gz``-less) writes mmCIF, anything
    else PDB. Several models go to one file as MODEL records (ChimeraX opens them as a
    series). Returns ``path``.
    """
    if source.source is None:
        raise ValueError("the source model has no file to copy from")
    frames = [np.asarray(coords_A, dtype=np.float64)] if np.ndim(coords_A) == 2 else list(coords_A)
    st = _read_structure(Path(source.source), remove_hydrogens, remove_waters)
    while len(st) > 1:
        del st[len(st) - 1]
    template = st[0].clone()
    del st[0]
    for k, xyz in enumerate(frames):
        xyz = np.asarray(xyz, dtype=np.float64)
        if xyz.shape != (len(source), 3):
            raise ValueError(f"model {k}: coordinates {xyz.shape}, the source has {len(source)} atoms")
        model = template.clone()
        model.num = k + 1
        i = 0
        for chain in model:
            for res in chain:
                for atom in res:
                    atom.pos = gemmi.Position(*xyz[i])
                    i += 1
        if i != len(source):
            raise ValueError(f"{source.source}: {i} atoms in the file, {len(source)} in the model read from it")
        st.add_model(model)
    out = Path(path)
    if out.suffix.lower() in (".cif", ".mmcif"):
        st.setup_entities()
        st.make_mmcif_document().write_file(str(out))
    else:
        st.write_pdb(str(out))
    return out


def model_suffix(source: AtomicModel | str | Path) -> str:
    """``.cif`` when ``source`` (a model or its file) is mmCIF, else ``.pdb``: the format a
    method writes moved copies of an input model in."""
    path = Path(source.source if isinstance(source, AtomicModel) else source)
    names = [s.lower() for s in path.suffixes]
    return ".cif" if ".cif" in names or ".mmcif" in names else ".pdb"
