"""Classification and pose table of finished runs on one simulated dataset (issue 17's
comparison: HetACUMN against DRGN-AI and cryoDRGN on the same particles, poses removed).

    python benchmarks/latent_classification.py --data sim/assembly runs/het runs/het_amortised runs/drgnai \\
        [--clusters 10] [--poses extras/searched_poses.npz]

Per run: the k-means ARI of ``latents.npy`` against the true states (binned into k groups
when there are more states), the largest |Pearson r| between a latent dimension and an
axis of the true viewing direction (the disentanglement check), and the rotation error of
``poses.npz`` after one global alignment (both hands): median, and the shares within 10°
and at 170–180°. A pseudo-symmetric particle (a dimer) splits ab initio poses between
two mates 180° apart; that last share shows it, and the median then says little. When the
simulation's ``gt/meta.json`` names the pseudo-symmetry, the table adds the error modulo
the mate after an alignment that counts a mate as right (``align_rotations(operators=)``):
its median and its share within 15°.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def max_abs_corr(z, rotations) -> float:
    """max over latent dimensions and view-vector axes of |Pearson r|."""
    import numpy as np

    views = np.asarray(rotations)[:, 2, :]  # viewing direction: third row of RELION's A
    return max(abs(float(np.corrcoef(z[:, i], views[:, j])[0, 1])) for i in range(z.shape[1]) for j in range(3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories (latents.npy, poses.npz)")
    ap.add_argument("--data", required=True, help="the `cryohet simulate` folder the runs were trained on")
    ap.add_argument("--clusters", type=int, default=10, help="k of k-means; true states binned into k groups")
    ap.add_argument("--poses", default="poses.npz", help="poses file inside each run (e.g. extras/searched_poses.npz)")
    args = ap.parse_args()

    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from cryohet.evaluation.ground_truth import load_ground_truth
    from cryohet.io.source import ParticleSource
    from cryohet.metrics.pose_error import align_rotations, rotation_errors, symmetry_mate_errors

    data = Path(args.data)
    gt = np.asarray(ParticleSource(path=data / "particles.star").load().rotations)
    labels = np.load(data / "gt" / "labels.npy")
    bins = labels * args.clusters // (labels.max() + 1)
    symmetry = load_ground_truth(data / "gt").pseudo_symmetry
    extra = " modulo the mate: median (deg) | within 15 deg |" if symmetry is not None else ""
    print(f"| run | ARI (k={args.clusters}) | max abs corr(latent, view) | median rotation error (deg) "
          f"| within 10 deg | 170-180 deg |{extra}")  # fmt: skip
    print("|---|---|---|---|---|---|" + ("---|---|" if extra else ""))
    for run in map(Path, args.runs):
        z = np.load(run / "latents.npy")
        ari = adjusted_rand_score(bins, KMeans(args.clusters, n_init=5, random_state=0).fit_predict(z))
        rot = np.load(run / args.poses)["rotations"]
        err = rotation_errors(rot, gt).rotation_deg
        row = (f"| {run.name} | {ari:.3f} | {max_abs_corr(z, gt):.3f} | {np.median(err):.1f} "
               f"| {np.mean(err < 10):.2f} | {np.mean(err > 170):.2f} |")  # fmt: skip
        if symmetry is not None:
            mod, _ = symmetry_mate_errors(align_rotations(rot, gt, operators=symmetry).aligned, gt, symmetry)
            row += f" {np.median(mod):.1f} | {np.mean(mod < 15):.2f} |"
        print(row)


if __name__ == "__main__":
    main()
