"""CryoSPIRE training throughput (images/s per epoch), beside cryoDRGN train_vae on the same data.

For one dataset (``--dataset``: a folder with ``particles.star``, e.g. from ``cryohet
simulate``) this times, in separate processes so that peak RSS is per configuration:

* CryoSPIRE stage A (coarse Gaussians, free features) for ``--batches`` batches;
* CryoSPIRE stage B with the factorized decoder (default) and with the paper's per-Gaussian
  MLP decoder, at the stage-B Gaussian count the run would use (or ``--gaussians``);
* optionally ``cryodrgn train_vae`` for one epoch (``--cryodrgn-venv``; its own venv,
  fixed poses), with the default architecture (1024x3, zdim 8) and a small one (256x3);

and prints one table: images/s, seconds per epoch of the dataset, peak RSS, GPU memory.
Seeding uses ``--init-map`` (default ``gt/state_000.mrc``) so no consensus is computed.
``--rss-sizes`` also re-runs stage B on memory-mapped stacks of other sizes (``--rss-data``
folders) to show peak RSS does not grow with the number of particles.

Example::

    .venv/bin/python benchmarks/spire_speed.py --dataset /work/data/igg1d_4k \\
        --cryodrgn-venv /work/peers/cryodrgn-venv --threads 2
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORKER = r"""
import json, sys, time, torch
torch.set_num_threads({threads})
from cryohet.io.source import ParticleSource
from cryohet.methods.spire.config import SpireConfig
from cryohet.methods.spire.trainer import SpireTrainer
from cryohet.representations.render import prepare_batch
from cryohet.training.loop import peak_rss_mb, gpu_peak_mb
cfg = SpireConfig(data=ParticleSource(path="{star}"), out="{out}", init_map="{init_map}", device="{device}",
                  stage_a={{"epochs": 0, "gaussians": {ga}}},
                  stage_b={{"epochs": 1, "decoder": "{decoder}", "gaussians": {gb}}},
                  optim={{"batch_size": {batch}}})
tr = SpireTrainer(cfg)
if "{stage}" == "B":
    tr._begin_stage_b()
model = tr._active()
it = iter(tr.loader)
def step():
    data, _ = tr.train_step(prepare_batch(next(it), tr.band, tr.device))
    return len(data)
step(); step()  # warm-up
if tr.device.type == "cuda": torch.cuda.synchronize()
t0 = time.perf_counter(); n = 0
for _ in range({batches}):
    n += step()
if tr.device.type == "cuda": torch.cuda.synchronize()
dt = time.perf_counter() - t0
g = model.n_gaussians if hasattr(model, "n_gaussians") else int(model.centres_px.shape[0])
print("RESULT", json.dumps({{"images_per_s": n / dt, "n_particles": tr.n, "box": tr.box, "gaussians": g,
      "peak_rss_mb": peak_rss_mb(), "gpu_peak_mb": gpu_peak_mb(tr.device)}}))
"""


def run_worker(args, stage: str, decoder: str, star: Path, init_map: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        code = WORKER.format(
            threads=args.threads,
            star=star,
            out=Path(tmp) / "run",
            init_map=init_map,
            device=args.device,
            ga=args.coarse_gaussians or "None",
            gb=args.gaussians or "None",
            decoder=decoder,
            batch=args.batch_size,
            stage=stage,
            batches=args.batches,
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not found:
        raise SystemExit(f"worker failed ({stage}, {decoder}): {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(found[-1][7:])


def run_cryodrgn(args, dataset: Path, enc_dim: int, layers: int, work: Path) -> dict:
    """One epoch of cryodrgn train_vae (fixed poses) in its own venv; images/s from its own timer."""
    exe = Path(args.cryodrgn_venv) / "bin" / "cryodrgn"
    pkl = work / "pkl"
    if not (pkl / "poses.pkl").exists():
        pkl.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(Path(sys.executable).parent / "cryohet"),
                "convert",
                str(dataset / "particles.star"),
                "--poses-out",
                str(pkl / "poses.pkl"),
                "--ctf-out",
                str(pkl / "ctf.pkl"),
            ],
            check=True,
            capture_output=True,
        )
    out = work / f"vae_{enc_dim}x{layers}"
    n = int(json.loads((dataset / "meta.json").read_text())["n_images"])
    extra: list[str] = []
    if args.cryodrgn_images and args.cryodrgn_images < n:
        n = args.cryodrgn_images
        import pickle

        with open(work / "ind.pkl", "wb") as fh:  # a plain int array: what cryoDRGN's --ind reads
            pickle.dump(np.arange(n), fh)
        extra = ["--ind", str(work / "ind.pkl")]
    cmd = [
        "/usr/bin/time",
        "-v",
        str(exe),
        "train_vae",
        str(dataset / "particles.mrcs"),
        "--poses",
        str(pkl / "poses.pkl"),
        "--ctf",
        str(pkl / "ctf.pkl"),
        "--zdim",
        "8",
        "-n",
        "1",
        "-o",
        str(out),
        "-b",
        str(args.cryodrgn_batch),
        "--enc-dim",
        str(enc_dim),
        "--enc-layers",
        str(layers),
        "--dec-dim",
        str(enc_dim),
        "--dec-layers",
        str(layers),
        *extra,
    ]
    env = {"OMP_NUM_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"}
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.time() - t0
    if proc.returncode:
        raise SystemExit(f"cryodrgn failed: {proc.stderr.strip().splitlines()[-3:]}")
    text = proc.stdout + proc.stderr
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    fin = re.search(r"Finished in (\d+):(\d+):([\d.]+)", text)
    seconds = (int(fin.group(1)) * 3600 + int(fin.group(2)) * 60 + float(fin.group(3))) if fin else wall
    return {
        "images_per_s": n / seconds,
        "n_particles": n,
        "peak_rss_mb": int(rss.group(1)) / 1024 if rss else None,
        "gpu_peak_mb": None,
        "epoch_seconds_incl_startup": wall,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--init-map", type=Path)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=20, help="timed batches per CryoSPIRE configuration")
    p.add_argument("--gaussians", type=int, help="stage-B Gaussians (default: the run's automatic count)")
    p.add_argument("--coarse-gaussians", type=int)
    p.add_argument("--no-mlp", action="store_true", help="skip the per-Gaussian MLP decoder (slow)")
    p.add_argument("--cryodrgn-venv", type=Path)
    p.add_argument("--cryodrgn-images", type=int, help="time cryoDRGN on the first N particles only (--ind)")
    p.add_argument("--cryodrgn-batch", type=int, default=8, help="cryoDRGN's default batch size is 8")
    p.add_argument("--rss-data", type=Path, nargs="*", default=[], help="more datasets (other sizes) for the RSS check")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    star = args.dataset / "particles.star"
    init_map = args.init_map or args.dataset / "gt" / "state_000.mrc"
    rows = []
    rows.append(("cryohet spire stage A", run_worker(args, "A", "factorized", star, init_map)))
    rows.append(("cryohet spire stage B (factorized)", run_worker(args, "B", "factorized", star, init_map)))
    if not args.no_mlp:
        rows.append(("cryohet spire stage B (mlp, paper)", run_worker(args, "B", "mlp", star, init_map)))
    for extra in args.rss_data:
        rows.append(
            (f"stage B on {extra.name}", run_worker(args, "B", "factorized", extra / "particles.star", init_map))
        )
    if args.cryodrgn_venv:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(("cryoDRGN train_vae 1024x3 (default)", run_cryodrgn(args, args.dataset, 1024, 3, Path(tmp))))
            rows.append(("cryoDRGN train_vae 256x3", run_cryodrgn(args, args.dataset, 256, 3, Path(tmp))))
    print(f"\ndataset {args.dataset} | device {args.device} | threads {args.threads}\n")
    print("| configuration | particles | Gaussians | images/s | s/epoch | peak RSS MB | GPU MB |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        n = r["n_particles"]
        gpu = "-" if r.get("gpu_peak_mb") is None else f"{r['gpu_peak_mb']:.0f}"
        rss = "-" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:.0f}"
        print(
            f"| {name} | {n} | {r.get('gaussians', '-')} | {r['images_per_s']:.1f} | "
            f"{n / r['images_per_s']:.0f} | {rss} | {gpu} |"
        )
    if args.json:
        args.json.write_text(json.dumps({name: r for name, r in rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
