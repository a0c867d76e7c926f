"""cryoSPHERE's training speed: cryohet beside cryoSPHERE 0.6.1 on the same images, one after the other.

Both train on the same dataset (a cryohet dataset folder: ``particles.star`` with poses and
CTF) from the same atomic model in the consensus map's frame, on the CPU with the same
number of torch threads, run one after the other (never at once: two OpenMP programs on
the same cores slow each other down by far more than their share). Printed: images/s,
s/epoch (cryohet: its full-band epochs, the second half of its frequency marching;
cryoSPHERE: a full epoch at its defaults, or ``--peer-batches`` batches of it), s/image
and peak RSS, and the ratio. The peer runs through ``benchmarks/peers/cryosphere_run.py``
(its CPU shim) in its own venv (``bash benchmarks/peers/setup_cryosphere.sh``).

    python benchmarks/sphere_speed.py /work/data/igg64_dev /work/data/igg64_dev/1hzh_map.pdb \\
        --work /tmp/sphere_speed --threads 1 --epochs 4 --peer-batches 8

``--sizes 1000,2000,4000`` instead trains cryohet alone on the first N images of the set for
each N (a cryoDRGN ``ind.pkl``), and prints its peak RSS and s/epoch per N: the memory
should stay flat in N (per-image tables are a few numbers per image). With ``--epochs 4``
the run's two domain searches fall on epochs 1 and 2, so their memory counts too.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEER_PY = Path(os.environ.get("CRYOSPHERE_PYTHON", "/work/peers/cryosphere/bin/python"))


def run_cryohet(data: Path, model: Path, work: Path, epochs: int, threads: int, n_images: int | None = None) -> dict:
    """Train cryohet's cryoSPHERE for ``epochs`` (on the first ``n_images`` images when
    given); its full-band epochs' timings and peak RSS."""
    out = work / ("cryohet" if n_images is None else f"cryohet_{n_images}")
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "cryohet", "train", "sphere", str(data / "particles.star"), "--model", str(model),
           "--epochs", str(epochs), "--out", str(out)]  # fmt: skip
    if n_images is not None:
        ind = work / f"first_{n_images}.pkl"
        with open(ind, "wb") as f:
            pickle.dump(np.arange(n_images, dtype=np.int64), f)
        cmd += ["--ind", str(ind)]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    full = [r for r in rows if r["radius_px"] >= max(x["radius_px"] for x in rows) - 1e-6]
    s_epoch = sorted(r["seconds"] for r in full)[len(full) // 2]
    n = rows[0]["n_images"]
    return {"s_epoch": s_epoch, "images_s": n / s_epoch, "rss_mb": max(r["peak_rss_mb"] for r in rows),
            "wall_s": wall, "note": f"{len(full)} full-band epochs of {epochs}, batch 32"}  # fmt: skip


def run_peer(data: Path, model: Path, work: Path, threads: int, batches: int | None) -> dict:
    """One epoch of cryoSPHERE (or its first ``batches`` batches) through the CPU shim."""
    if not PEER_PY.exists():
        raise SystemExit(f"{PEER_PY}: no cryoSPHERE venv (bash benchmarks/peers/setup_cryosphere.sh)")
    out = work / "peer"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(PEER_PY), str(ROOT / "benchmarks" / "peers" / "cryosphere_run.py"), str(data), str(model), str(out),
           "--frame", "map", "--epochs", "1", "--threads", str(threads)]  # fmt: skip
    if batches:
        cmd += ["--max-batches", str(batches)]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    row = re.search(r"^\s*0\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)", text, re.M)
    rss = re.search(r"peak RSS (\d+) MB", text)
    if row is None or rss is None:
        raise SystemExit(f"could not read the peer's table:\n{text[-2000:]}")
    n_batches, n_img, s_run, img_s = int(row[1]), int(row[2]), float(row[3]), float(row[4])
    meta = json.loads((data / "meta.json").read_text())
    return {"s_epoch": meta["n_images"] / img_s, "images_s": img_s, "rss_mb": float(rss[1]), "wall_s": s_run,
            "note": f"{n_batches} batches of 128 ({n_img} images) timed; epoch extrapolated"}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, help="cryohet dataset folder (particles.star, meta.json)")
    p.add_argument("model", type=Path, help="the atomic model in the consensus map's frame")
    p.add_argument("--work", type=Path, default=Path("/tmp/sphere_speed"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=4, help="cryohet epochs (the second half at the full band)")
    p.add_argument("--peer-batches", type=int, default=None, help="time only this many peer batches")
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--sizes", help="comma-separated image counts: cryohet's peak RSS per N (no peer)")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    if a.sizes:
        sizes = [int(x) for x in a.sizes.split(",")]
        rows = [run_cryohet(a.data.resolve(), a.model.resolve(), a.work, a.epochs, a.threads, n) for n in sizes]
        load1 = os.getloadavg()
        print(f"\ncryohet cryoSPHERE on the first N images of {a.data.name}, {a.epochs} epochs, {a.threads} "
              f"thread(s); load before {load0[0]:.1f}, after {load1[0]:.1f} (1-min average)")  # fmt: skip
        print(f"{'N':>7} {'images/s':>9} {'s/epoch':>8} {'peak RSS MB':>11}")
        for n, r in zip(sizes, rows):
            print(f"{n:>7} {r['images_s']:>9.1f} {r['s_epoch']:>8.1f} {r['rss_mb']:>11.0f}")
        print(f"peak RSS at N={sizes[-1]} / at N={sizes[0]}: {rows[-1]['rss_mb'] / rows[0]['rss_mb']:.2f}x")
        return
    ours = run_cryohet(a.data.resolve(), a.model.resolve(), a.work, a.epochs, a.threads)
    peer = None if a.skip_peer else run_peer(a.data.resolve(), a.model.resolve(), a.work, a.threads, a.peer_batches)
    load1 = os.getloadavg()
    print(f"\ncryoSPHERE training on {a.data.name}, {a.threads} thread(s); load before {load0[0]:.1f}, "
          f"after {load1[0]:.1f} (1-min average)")  # fmt: skip
    print(f"{'program':<22} {'images/s':>9} {'s/epoch':>8} {'s/image':>9} {'peak RSS MB':>11}  notes")
    for name, r in (("cryohet", ours), ("cryoSPHERE 0.6.1", peer)):
        if r is not None:
            print(f"{name:<22} {r['images_s']:>9.1f} {r['s_epoch']:>8.1f} {1 / r['images_s']:>9.4f} "
                  f"{r['rss_mb']:>11.0f}  {r['note']}")  # fmt: skip
    if peer is not None:
        print(f"ratio cryohet / cryoSPHERE: {ours['images_s'] / peer['images_s']:.1f}x images/s, "
              f"{ours['rss_mb'] / peer['rss_mb']:.2f}x peak RSS")  # fmt: skip


if __name__ == "__main__":
    main()
