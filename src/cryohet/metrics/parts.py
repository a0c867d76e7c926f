"""Do discovered parts match what really moves or comes and goes? (ground-truth atoms)

For Gaussian-mixture methods with part labels (CryoSPIRE) and simulated data whose
``gt/atoms.npz`` records every state's atom positions:

* :func:`moving_part_purity` — each Gaussian is labelled *moving* or *static* by the
  nearest present atom at each state's latent (majority over states); the part holding
  most moving Gaussians should hold at least 80 % of them and under 40 % of the rest.
* :func:`absent_chain_occupancy` — each Gaussian belongs to the chain of the atom nearest
  its centre in the state where its gate is most open;
  for every state, the mean occupancy gate of each chain's Gaussians weighted by their
  ungated amplitudes (the chain's decoded mass over its full mass), flagged by whether
  the chain is present in that state (absent chains should fall below 0.2).

State latents follow the CryoBench protocol (the image latent nearest the state's mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .per_conformation import nearest_to_mean

__all__ = ["GroundTruthAtoms", "moving_part_purity", "absent_chain_occupancy"]


@dataclass
class GroundTruthAtoms:
    """Per-state atom positions of a simulation (:func:`cryohet.evaluation.ground_truth.load_gt_atoms`)."""

    coords_A: np.ndarray  # (S, A, 3) in the maps' frame
    present: np.ndarray  # (S, A)
    chain_ids: np.ndarray  # (A,)
    moving: np.ndarray  # (A,)


def _state_gaussians(model, latents: np.ndarray, labels: np.ndarray) -> list[dict[str, np.ndarray]]:
    """The method's Gaussians at each state's latent (sorted states; labels must be 0..S-1
    for the atoms to be indexed by position)."""
    rows = nearest_to_mean(latents, labels)
    return [model.gaussians_at(latents[rows[s]]) for s in sorted(rows)]


def _base_amplitudes(per_state: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Ungated amplitude of every Gaussian (G,): ``base_amplitudes`` when the method gives
    them, else ``amplitude / occupancy`` where the gate is open (largest over the states;
    0 for a Gaussian whose gate is closed in every state)."""
    if "base_amplitudes" in per_state[0]:
        return np.asarray(per_state[0]["base_amplitudes"], np.float64)
    ratios = []
    for g in per_state:
        occ = np.asarray(g["occupancy"], np.float64)
        amp = np.asarray(g["amplitudes"], np.float64)
        ratios.append(np.where(occ > 1e-6, amp / np.clip(occ, 1e-6, None), 0.0))
    return np.max(ratios, axis=0)


def moving_part_purity(model, latents: np.ndarray, labels: np.ndarray, atoms: GroundTruthAtoms) -> dict[str, float]:
    """Fraction of moving Gaussians in their main part, and that part's share of static ones."""
    per_state = _state_gaussians(model, latents, labels)
    votes = np.zeros(len(per_state[0]["centres_A"]))
    for s, g in enumerate(per_state):
        present = atoms.present[s]
        tree = cKDTree(atoms.coords_A[s][present])
        _, idx = tree.query(g["centres_A"])
        votes += atoms.moving[present][idx]
    is_moving = votes > len(per_state) / 2
    part = per_state[0]["part"]
    if not is_moving.any():
        return {"moving_gaussians": 0.0, "moving_in_main_part": float("nan"), "static_in_main_part": float("nan")}
    main = np.bincount(part[is_moving]).argmax()
    return {
        "moving_gaussians": float(is_moving.sum()),
        "main_part": float(main),
        "n_parts": float(part.max() + 1),
        "moving_in_main_part": float((part[is_moving] == main).mean()),
        "static_in_main_part": float((part[~is_moving] == main).mean()) if (~is_moving).any() else 0.0,
    }


def absent_chain_occupancy(model, latents: np.ndarray, labels: np.ndarray, atoms: GroundTruthAtoms) -> dict:
    """Per state and chain: amplitude-weighted occupancy of the chain's Gaussians."""
    per_state = _state_gaussians(model, latents, labels)
    everything = atoms.coords_A[0]  # compositional states share coordinates
    # a Gaussian's place is where its gate is most open: a closed Gaussian's centre is
    # unconstrained by the data and may sit anywhere in a state that lacks it
    occ = np.stack([np.asarray(g["occupancy"]) for g in per_state])
    best = occ.argmax(axis=0)
    centres = np.stack([np.asarray(g["centres_A"]) for g in per_state])[best, np.arange(occ.shape[1])]
    _, idx = cKDTree(everything).query(centres)
    chain_of = atoms.chain_ids[idx]
    chains = np.unique(atoms.chain_ids)
    rows = []
    worst_absent, best_present = 0.0, 1.0
    # weights: each Gaussian's ungated amplitude, so the result is the chain's decoded mass
    # over its full mass (a closed gate must not change its own weight)
    w = _base_amplitudes(per_state)
    for s, g in enumerate(per_state):
        present_chains = set(np.unique(atoms.chain_ids[atoms.present[s]]))
        for c in chains:
            sel = chain_of == c
            if not sel.any() or w[sel].sum() <= 0:
                continue
            occ = float(np.average(g["occupancy"][sel], weights=w[sel]))
            present = c in present_chains
            rows.append({"state": s, "chain": str(c), "present": present, "occupancy": occ})
            if present:
                best_present = min(best_present, occ)
            else:
                worst_absent = max(worst_absent, occ)
    absent = [r["occupancy"] for r in rows if not r["present"]]
    return {
        "rows": rows,
        "max_absent_occupancy": worst_absent,
        "mean_absent_occupancy": float(np.mean(absent)) if absent else float("nan"),
        "fraction_absent_below_0.2": float(np.mean(np.array(absent) < 0.2)) if absent else float("nan"),
        "min_present_occupancy": best_present,
    }
