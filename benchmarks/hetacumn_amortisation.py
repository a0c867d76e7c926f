"""HetACUMN's amortisation check (issue 17): train on a share of a simulated dataset
(``--ind``), ``cryohet infer`` the rest, and compare the unseen particles with the trained
ones: median rotation error (one global alignment fitted on the trained particles, applied
to both; modulo the mate when the simulation names a pseudo-symmetry) and the k-means ARI
of the latent against the true states.

    python benchmarks/hetacumn_amortisation.py --data sim/igg1d --out runs/amort --train-share 0.25 \\
        [--epochs 8 --search-images 4000 --encoder-steps 20000 --zdim 8 --clusters 10 --box 32 --heads 1] \\
        [--ablate-task2] [--refine-step-deg 16] [--search] [--reuse] [--train-args '--beta 1'] \\
        [--infer-args '--in-plane-views 8']

Prints one table row per subset (particles, median rotation error, ARI, |corr(latent, view)|)
and the ratios unseen / trained that the issue bounds by 1.2. Pass ``--ablate-task2`` for
the same run without task 2 (the latent--view correlation is the disentanglement check);
``--refine-step-deg`` also infers both subsets with the local pose refinement (``--search``: with
the run's pose search against its field, then refined when a step is given; ``--infer-args``:
with other ``infer`` options), and ``--reuse``
keeps a finished OUT/run instead of training again.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from latent_classification import max_abs_corr  # beside this script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a `cryohet simulate` folder (particles.star, gt/labels.npy)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-share", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--search-images", type=int, default=4000)
    ap.add_argument("--pretrain-images", type=int, default=2000)
    ap.add_argument("--encoder-steps", type=int, default=None, help="`train --encoder-steps` (default: the config's)")
    ap.add_argument("--zdim", type=int, default=8)
    ap.add_argument("--box", type=int, default=None, help="train at this box (Fourier-cropped), as `train --box`")
    ap.add_argument("--clusters", type=int, default=10, help="k-means k; true states are binned into k groups")
    ap.add_argument("--heads", type=int, default=None, help="pose heads (`train --heads`; the default 1)")
    ap.add_argument("--distill-weight", type=float, default=None, help="`train --distill-weight` (default 1)")
    ap.add_argument("--in-plane", choices=("on", "off"), default=None, help="`train --[no-]in-plane-augment`")
    ap.add_argument("--ablate-task2", action="store_true")
    ap.add_argument(
        "--train-args", default="", help="more `cryohet train hetacumn` options, one string (e.g. '--beta 1')"
    )
    ap.add_argument(
        "--refine-step-deg",
        type=float,
        default=0.0,
        help="also `infer --refine-step-deg` both subsets (local search against the field) and report them",
    )
    ap.add_argument(
        "--search",
        action="store_true",
        help="also `infer --poses search` both subsets (the run's pose search against its field; with "
        "--refine-step-deg then refined) and report them",
    )
    ap.add_argument(
        "--infer-args",
        default="",
        help="also `infer` both subsets with these options (e.g. '--in-plane-views 8') and report them",
    )
    ap.add_argument("--reuse", action="store_true", help="keep OUT/run when it is complete (evaluate or refine only)")
    args = ap.parse_args()

    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from cryohet.evaluation.ground_truth import load_ground_truth
    from cryohet.io.cryodrgn import write_ind_pkl
    from cryohet.io.source import ParticleSource
    from cryohet.metrics.pose_error import align_rotations, rotation_angle_deg, symmetry_mate_errors

    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    star = ParticleSource(path=data / "particles.star").load()
    n = len(star.rotations)
    labels = np.load(data / "gt" / "labels.npy")
    bins = labels * args.clusters // (labels.max() + 1)
    rng = np.random.default_rng(0)
    train = np.sort(rng.choice(n, int(round(args.train_share * n)), replace=False))
    rest = np.setdiff1d(np.arange(n), train)
    write_ind_pkl(out / "train.pkl", train)
    write_ind_pkl(out / "rest.pkl", rest)
    run, inferred = out / "run", out / "inferred"
    cli = [sys.executable, "-m", "cryohet"]
    train_cmd = cli + [
        "train", "hetacumn", str(data / "particles.star"), "-o", str(run), "--ind", str(out / "train.pkl"),
        "--zdim", str(args.zdim), "--epochs", str(args.epochs), "--search-images", str(args.search_images),
        "--pretrain-images", str(args.pretrain_images), "--snapshot-every", "0", "--overwrite",
    ]  # fmt: skip
    if args.encoder_steps is not None:
        train_cmd += ["--encoder-steps", str(args.encoder_steps)]
    if args.ablate_task2:
        train_cmd += ["--pose-task", "0"]
    if args.box:
        train_cmd += ["--box", str(args.box)]
    if args.heads:
        train_cmd += ["--heads", str(args.heads)]
    if args.distill_weight is not None:
        train_cmd += ["--distill-weight", str(args.distill_weight)]
    if args.in_plane:
        train_cmd += ["--in-plane-augment" if args.in_plane == "on" else "--no-in-plane-augment"]
    train_cmd += shlex.split(args.train_args)
    env = dict(os.environ)
    if not (args.reuse and (run / "COMPLETED").exists()):
        subprocess.run(train_cmd, check=True, env=env)
    infer = cli + ["infer", str(run), str(data / "particles.star"), "--overwrite"]
    subprocess.run(infer + ["--ind", str(out / "rest.pkl"), "--out", str(inferred)], check=True, env=env)
    refined = {}
    how = "searched" if args.search else "refined" if args.refine_step_deg else args.infer_args
    if args.refine_step_deg or args.search or args.infer_args:
        step = ["--poses", "search"] if args.search else []
        step += ["--refine-step-deg", str(args.refine_step_deg)] if args.refine_step_deg else []
        step += shlex.split(args.infer_args)
        for name in ("train", "rest"):
            refined[name] = out / f"{name}_refined"
            subprocess.run(infer + step + ["--ind", str(out / f"{name}.pkl"), "--out", str(refined[name])], check=True,
                           env=env)  # fmt: skip

    gt = np.asarray(star.rotations)
    rows = {}
    z_train = np.load(run / "latents.npy")
    z_rest = np.load(inferred / "latents.npy")
    km = KMeans(args.clusters, n_init=5, random_state=0).fit(z_train)
    # the encoder's poses of its training particles (method version >= 5 keeps them apart from
    # the run's poses.npz, which holds the searched poses the field was trained at)
    encoder_poses = run / "extras" / "encoder_poses.npz"
    rot_train = np.load(encoder_poses if encoder_poses.exists() else run / "poses.npz")["rotations"]
    rot_rest = np.load(inferred / "poses.npz")["rotations"]
    symmetry = load_ground_truth(data / "gt").pseudo_symmetry  # a mate is right (a dimer's ab initio poses)
    # fitted on the trained particles only
    alignment = align_rotations(rot_train, gt[train], 100, True, operators=symmetry)
    subsets = [("trained", train, z_train, rot_train, km), ("unseen", rest, z_rest, rot_rest, km)]
    if refined:  # the latents as that inference gives them, k-means refitted on its trained subset
        z_ref = {name: np.load(refined[name] / "latents.npy") for name in refined}
        km_ref = KMeans(args.clusters, n_init=5, random_state=0).fit(z_ref["train"])
        for name, idx in (("train", train), ("rest", rest)):
            label = f"{'trained' if name == 'train' else 'unseen'}, {how}"
            subsets.append((label, idx, z_ref[name], np.load(refined[name] / "poses.npz")["rotations"], km_ref))
    for name, idx, z, rot, kmeans in subsets:
        aligned = alignment.apply(rot)
        if symmetry is None:
            err = float(np.median(rotation_angle_deg(aligned, gt[idx])))
        else:
            err = float(np.median(symmetry_mate_errors(aligned, gt[idx], symmetry)[0]))
        ari = adjusted_rand_score(bins[idx], kmeans.predict(z))
        rows[name] = (len(idx), err, ari, max_abs_corr(z, gt[idx]))
    print(
        f"load {os.getloadavg()[0]:.1f}; task 2 {'off' if args.ablate_task2 else 'on'}; heads {args.heads or 1}; "
        f"distill weight {1.0 if args.distill_weight is None else args.distill_weight}; "
        f"in-plane {args.in_plane or 'default'}"
    )
    k = args.clusters
    print(f"| subset | particles | median rotation error (deg) | ARI (k={k}) | max abs corr(latent, view) |")
    print("|---|---|---|---|---|")
    for name, (count, err, ari, corr) in rows.items():
        print(f"| {name} | {count} | {err:.2f} | {ari:.3f} | {corr:.3f} |")
    t, u = rows["trained"], rows["unseen"]
    # an ARI ratio means nothing when the trained particles' latent does not classify either
    ari = f"{u[2] / t[2]:.2f}x" if t[2] >= 0.05 else f"n/a (trained ARI {t[2]:.3f} < 0.05)"
    print(f"unseen / trained: rotation error {u[1] / max(t[1], 1e-9):.2f}x, ARI {ari}")
    if refined:
        tr, ur = rows[f"trained, {how}"], rows[f"unseen, {how}"]
        record = json.loads((refined["rest"] / "COMPLETED").read_text())
        # the slowest step's rate (search, refinement, latent fit or the encoder), and the
        # whole inference's: one over the sum of each step's seconds per image
        steps = ("images_per_s", "search_images_per_s", "refine_images_per_s", "search_worst_images_per_s",
                 "latent_images_per_s")  # fmt: skip
        rates = [record[k] for k in steps if record.get(k)]
        rate, overall = min(rates), 1.0 / sum(1.0 / r for r in rates)
        ari_ref = f"{ur[2] / tr[2]:.2f}x" if tr[2] >= 0.05 else f"n/a (trained ARI {tr[2]:.3f} < 0.05)"
        ari_run = f"{ur[2] / t[2]:.2f}x" if t[2] >= 0.05 else "n/a"
        print(
            f"{how} ({' '.join(step)}; slowest step {rate} images/s, all steps {overall:.1f}): unseen / trained, "
            f"both {how} {ur[1] / max(tr[1], 1e-9):.2f}x (ARI {ari_ref}); unseen {how} / trained as the run gives "
            f"{ur[1] / max(t[1], 1e-9):.2f}x (ARI {ari_run})"
        )


if __name__ == "__main__":
    main()
