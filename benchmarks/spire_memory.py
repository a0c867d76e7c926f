"""CryoSPIRE peak memory vs dataset size: is the resident set independent of N?

Builds particle sets of ``1, 4, 16, ...`` copies of one dataset (each copy a separate
stack file, so no page is shared between copies), trains one stage-A and one stage-B
epoch on each with the same model size, and prints the peak RSS of every epoch (the
trainer logs it in ``train_log.jsonl``) next to the stack size on disk. The data are
memory-mapped and read batch by batch; what grows with N is the latent table and its
Adam moments (3 x N x zdim floats) and the index arrays.

Example::

    .venv/bin/python benchmarks/spire_memory.py --dataset /work/data/igg1d_4k --copies 1,4 \\
        --workdir /tmp/spire_mem
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

CRYOHET = str(Path(sys.executable).parent / "cryohet")


def replicate(dataset: Path, copies: int, out: Path) -> Path:
    """``out/particles.star``: ``copies`` copies of ``dataset``'s particles, one stack file per copy."""
    from cryohet.io.particles import load_particles
    from cryohet.io.star import write_star

    star = out / "particles.star"
    if star.exists():
        return star
    out.mkdir(parents=True, exist_ok=True)
    meta = load_particles(dataset / "particles.star")
    if len(meta.image_files) != 1:
        raise SystemExit("error: the dataset must have one stack file")
    n = len(meta)
    files = []
    for k in range(copies):
        dst = out / f"copy_{k:03d}.mrcs"
        shutil.copyfile(meta.image_files[0], dst)
        files.append(dst)
    big = meta.subset(np.tile(np.arange(n), copies))
    big.image_files = files
    big.file_index = np.repeat(np.arange(copies), n)
    big.original_index = np.arange(n * copies)
    write_star(star, big)
    return star


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True, help="simulated dataset folder (particles.star, one stack)")
    p.add_argument("--copies", default="1,4", help="comma-separated replication factors")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--gaussians", type=int, default=2048)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    rows = []
    for c in (int(x) for x in args.copies.split(",")):
        data = args.workdir / f"x{c}"
        star = replicate(args.dataset, c, data)
        run = args.workdir / f"run_x{c}"
        if not (run / "train_log.jsonl").exists() or len((run / "train_log.jsonl").read_text().splitlines()) < 2:
            shutil.rmtree(run, ignore_errors=True)
            subprocess.run(
                [
                    CRYOHET,
                    "train",
                    "spire",
                    str(star),
                    "--out",
                    str(run),
                    "--epochs-a",
                    "1",
                    "--epochs-b",
                    "1",
                    "--gaussians",
                    str(args.gaussians),
                    "--coarse-gaussians",
                    str(args.gaussians // 4),
                    "--latent-search",
                    "0",
                ],
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
            )
        log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
        stack_mb = sum(f.stat().st_size for f in data.glob("copy_*.mrcs")) / 2**20
        rows.append(
            (
                c,
                log[0]["n_images"],
                stack_mb,
                log[0]["peak_rss_mb"],
                log[-1]["peak_rss_mb"],
                log[0]["images_per_s"],
                log[-1]["images_per_s"],
            )
        )
    print(
        f"CryoSPIRE peak RSS vs dataset size ({args.dataset.name} replicated; {args.gaussians} stage-B Gaussians, "
        f"{args.threads} thread(s))\n"
    )
    print(
        "| copies | images | stacks on disk (MB) | peak RSS after stage A epoch (MB) | after stage B epoch (MB) | "
        "images/s A | images/s B |"
    )
    print("|---|---|---|---|---|---|---|")
    for c, n, mb, ra, rb, ia, ib in rows:
        print(f"| {c} | {int(n)} | {mb:.0f} | {ra:.0f} | {rb:.0f} | {ia:.1f} | {ib:.1f} |")


if __name__ == "__main__":
    main()
