"""CryoSPIRE ablations (the paper's table) on one simulated dataset, one table.

Trains, with the same data, seed and epochs, in ``WORKDIR/<name>``:

* ``full``: the default model;
* ``no-anchor-motion``: no rigid per-part motion (local offsets only);
* ``parts-64``: over-segmented parts (``--parts 64``);
* ``positional-encoding``: Fourier features of the positions instead of free features;
* ``mlp-decoder``: the paper's per-Gaussian MLP decoder instead of the factorized one;
* ``no-latent-search``: without the discrete latent search (ours, not in the paper);
* ``no-latent-init``: small random starting latents instead of the regional-occupancy
  initialisation (ours, not in the paper);

evaluates each with ``cryohet evaluate`` (per-conformation FSC AUC, masked; ARI; part
metrics) and prints a markdown table with the homogeneous consensus and the
ground-truth ceiling beside them. Runs that already have ``eval/metrics.json`` are reused.

Example::

    .venv/bin/python benchmarks/spire_ablations.py --dataset demo_run/data --workdir /tmp/abl \\
        --epochs-a 12 --epochs-b 12
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CRYOHET = str(Path(sys.executable).parent / "cryohet")

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no-anchor-motion": ["--no-anchor-motion"],
    "parts-64": ["--parts", "64"],
    "positional-encoding": ["--positional-encoding"],
    "mlp-decoder": ["--decoder", "mlp"],
    "no-latent-search": ["--latent-search", "0"],
    "no-latent-init": ["--init-regions", "0"],
}


def train(dataset: Path, run: Path, extra: list[str], args) -> float:
    if (run / "latents.npy").exists():
        return float("nan")
    cmd = [
        CRYOHET,
        "train",
        "spire",
        str(dataset / "particles.star"),
        "--out",
        str(run),
        "--epochs-a",
        str(args.epochs_a),
        "--epochs-b",
        str(args.epochs_b),
        "-b",
        str(args.batch_size),
        "--seed",
        str(args.seed),
        *extra,
    ]
    if run.exists():
        cmd.append("--resume")
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.time() - t0


def evaluate(run: Path, dataset: Path) -> dict:
    out = run / "eval"
    if not (out / "metrics.json").exists():
        subprocess.run(
            [CRYOHET, "evaluate", str(run), "--gt", str(dataset), "--out", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return json.loads((out / "metrics.json").read_text())


def row(name: str, m: dict, seconds: float) -> str:
    pc = m["per_conformation"].get("masked") or m["per_conformation"]["unmasked"]
    parts = m.get("parts") or {}
    mpp = (parts.get("moving_part_purity") or {}) if isinstance(parts, dict) else {}
    purity = mpp.get("moving_in_main_part")
    n_parts = (m.get("model") or {}).get("parts", "-")
    pur = "-" if purity is None else f"{purity:.2f} / {mpp.get('static_in_main_part', float('nan')):.2f}"
    secs = "-" if seconds != seconds else f"{seconds / 60:.1f}"
    return (
        f"| {name} | {pc['auc_mean']:.4f} ({pc['auc_std']:.4f}) | {pc['auc_median']:.4f} | "
        f"{m['clustering']['ari']:.3f} | {n_parts} | {pur} | {secs} |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--epochs-a", type=int, default=12)
    p.add_argument("--epochs-b", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--homogeneous", type=Path, help="a homogeneous run on the same data (else trained here)")
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    lines = [
        "| variant | per-state AUC mean (std) | median | ARI | parts | moving in main part / rest in it | train min |",
        "|---|---|---|---|---|---|---|",
    ]
    homo = args.homogeneous or args.workdir / "homogeneous"
    if not (homo / "latents.npy").exists():
        subprocess.run(
            [CRYOHET, "train", "homogeneous", str(args.dataset / "particles.star"), "--out", str(homo)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    m = evaluate(homo, args.dataset)
    lines.append(row("homogeneous consensus", m, float("nan")))
    for name in args.variants.split(","):
        run = args.workdir / name
        seconds = train(args.dataset, run, VARIANTS[name], args)
        lines.append(row(name, evaluate(run, args.dataset), seconds))
        print(lines[-1], flush=True)
    lines.append(f"| ground-truth ceiling | {m['auc_ceiling']:.4f} | | | | | |")
    table = "\n".join(lines)
    (args.workdir / "ablations.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
