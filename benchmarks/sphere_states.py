"""Per-state Cα RMSD of a cryoSPHERE run's models against a simulation's true atoms.

For each true state, the particle whose latent is nearest the state's mean latent is
decoded with ``cryohet models`` (every atom moved, in the input model's frame), and its
Cα atoms are compared with the state's atoms in ``GT/gt/atoms.npz`` (Å from the box
centre; the input model sits in the map frame, so ``(D // 2) * apix`` is subtracted).
The input model must hold the simulation's atoms in the simulation's order (as
``--write-input`` writes it: the bundled model, hydrogens and waters removed, moved by
one rigid offset into the map frame); chains and residue numbers are checked.

    python benchmarks/sphere_states.py RUN --gt DATA [--epoch E]
    python benchmarks/sphere_states.py --gt DATA --write-input in.pdb --state 0

prints a table of states: RMSD of the run's model and of the input model, and the mean;
then how the moving part of the simulation falls into the run's domains
(``extras/segmentation.npz``): the share of its residues in the one domain that holds
most of them, and that domain's share of residues that truly move.
``--write-input PATH --state S`` only writes the input model (state ``S`` in the map
frame) and exits. ``--epoch E`` reads the run's snapshot after epoch ``E`` (the models
then come from the same method call, ``TrainedModel.atomic_models``, in-process).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from cryohet.cli.app import main as cryohet_main
from cryohet.io.atomic import read_atomic_model, write_atomic_models
from cryohet.methods.base import load_run, load_run_latents
from cryohet.simulate.presets import bundled_model_path


def _meta(gt: Path) -> dict:
    return json.loads((gt / "meta.json").read_text())


def write_input(gt: Path, state: int, path: Path) -> None:
    meta = _meta(gt)
    atoms = np.load(gt / "gt" / "atoms.npz")
    model = read_atomic_model(bundled_model_path(meta["model"]), remove_hydrogens=True, remove_waters=True)
    if len(model) != atoms["coords_A"].shape[1]:
        sys.exit(f"{meta['model']}: {len(model)} atoms, the simulation has {atoms['coords_A'].shape[1]}")
    half = (meta["box"] // 2) * meta["apix"]
    write_atomic_models(model, atoms["coords_A"][state] + half, path, remove_hydrogens=True, remove_waters=True)
    print(f"wrote {path} (state {state} in the map frame)")


def _models_by_cli(run: Path, z: np.ndarray) -> list:
    """The atomic models ``cryohet models`` writes at the latent rows ``z``."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "z.npy", z)
        if cryohet_main(["models", str(run), "--z", str(Path(tmp) / "z.npy"), "--out", str(Path(tmp) / "m")]) != 0:
            sys.exit("cryohet models failed")
        return [read_atomic_model(f) for f in sorted((Path(tmp) / "m").glob("model_*.*"))]


def state_rmsd(run: Path, gt: Path, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(S,)`` Cα RMSD (Å) of the run's models and of the input model per state."""
    meta = _meta(gt)
    half = (meta["box"] // 2) * meta["apix"]
    atoms = np.load(gt / "gt" / "atoms.npz")
    labels = np.load(gt / "gt" / "labels.npy")
    z = load_run_latents(run, epoch=epoch)
    rows = [int(np.argmin(((z - z[labels == s].mean(0)) ** 2).sum(1))) for s in range(atoms["coords_A"].shape[0])]
    if epoch is not None:
        _, coords = load_run(run, allow_unfinished=True, epoch=epoch).atomic_models(z[rows])
        models = [SimpleNamespace(coords_A=c) for c in coords]
    else:
        models = _models_by_cli(run, z[rows])
    inp = read_atomic_model(next(run.glob("input_model*")))
    if len(inp) != atoms["coords_A"].shape[1] or not np.array_equal(inp.chain_ids, atoms["chain_ids"]):
        sys.exit(f"{run}: the input model's atoms are not the simulation's (write it with --write-input)")
    if not np.array_equal(inp.residue_numbers, atoms["residue_numbers"]):
        sys.exit(f"{run}: the input model's residue numbers are not the simulation's")
    ca = inp.atom_names == "CA"
    true = atoms["coords_A"][:, ca]
    ours = np.stack([m.coords_A[ca] - half for m in models])
    start = inp.coords_A[ca] - half
    rmsd = np.sqrt(((ours - true) ** 2).sum(-1).mean(-1))
    rmsd_input = np.sqrt(((start[None] - true) ** 2).sum(-1).mean(-1))
    return rmsd, rmsd_input


def moving_part_domain(run: Path, gt: Path) -> tuple[float, float, int]:
    """``(coverage, purity, n_domain)``: of the truly moving residues (their CA moves in the
    simulation), the share in the run's domain that holds most of them; the share of that
    domain's residues that truly move; the domain's residue count."""
    atoms = np.load(gt / "gt" / "atoms.npz")
    seg = np.load(run / "extras" / "segmentation.npz")
    inp = read_atomic_model(next(run.glob("input_model*")))
    ca = inp.atom_names == "CA"
    key = list(zip(atoms["chain_ids"][ca].tolist(), atoms["residue_numbers"][ca].tolist()))
    moving = dict(zip(key, atoms["moving"][ca].tolist()))
    truth = np.array([moving.get((c, int(n)), False) for c, n in zip(seg["chain_ids"], seg["residue_numbers"])])
    if "residue_domain" in seg:
        domain = seg["residue_domain"]
    else:  # runs written before per-residue domains
        domain = np.where(seg["segment"] >= 0, seg["domain"][np.maximum(seg["segment"], 0)], -1)
    values, counts = np.unique(domain[truth & (domain >= 0)], return_counts=True)
    best = values[np.argmax(counts)]
    in_best = domain == best
    return float(counts.max() / truth.sum()), float(truth[in_best].mean()), int(in_best.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?")
    parser.add_argument("--gt", type=Path, required=True, help="the simulated data folder")
    parser.add_argument("--write-input", type=Path, help="write the input model at --state and exit")
    parser.add_argument("--state", type=int, default=0)
    parser.add_argument("--epoch", type=int, help="the run's snapshot after this epoch (counted from 1)")
    args = parser.parse_args()
    if args.write_input is not None:
        write_input(args.gt, args.state, args.write_input)
        return
    if args.run is None:
        parser.error("RUN is needed unless --write-input")
    rmsd, rmsd_input = state_rmsd(args.run, args.gt, args.epoch)
    lat = _meta(args.gt).get("gt_latents") or [[s] for s in range(len(rmsd))]
    print(f"{'state':>5} {'gt':>8} {'model Å':>8} {'input Å':>8}")
    for s, (a, b) in enumerate(zip(rmsd, rmsd_input)):
        print(f"{s:5d} {lat[s][0]:8.1f} {a:8.2f} {b:8.2f}")
    print(f"mean Cα RMSD {rmsd.mean():.2f} Å (input model {rmsd_input.mean():.2f} Å); "
          f"states under 2 Å: {(rmsd < 2).sum()}/{len(rmsd)}; max {rmsd.max():.2f} Å")  # fmt: skip
    if args.epoch is None and (args.run / "extras" / "segmentation.npz").exists():
        coverage, purity, size = moving_part_domain(args.run, args.gt)
        print(f"moving part: {100 * coverage:.0f} % of its residues in one domain ({size} residues, "
              f"{100 * purity:.0f} % of them truly moving)")  # fmt: skip


if __name__ == "__main__":
    main()
