"""Per-state latent and occupancy diagnostics of a trained run against simulated ground truth.

Prints, per state: the number of images, the nearest-state-mean classification accuracy
of the latents (each image assigned to the state whose mean latent is nearest) and, for
part-labelled Gaussian mixtures on compositional data (``gt/atoms.npz`` with absent
chains), the occupancy of the chains absent from / present in that state at the state's
CryoBench latent, computed by :func:`cryohet.metrics.parts.absent_chain_occupancy` (the
numbers ``cryohet evaluate`` reports). Development tool, not part of the package::

    .venv/bin/python scripts/latent_diagnostics.py RUN DATA/gt
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from cryohet.evaluation.ground_truth import load_gt_atoms
from cryohet.methods.base import load_run
from cryohet.metrics.parts import absent_chain_occupancy


def nearest_mean_accuracy(z: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """States and, per state, the fraction of its images whose nearest state mean is its own."""
    states = np.unique(labels)
    means = np.stack([z[labels == s].mean(0) for s in states])
    pred = states[np.argmin(((z[:, None] - means[None]) ** 2).sum(-1), axis=1)]
    return states, np.array([(pred[labels == s] == s).mean() for s in states])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("gt")
    a = p.parse_args()
    model = load_run(a.run)
    z = np.asarray(model.latents)
    labels = np.load(f"{a.gt}/labels.npy")
    states, acc = nearest_mean_accuracy(z, labels)
    atoms = load_gt_atoms(a.gt)
    probe = model.gaussians_at(z[0]) if hasattr(model, "gaussians_at") else None
    per_state: dict[int, dict[str, list[float]]] = defaultdict(lambda: {"absent": [], "present": []})
    summary = None
    if atoms is not None and not atoms.present.all() and probe is not None:
        summary = absent_chain_occupancy(model, z, labels, atoms)
        for row in summary["rows"]:
            per_state[row["state"]]["present" if row["present"] else "absent"].append(row["occupancy"])
    print("| state | images | latent acc | absent chains: mean (max) | present chains: mean (min) |")
    print("|---|---|---|---|---|")
    for k, s in enumerate(states):
        ab, pr = per_state[int(s)]["absent"], per_state[int(s)]["present"]
        a_txt = f"{np.mean(ab):.2f} ({np.max(ab):.2f})" if ab else "-"
        p_txt = f"{np.mean(pr):.2f} ({np.min(pr):.2f})" if pr else "-"
        print(f"| {s} | {(labels == s).sum()} | {acc[k]:.2f} | {a_txt} | {p_txt} |")
    counts = np.array([(labels == s).sum() for s in states])
    print(
        f"\nnearest-mean accuracy {acc.mean():.3f} (mean over states), "
        f"{np.average(acc, weights=counts):.3f} (per image)"
    )
    if summary is not None:
        print(
            f"absent (state, chain) pairs below 0.2: {summary['fraction_absent_below_0.2']:.3f}; "
            f"mean {summary['mean_absent_occupancy']:.3f}, max {summary['max_absent_occupancy']:.3f}; "
            f"present min {summary['min_present_occupancy']:.3f}"
        )


if __name__ == "__main__":
    main()
