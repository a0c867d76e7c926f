"""Ensembles of structures with known answers: conformational and compositional states.

An :class:`Ensemble` is a list of states; each state is a set of atom positions (and a
mask of which atoms are present) plus a population weight and a few ground-truth
collective variables. Builders:

* :func:`hinge_ensemble` — one rigid body (e.g. a Fab) rotates about a hinge axis
  through a dihedral range (CryoBench IgG-1D-like);
* :func:`random_hinge_ensemble` — the rigid body takes random orientations about a
  hinge pivot (random axis, bounded angle, small translation), rejecting clashes
  (CryoBench IgG-RL-like);
* :func:`assembly_ensemble` — states differ by which chains are present, with unequal
  populations (Ribosembly-like).

Coordinates are Å in the model's frame; the simulator centres them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError
from ..geometry.rotations import axis_angle_to_matrix
from ..io.atomic import AtomicModel

__all__ = ["State", "Ensemble", "hinge_ensemble", "random_hinge_ensemble", "assembly_ensemble", "single_state"]


@dataclass
class State:
    """One ground-truth state.

    Attributes:
        coords_A: (A, 3) positions of all atoms of the model (absent ones included).
        present: (A,) bool, which atoms exist in this state.
        variables: ground-truth collective variables (e.g. ``dihedral_deg``).
    """

    coords_A: np.ndarray
    present: np.ndarray
    variables: dict[str, float] = field(default_factory=dict)


@dataclass
class Ensemble:
    """States of one model with their populations (summing to 1)."""

    model: AtomicModel
    states: list[State]
    populations: np.ndarray
    description: str
    moving_atoms: np.ndarray | None = None  # (A,) bool: atoms that move/appear between states
    variable_names: tuple[str, ...] = ()
    #: (K, 3, 3) rotations ``S`` of the model frame with ``X ≈ S X + t`` for the complete
    #: complex (a pseudo-symmetry: poses ``A`` and ``A S^T`` give the same image)
    pseudo_symmetry: np.ndarray | None = None

    def __post_init__(self) -> None:
        p = np.asarray(self.populations, dtype=np.float64)
        self.populations = p / p.sum()

    @property
    def n_states(self) -> int:
        return len(self.states)

    def gt_latents(self) -> np.ndarray:
        """(n_states, n_variables) ground-truth collective variables."""
        if not self.variable_names:
            return np.arange(self.n_states, dtype=np.float64)[:, None]
        return np.array([[s.variables[k] for k in self.variable_names] for s in self.states])


def _rotate_about(points: np.ndarray, pivot: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
    R = axis_angle_to_matrix(rotvec)
    return (points - pivot) @ R.T + pivot


def chain_superposition(model: AtomicModel, chains_from: str, chains_to: str) -> tuple[np.ndarray, np.ndarray, float]:
    """The rigid motion ``x_to ≈ R x_from + t`` that superposes the CA atoms of the chains
    ``chains_from`` onto those of ``chains_to`` (paired by position in the two strings, atoms
    by residue number): ``R (3, 3)``, ``t (3,)`` Å and the RMSD (Å) of the fit."""
    import torch

    from ..geometry.rigid import kabsch

    src, dst = [], []
    for a, b in zip(chains_from, chains_to, strict=True):
        ca_a = (model.chain_ids == a) & (model.atom_names == "CA")
        ca_b = (model.chain_ids == b) & (model.atom_names == "CA")
        res_a = dict(zip(model.residue_numbers[ca_a].tolist(), model.coords_A[ca_a]))
        res_b = dict(zip(model.residue_numbers[ca_b].tolist(), model.coords_A[ca_b]))
        for r in sorted(set(res_a) & set(res_b)):
            src.append(res_a[r])
            dst.append(res_b[r])
    if len(src) < 3:
        raise InputError(f"{model.source}: chains {chains_from} and {chains_to} share fewer than 3 CA atoms")
    x, y = np.asarray(src), np.asarray(dst)
    rot, t = kabsch(torch.as_tensor(x)[None], torch.as_tensor(y)[None], torch.ones(1, len(x), dtype=torch.float64))
    R, t = rot[0].numpy(), t[0].numpy()
    rmsd = float(np.sqrt(np.mean(np.sum((x @ R.T + t - y) ** 2, axis=1))))
    return R, t, rmsd


def _ca_position(model: AtomicModel, chain: str, residue: int) -> np.ndarray:
    sel = (model.chain_ids == chain) & (model.residue_numbers == residue) & (model.atom_names == "CA")
    if not sel.any():
        raise InputError(f"{model.source}: no CA atom for chain {chain} residue {residue}")
    return model.coords_A[np.argmax(sel)]


def single_state(model: AtomicModel, description: str = "single state") -> Ensemble:
    """The model as it is: one state (for homogeneous tests and ``custom`` models)."""
    state = State(model.coords_A.copy(), np.ones(len(model), dtype=bool))
    return Ensemble(model, [state], np.ones(1), description)


def hinge_ensemble(
    model: AtomicModel,
    moving: np.ndarray,
    axis_from: np.ndarray,
    axis_to: np.ndarray,
    n_states: int,
    angle_range_deg: tuple[float, float] = (0.0, 360.0),
    description: str = "hinge rotation",
) -> Ensemble:
    """``moving`` atoms rotate about the line ``axis_from -> axis_to`` through a dihedral range.

    States are evenly spaced in the dihedral; a full 360° range excludes the end point
    so no state repeats. Populations are equal.
    """
    lo, hi = angle_range_deg
    full_turn = np.isclose((hi - lo) % 360.0, 0.0) and hi != lo
    angles = np.linspace(lo, hi, n_states, endpoint=not full_turn)
    axis = (axis_to - axis_from) / np.linalg.norm(axis_to - axis_from)
    states = []
    for ang in angles:
        xyz = model.coords_A.copy()
        xyz[moving] = _rotate_about(xyz[moving], axis_from, axis * np.deg2rad(ang))
        states.append(State(xyz, np.ones(len(model), dtype=bool), {"dihedral_deg": float(ang)}))
    return Ensemble(
        model, states, np.ones(n_states), description, moving_atoms=moving, variable_names=("dihedral_deg",)
    )


def _clashes(moved: np.ndarray, static_tree: cKDTree, min_dist_A: float) -> int:
    return int(sum(len(x) > 0 for x in static_tree.query_ball_point(moved, r=min_dist_A)))


def random_hinge_ensemble(
    model: AtomicModel,
    moving: np.ndarray,
    pivot: np.ndarray,
    n_states: int,
    rng: np.random.Generator,
    max_angle_deg: float = 75.0,
    max_shift_A: float = 6.0,
    clash_dist_A: float = 3.0,
    max_clashing_ca: int = 5,
    description: str = "random hinge configurations",
) -> Ensemble:
    """Random rigid configurations of ``moving`` about ``pivot`` without clashes.

    Each state rotates the moving atoms about the pivot by an angle uniform in
    ``[0, max_angle_deg]`` about a uniformly random axis, then translates them by up to
    ``max_shift_A``. Configurations in which more than ``max_clashing_ca`` moving CA
    atoms come within ``clash_dist_A`` of static CA atoms are redrawn. Ground-truth
    variables: distance between the centres of mass of the moving and static parts,
    and the rotation angle.
    """
    ca = model.atom_names == "CA"
    static_tree = cKDTree(model.coords_A[ca & ~moving])
    moving_ca = np.nonzero(ca[moving])[0]
    static_com = model.coords_A[~moving].mean(axis=0)
    states = []
    tries = 0
    while len(states) < n_states:
        tries += 1
        if tries > 200 * n_states:
            raise InputError("could not place the moving part without clashes; lower the angle range")
        axis = rng.standard_normal(3)
        axis /= np.linalg.norm(axis)
        ang = rng.uniform(0.0, max_angle_deg)
        shift = rng.standard_normal(3)
        shift *= rng.uniform(0.0, max_shift_A) / np.linalg.norm(shift)
        moved = _rotate_about(model.coords_A[moving], pivot, axis * np.deg2rad(ang)) + shift
        if _clashes(moved[moving_ca], static_tree, clash_dist_A) > max_clashing_ca:
            continue
        xyz = model.coords_A.copy()
        xyz[moving] = moved
        variables = {
            "com_distance_A": float(np.linalg.norm(moved.mean(axis=0) - static_com)),
            "angle_deg": float(ang),
        }
        states.append(State(xyz, np.ones(len(model), dtype=bool), variables))
    return Ensemble(
        model,
        states,
        np.ones(n_states),
        description,
        moving_atoms=moving,
        variable_names=("com_distance_A", "angle_deg"),
    )


def assembly_ensemble(
    model: AtomicModel,
    chain_sets: list[tuple[str, ...]],
    populations: np.ndarray,
    description: str = "assembly states",
    pseudo_symmetry: np.ndarray | None = None,
) -> Ensemble:
    """States that contain only the listed chains, with the given relative populations (and
    the complete complex's pseudo-symmetry rotations, if it has any)."""
    if len(chain_sets) != len(populations):
        raise ValueError("one population per chain set")
    known = set(model.chains)
    states = []
    for i, chains in enumerate(chain_sets):
        unknown = set(chains) - known
        if unknown:
            raise InputError(f"{model.source}: chains {sorted(unknown)} not in the model")
        present = np.isin(model.chain_ids, list(chains))
        states.append(State(model.coords_A.copy(), present, {"n_chains": float(len(chains)), "state": float(i)}))
    varying = ~np.all([s.present for s in states], axis=0)
    return Ensemble(
        model,
        states,
        np.asarray(populations, dtype=np.float64),
        description,
        moving_atoms=varying,
        variable_names=("state",),
        pseudo_symmetry=pseudo_symmetry,
    )
