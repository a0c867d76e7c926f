"""Consensus quality: ``cryohet backproject`` vs cryoDRGN ``backproject_voxel`` against the ground truth.

Run with the project's interpreter (cryoDRGN only runs as a subprocess from its own venv,
``benchmarks/peers/setup_cryodrgn.sh``)::

    .venv/bin/python benchmarks/consensus_quality.py --workdir /tmp/cq --boxes 64,128 --snrs 0.1,0.01 -n 2000
    # also score another cryohet source tree (e.g. a checkout of the commit before a change)
    git archive BASE src | tar -x -C /tmp/base
    .venv/bin/python benchmarks/consensus_quality.py --workdir /tmp/cq --before-src /tmp/base/src

For every (box, SNR) a single-state IgG set is simulated (``cryohet simulate igg-1d
--n-states 1``: 256 Å box, i.e. 4 Å/px at D=64 and 2 Å/px at D=128, RELION conventions,
CTF, shifts, white noise at that SNR), converted to cryoDRGN's pickles (``cryohet
convert``), and reconstructed from the same particles and poses by both tools (cryohet's
half sets from its seeded split, cryoDRGN's even/odd). Each map is scored against
``gt/state_000.mrc`` by the CryoBench FSC AUC (:func:`cryohet.metrics.fsc.fsc_cryobench`,
raw curve, not normalised: the ceiling is ``(D/2 - 1)/D``), masked by ``gt/mask.mrc`` and
unmasked. ``--threads`` (default 1) limits each subprocess's torch/BLAS threads. Writes
``WORKDIR/quality_table.md`` and ``WORKDIR/quality_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CRYOHET = [sys.executable, "-m", "cryohet"]
ENV: dict[str, str] = dict(os.environ)
REUSE = False


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list, logfile: Path, env: dict[str, str] | None = None, output: Path | None = None) -> float | None:
    """Run ``cmd`` (output to ``logfile``); returns wall seconds, exits on failure. With
    ``--reuse``, an existing ``output`` is kept and nothing runs (returns None)."""
    if REUSE and output is not None and output.exists():
        return None
    t0 = time.perf_counter()
    with open(logfile, "w") as fh:
        proc = subprocess.run([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, env=env or ENV)
    if proc.returncode != 0:
        tail = "\n".join(logfile.read_text(errors="replace").strip().splitlines()[-15:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{tail}")
    return time.perf_counter() - t0


def scores(map_path: Path, data: Path) -> dict[str, float]:
    from cryohet.io.mrc import read_volume
    from cryohet.metrics.fsc import fsc_cryobench

    gt, _ = read_volume(data / "gt" / "state_000.mrc")
    mask, _ = read_volume(data / "gt" / "mask.mrc")
    vol, _ = read_volume(map_path)
    return {"masked": fsc_cryobench(vol, gt, mask).auc, "unmasked": fsc_cryobench(vol, gt).auc}


def one_set(args, work: Path, box: int, snr: float, n: int) -> dict:
    data = work / f"D{box}_snr{snr:g}"
    if not (data / "particles.star").exists():
        log(f"simulating {n} images, D={box}, SNR {snr:g}")
        run(
            [*CRYOHET, "simulate", "igg-1d", "--out", data, "-n", n, "-D", box, "--apix", 256.0 / box]
            + ["--snr", snr, "--n-states", 1, "--seed", args.seed, "--overwrite"],
            work / f"simulate_D{box}_snr{snr:g}.log",
        )
    poses, ctf = data / "poses.pkl", data / "ctf.pkl"
    if not poses.exists():
        run(
            [*CRYOHET, "convert", data / "particles.star", "--poses-out", poses, "--ctf-out", ctf], data / "convert.log"
        )
    row: dict = {"box": box, "snr": snr, "n": n, "ceiling": (box // 2 - 1) / box}
    log(f"D={box} SNR {snr:g}: cryohet backproject")
    row["cryohet_s"] = run(
        [*CRYOHET, "backproject", data / "particles.star", "-o", data / "cryohet" / "map.mrc", "--overwrite"],
        data / "cryohet.log",
        output=data / "cryohet" / "map.mrc",
    )
    row["cryohet"] = scores(data / "cryohet" / "map.mrc", data)
    if args.before_src:
        log(f"D={box} SNR {snr:g}: cryohet backproject from {args.before_src}")
        env = dict(ENV, PYTHONPATH=str(args.before_src))
        row["before_s"] = run(
            [*CRYOHET, "backproject", data / "particles.star", "-o", data / "before" / "map.mrc", "--overwrite"],
            data / "before.log",
            env,
            output=data / "before" / "map.mrc",
        )
        row["before"] = scores(data / "before" / "map.mrc", data)
    if not args.no_cryodrgn:
        log(f"D={box} SNR {snr:g}: cryodrgn backproject_voxel")
        row["cryodrgn_s"] = run(
            [args.cryodrgn, "backproject_voxel", data / "particles.mrcs", "--poses", poses, "--ctf", ctf]
            + ["-o", data / "cryodrgn"],
            data / "cryodrgn.log",
            output=data / "cryodrgn" / "backproject.mrc",
        )
        row["cryodrgn"] = scores(data / "cryodrgn" / "backproject.mrc", data)
    return row


def table(rows: list[dict], threads: int) -> str:
    before = any("before" in r for r in rows)
    drgn = any("cryodrgn" in r for r in rows)
    head = ["D", "SNR", "N", "ceiling", "masked cryohet"]
    head += ["masked before"] if before else []
    head += ["masked cryoDRGN", "cryohet - cryoDRGN"] if drgn else []
    head += ["unmasked cryohet"] + (["unmasked before"] if before else []) + (["unmasked cryoDRGN"] if drgn else [])
    lines = [
        f"## Consensus quality: CryoBench AUC against the ground truth ({threads} thread(s), CPU)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [str(r["box"]), f"{r['snr']:g}", str(r["n"]), f"{r['ceiling']:.4f}", f"{r['cryohet']['masked']:.4f}"]
        cells += [f"{r['before']['masked']:.4f}"] if before else []
        if drgn:
            cells += [f"{r['cryodrgn']['masked']:.4f}", f"{r['cryohet']['masked'] - r['cryodrgn']['masked']:+.4f}"]
        cells += [f"{r['cryohet']['unmasked']:.4f}"]
        cells += [f"{r['before']['unmasked']:.4f}"] if before else []
        cells += [f"{r['cryodrgn']['unmasked']:.4f}"] if drgn else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--boxes", default="64,128")
    ap.add_argument("--snrs", default="0.1,0.01")
    ap.add_argument("-n", type=int, default=2000, help="images per set")
    ap.add_argument("--n-large", type=int, help="images per set at boxes above 64 (default: -n)")
    ap.add_argument("--before-src", type=Path, help="another cryohet src/ tree to score as well")
    ap.add_argument("--cryodrgn", type=Path, default=Path("/work/peers/cryodrgn/bin/cryodrgn"))
    ap.add_argument("--no-cryodrgn", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="keep maps already in WORKDIR (re-score them only)")
    args = ap.parse_args(argv)
    global REUSE
    REUSE = args.reuse
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        ENV[k] = str(args.threads)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for box in (int(b) for b in args.boxes.split(",") if b):
        for snr in (float(s) for s in args.snrs.split(",") if s):
            n = args.n if box <= 64 or args.n_large is None else args.n_large
            rows.append(one_set(args, work, box, snr, n))
            (work / "quality_results.json").write_text(json.dumps(rows, indent=2))
    text = table(rows, args.threads)
    print(text)
    (work / "quality_table.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
