"""Score cryoSPHERE 0.6.1's per-state models the way ``cryohet evaluate`` scores a run.

Run in the project's venv by ``cryosphere_run.py --evaluate GT`` (which exports the
peer's per-state Cα models into ``EVALDIR`` from the peer's venv): each state's model is
rendered as cryohet's sphere method renders its ``volumes`` (one Gaussian per residue at
its Cα, sigma 2 Å, mass = the residue's electron count from cryohet's residue model) and
scored by the same per-conformation FSC, mask and true state maps; the table is printed
and ``EVALDIR/metrics.json`` written::

    python benchmarks/peers/cryosphere_score.py WORKDIR/eval --gt GT --model MODEL --frame map
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def score_states(out: Path, gt_dir: Path, model: Path, frame: str, sigma_A: float = 2.0) -> dict[str, Any]:
    """In the cryohet venv: render the peer's states as cryohet's sphere method renders its
    volumes and score them as ``cryohet evaluate`` does; print the table, write metrics.json."""
    import dataclasses

    from cryohet.evaluation.evaluate import _conformation_dict, _volume_lookup
    from cryohet.evaluation.ground_truth import load_ground_truth
    from cryohet.io.atomic import read_atomic_model
    from cryohet.io.mrc import write_volume
    from cryohet.metrics.fsc import fsc_cryobench
    from cryohet.metrics.per_conformation import nearest_to_mean, per_conformation_fsc
    from cryohet.representations.residue_model import residue_model

    d = np.load(out / "peer_states.npz")
    gt = load_ground_truth(gt_dir)
    latents = np.asarray(d["z"], dtype=np.float32)  # as evaluate_run reads a run's latents
    labels = gt.labels
    chosen = nearest_to_mean(latents, labels)
    states = np.array(sorted(chosen), dtype=np.int64)
    rows = np.array([chosen[int(s)] for s in states])
    if not (np.array_equal(states, d["states"]) and np.array_equal(rows, d["rows"])):
        sys.exit("the peer side chose other particles than nearest_to_mean")
    half = (gt.box // 2) * gt.apix
    if abs(half - float(d["half_A"])) > 1e-6:
        sys.exit(f"map frame: the peer's box centre is {float(d['half_A'])} Å, the ground truth's {half} Å")

    atoms = read_atomic_model(model)
    if frame == "original":  # the model's frame -> the map frame
        centre = np.asarray(json.loads((gt.gt_dir / "meta.json").read_text())["centre_A"])
        atoms.coords_A = atoms.coords_A - centre + half
    rm = residue_model(atoms)
    peer_res, peer_chain = d["residues_A"], d["chain_id"].astype(str)
    if len(rm) != peer_res.shape[1] or not np.array_equal(rm.chain_ids.astype(str), peer_chain):
        sys.exit(f"residues: cryohet's model has {len(rm)}, the peer's {peer_res.shape[1]} (or chains differ)")
    if not np.array_equal(rm.residue_names.astype(str), d["res_name"].astype(str)):
        sys.exit("residue names of cryohet's residue model and the peer's differ")
    base_dev = float(np.abs(d["base_A"] - rm.coords_A).max())

    true_atoms = np.load(gt.gt_dir / "atoms.npz")
    ca = atoms.atom_names == "CA"
    if true_atoms["coords_A"].shape[1] != len(atoms) or ca.sum() != len(rm):
        sys.exit(f"{model}: its atoms are not the simulation's (atoms.npz) or not one CA per residue")
    true_ca = true_atoms["coords_A"][states][:, ca] + half  # (S, R, 3) map frame

    def rmsd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sqrt(((a - b) ** 2).sum(-1).mean(-1))

    def render(coords_A: np.ndarray) -> np.ndarray:  # SphereModel.volume: residue Gaussians at the centres
        mix = dataclasses.replace(rm, coords_A=np.asarray(coords_A, dtype=np.float64)).mixture(gt.box, gt.apix, sigma_A)
        return mix.to_volume(gt.box, gt.apix).cpu().numpy().astype(np.float32)

    mask = gt.read_mask() if gt.mask_path is not None else None
    variants = {"masked": mask, "unmasked": None} if mask is not None else {"unmasked": None}
    maps = {int(r): render(c) for r, c in zip(rows, peer_res)}
    (out / "maps").mkdir(exist_ok=True)
    for s, r in zip(states, rows):
        write_volume(out / "maps" / f"state_{int(s):03d}.mrc", maps[int(r)], gt.apix)
    per_conf = {
        name: per_conformation_fsc(latents, labels, _volume_lookup(latents, maps), gt.state_map, mask=m)
        for name, m in variants.items()
    }
    sampled = {int(r): render(c) for r, c in zip(rows, d["residues_sampled_A"])}
    key = "masked" if mask is not None else "unmasked"
    auc_sampled = per_conformation_fsc(latents, labels, _volume_lookup(latents, sampled), gt.state_map, mask=mask).auc
    auc_truth = np.array([fsc_cryobench(gt.state_map(int(s)), render(t), mask).auc for s, t in zip(states, true_ca)])
    inp = render(rm.coords_A)
    auc_input = np.array([fsc_cryobench(gt.state_map(int(s)), inp, mask).auc for s in states])
    r_peer, r_input, r_sampled = (
        rmsd(peer_res, true_ca),
        rmsd(rm.coords_A[None], true_ca),
        rmsd(d["residues_sampled_A"], true_ca),
    )

    auc = per_conf[key].auc
    lat = json.loads((gt.gt_dir / "meta.json").read_text()).get("gt_latents") or [[float(s)] for s in states]
    print(f"\ncryoSPHERE (peer) per state, epoch {int(d['epoch']) + 1} checkpoint; {key} CryoBench AUC "
          f"(ceiling {gt.auc_ceiling:.4f}); peer base vs cryohet residue model: max |d| {base_dev:.3f} Å")  # fmt: skip
    print(f"{'state':>5} {'gt':>6} {'row':>5} {'RMSD Å':>7} {'input Å':>7} {'AUC':>7} {'AUC unm':>7} "
          f"{'truth*':>7} {'input*':>7}")  # fmt: skip
    unm = per_conf["unmasked"].auc
    for i, s in enumerate(states):
        print(f"{s:5d} {lat[i][0]:6.1f} {rows[i]:5d} {r_peer[i]:7.2f} {r_input[i]:7.2f} {auc[i]:7.4f} {unm[i]:7.4f} "
              f"{auc_truth[i]:7.4f} {auc_input[i]:7.4f}")  # fmt: skip
    print(f"mean   {'':12} {r_peer.mean():7.2f} {r_input.mean():7.2f} {auc.mean():7.4f} {unm.mean():7.4f} "
          f"{auc_truth.mean():7.4f} {auc_input.mean():7.4f}")  # fmt: skip
    print(f"median {'':12} {np.median(r_peer):7.2f} {np.median(r_input):7.2f} {np.median(auc):7.4f} "
          f"{np.median(unm):7.4f} {np.median(auc_truth):7.4f} {np.median(auc_input):7.4f}")  # fmt: skip
    means = np.stack([latents[labels == s].mean(axis=0) for s in states])
    spread = float(np.sqrt(((means - means.mean(axis=0)) ** 2).sum(axis=1).mean()))
    between = float(np.sqrt(((peer_res - peer_res.mean(axis=0)) ** 2).sum(axis=-1).mean()))
    print(f"latents: rms distance of the particles from their mean {np.sqrt(latents.var(axis=0).sum()):.3g}, "
          f"of the state means from theirs {spread:.3g}; decoded states' Cα rms spread about their mean "
          f"{between:.2f} Å")  # fmt: skip
    print("truth*/input*: the true Cα / the input model rendered the same way (this rendering's ceiling / no motion);")
    print(f"sampled segmentation (upstream's predict_structures, seed 0): {key} AUC mean {auc_sampled.mean():.4f} "
          f"median {np.median(auc_sampled):.4f}, Cα RMSD mean {r_sampled.mean():.2f} Å")  # fmt: skip

    result = {
        "method": "cryoSPHERE 0.6.1 (peer)", "gt_dir": str(gt.gt_dir.resolve()), "model": str(model),
        "epoch_checkpoint": int(d["epoch"]), "box": gt.box, "apix": gt.apix, "auc_ceiling": gt.auc_ceiling,
        "rendering": f"residue Gaussians at Ca, sigma {sigma_A} A, mass = electrons (cryohet residue_model)",
        "per_conformation": {name: _conformation_dict(r) for name, r in per_conf.items()},
        "ca_rmsd_A": {str(int(s)): float(v) for s, v in zip(states, r_peer)},
        "ca_rmsd_input_A": {str(int(s)): float(v) for s, v in zip(states, r_input)},
        "auc_truth_rendered": {str(int(s)): float(v) for s, v in zip(states, auc_truth)},
        "auc_input_rendered": {str(int(s)): float(v) for s, v in zip(states, auc_input)},
        "sampled_segmentation": {"auc_mean": float(auc_sampled.mean()), "auc_median": float(np.median(auc_sampled)),
                                 "ca_rmsd_mean_A": float(r_sampled.mean())},  # fmt: skip
        "base_vs_residue_model_max_dev_A": base_dev,
    }  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / 'metrics.json'} and {out / 'maps'}/")
    return result


def main(argv: list[str] | None = None) -> None:
    """``cryosphere_score.py EVALDIR --gt GT --model MODEL [--frame F]`` (the project's venv)."""
    p = argparse.ArgumentParser(prog="cryosphere_score.py")
    p.add_argument("out", type=Path)
    p.add_argument("--gt", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--frame", choices=["original", "map"], default="original")
    a = p.parse_args(argv)
    score_states(a.out, a.gt, a.model, a.frame)


if __name__ == "__main__":
    main()
