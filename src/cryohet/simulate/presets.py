"""Simulation presets built from atomic models that ship with cryohet.

==========  ================================================================  ==========
preset      heterogeneity                                                     box (Å)
==========  ================================================================  ==========
igg-1d      IgG1 b12 (PDB 1HZH): Fab 1 (chain L + heavy chain H up to          384
            residue 230) turns about the hinge axis H:230 CA -> H:239 CA
            through 360° (CryoBench IgG-1D-like), equal populations
igg-rl      the same Fab in random orientations about the hinge (axis random,  384
            angle ≤ 75°, shift ≤ 6 Å, clash-free) (CryoBench IgG-RL-like)
assembly    bovine cytochrome c oxidase dimer (PDB 1OCC, 26 chains): 10        288
            assembly intermediates that differ by which chains are present,
            populations spanning 10× (Ribosembly-like, compositional)
custom      a user's model: one state, or a hinge motion given by ``moving``   from model
            and ``axis`` selections
==========  ================================================================  ==========

The physical box defaults to CryoBench's (128 px × 3 Å for IgG), so the pixel size is
``box_A / D`` unless given. Selections for ``custom`` read ``"L,H:1-230"`` (whole chain L
and residues 1–230 of chain H) and ``"H:230,H:239"`` (two CA atoms defining the axis).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import AtomicModel, read_atomic_model
from .catalog import PRESETS, PresetInfo
from .ensembles import (
    Ensemble,
    _ca_position,
    assembly_ensemble,
    chain_superposition,
    hinge_ensemble,
    random_hinge_ensemble,
    single_state,
)

__all__ = ["PRESETS", "PresetInfo", "build_ensemble", "bundled_model_path", "parse_selection"]


#: IgG1 b12 (1HZH): Fab 1 = light chain L + heavy chain H residues <= 230 (Cys230 bonds L Cys214).
_IGG_MOVING_CHAINS = ("L",)
_IGG_HEAVY, _IGG_LAST_FAB_RESIDUE = "H", 230
_IGG_AXIS = (("H", 230), ("H", 239))  # CA atoms: Cys230 (Fab end of the hinge) -> Cys239 (first inter-heavy disulfide)

#: 1OCC assembly intermediates: monomer 1 = chains A-M, monomer 2 = N-Z (same subunit order).
_M1 = "ABCDEFGHIJKLM"
_M2 = "NOPQRSTUVWXYZ"


def _pair(idx: str) -> tuple[str, ...]:
    """The same subunits (by position in the monomer) from both monomers."""
    pos = [_M1.index(c) for c in idx]
    return tuple(_M1[p] for p in pos) + tuple(_M2[p] for p in pos)


_ASSEMBLY_STATES: list[tuple[str, ...]] = [
    _pair("A"),  # COX1 cores only
    _pair("AB"),
    _pair("ABC"),  # catalytic cores
    _pair("ABC") + tuple("DEF"),  # monomer 1 starts gathering peripheral subunits
    _pair("ABCDEF"),
    _pair("ABCDEFGHI"),
    _pair("ABCDEFGHIJK"),
    _pair(_M1),  # complete dimer
    _pair("ABCDEFGHIJK") + tuple("LM"),  # one monomer complete
    tuple(_M1),  # a lone complete monomer
]
_ASSEMBLY_POPULATIONS = np.array([6, 9, 15, 28, 19, 24, 3, 25, 8, 7], dtype=np.float64)


def bundled_model_path(name: str) -> Path:
    """Path of a model shipped in ``cryohet/resources/models``."""
    ref = resources.files("cryohet.resources") / "models" / name
    return Path(str(ref))


def parse_selection(model: AtomicModel, text: str) -> np.ndarray:
    """Boolean atom mask from ``"L,H:1-230"`` (chains, optionally with residue ranges)."""
    mask = np.zeros(len(model), dtype=bool)
    for item in filter(None, (t.strip() for t in text.split(","))):
        m = re.fullmatch(r"([A-Za-z0-9]+)(?::(-?\d+)-(-?\d+))?", item)
        if not m:
            raise InputError(f"selection '{item}': expected CHAIN or CHAIN:START-END")
        chain, lo, hi = m.group(1), m.group(2), m.group(3)
        sel = model.chain_ids == chain
        if not sel.any():
            raise InputError(
                f"selection '{item}': chain {chain} not in {model.source} (chains: {', '.join(model.chains)})"
            )
        if lo is not None:
            sel &= (model.residue_numbers >= int(lo)) & (model.residue_numbers <= int(hi))
        mask |= sel
    if not mask.any():
        raise InputError(f"selection '{text}' selects no atoms")
    return mask


def _parse_axis(model: AtomicModel, text: str) -> tuple[np.ndarray, np.ndarray]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(re.fullmatch(r"[A-Za-z0-9]+:-?\d+", p) for p in parts):
        raise InputError(f"axis '{text}': expected CHAIN:RES,CHAIN:RES (two CA atoms)")
    pts = [_ca_position(model, p.split(":")[0], int(p.split(":")[1])) for p in parts]
    if np.linalg.norm(pts[1] - pts[0]) < 1.0:
        raise InputError(f"axis '{text}': the two atoms coincide")
    return pts[0], pts[1]


def load_model(path: str | Path) -> AtomicModel:
    """Read an atomic model for simulation: no hydrogens, no waters, at least one atom."""
    model = read_atomic_model(path, remove_hydrogens=True, remove_waters=True)
    return model


def build_ensemble(
    preset: str,
    n_states: int | None,
    rng: np.random.Generator,
    model_path: str | Path | None = None,
    moving: str | None = None,
    axis: str | None = None,
    angle_range_deg: tuple[float, float] = (0.0, 360.0),
) -> Ensemble:
    """The ensemble of a preset (see the module table)."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
    info = PRESETS[preset]
    if preset == "custom":
        if model_path is None:
            raise InputError("preset 'custom' needs --model X.pdb|X.cif")
        model = load_model(model_path)
        if moving is None and axis is None:
            return single_state(model, f"single state of {Path(model_path).name}")
        if moving is None or axis is None:
            raise InputError("a custom hinge motion needs both --moving and --axis")
        mask = parse_selection(model, moving)
        a, b = _parse_axis(model, axis)
        return hinge_ensemble(
            model, mask, a, b, n_states or 20, angle_range_deg, f"{Path(model_path).name}: {moving} about {axis}"
        )
    model = load_model(model_path or bundled_model_path(info.model or ""))
    n = n_states or info.default_states
    if preset in ("igg-1d", "igg-rl"):
        mask = np.isin(model.chain_ids, _IGG_MOVING_CHAINS) | (
            (model.chain_ids == _IGG_HEAVY) & (model.residue_numbers <= _IGG_LAST_FAB_RESIDUE)
        )
        a = _ca_position(model, *_IGG_AXIS[0])
        b = _ca_position(model, *_IGG_AXIS[1])
        if preset == "igg-1d":
            return hinge_ensemble(model, mask, a, b, n, angle_range_deg, info.summary)
        return random_hinge_ensemble(model, mask, a, n, rng, description=info.summary)
    # assembly
    if n > len(_ASSEMBLY_STATES):
        raise InputError(f"preset 'assembly' has {len(_ASSEMBLY_STATES)} states; asked for {n}")
    # the dimer's two-fold: monomer 2 onto monomer 1 (and, being a two-fold, back)
    two_fold, _, _ = chain_superposition(model, _M2, _M1)
    return assembly_ensemble(
        model, _ASSEMBLY_STATES[:n], _ASSEMBLY_POPULATIONS[:n], info.summary, pseudo_symmetry=two_fold[None]
    )
