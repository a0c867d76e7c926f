"""cryoDRGN (its own venv) vs cryohet (CryoSPIRE and the baselines) on one simulated dataset, one table.

Run with the project's interpreter (it imports cryohet; cryoDRGN only ever runs as a
subprocess from its own environment, so the project venv is never touched)::

    .venv/bin/python benchmarks/peers/cryodrgn_vs_cryohet.py --workdir /tmp/peer \\
        --preset igg-1d -n 1000 --states 8 --box 32 --apix 12 \\
        --epochs 20 --zdim 8 --enc-dim 256 --dec-dim 256 --layers 3 \\
        --methods spire,homogeneous,oracle --spire-args "--epochs-a 8 --epochs-b 8"

    # cryoDRGN alone on an existing dataset, one thread, no cryohet methods
    .venv/bin/python benchmarks/peers/cryodrgn_vs_cryohet.py --workdir /tmp/peer_igg4k \\
        --dataset /work/data/igg1d_4k --methods none --threads 1 --epochs 25

Steps:

1. the cryoDRGN venv (``--venv``, default /work/peers/cryodrgn-venv) is used, or created
   with ``python -m venv DIR && DIR/bin/pip install torch==2.13.0 'cryodrgn>=4,<5'``;
2. a dataset is simulated (``cryohet simulate``) unless ``--dataset`` names one;
3. ``cryohet convert --poses-out --ctf-out`` writes cryoDRGN's pickles;
4. ``cryodrgn train_vae`` (fixed poses) runs under ``/usr/bin/time -v`` (wall time, peak
   RSS); ``--abinit`` also runs ``cryodrgn abinit`` (evaluated with ``--align``);
5. each cryoDRGN output is wrapped as a cryohet run directory (method ``cryodrgn``,
   volumes through ``cryodrgn eval_vol``) and scored by ``cryohet evaluate``;
6. the cryohet methods of ``--methods`` (``spire`` — ``cryohet train spire`` with
   ``--spire-args`` passed through — and the baselines homogeneous, oracle, classify3d,
   pca; ``none`` for no cryohet method) train and are scored the same way;
7. one table (markdown, also ``WORKDIR/peer_table.md`` and ``WORKDIR/peer_results.json``).

Wall time and peak RSS are those of each whole process (``/usr/bin/time -v``: start-up,
reading, training, writing); "method s" is the method's own time (cryoDRGN's "Finished
in", a baseline's ``resolved.seconds``, the sum of CryoSPIRE's epoch times in its
``train_log.jsonl``), and images/s = particles x passes / method s (``epochs`` passes
for cryoDRGN, stage-A + stage-B epochs for CryoSPIRE, the logged passes of a baseline:
1 for homogeneous and oracle, the EM iterations for classify3d and pca, whose consensus
and initialisation passes are not counted).
``--threads N`` sets OMP/MKL threads of every subprocess (torch's intra-op threads)
so that all methods run under the same budget.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
CRYOHET = Path(sys.executable).parent / "cryohet"
TIME = Path("/usr/bin/time")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_venv(venv: Path) -> Path:
    """The cryodrgn executable of ``venv``, creating the venv if needed."""
    exe = venv / "bin" / "cryodrgn"
    if exe.exists():
        return exe
    log(f"creating the cryoDRGN venv at {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "torch==2.13.0", "cryodrgn>=4,<5"], check=True)
    return exe


#: Environment of every subprocess (``--threads`` adds the thread limits).
ENV: dict[str, str] = dict(os.environ)


def set_threads(n: int | None) -> None:
    """Limit torch/BLAS threads of every subprocess to ``n`` (None: inherit)."""
    if n is not None:
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            ENV[k] = str(n)


def timed(cmd: list[str], logfile: Path) -> dict:
    """Run ``cmd`` under /usr/bin/time -v (stdout+stderr to ``logfile``); wall s and peak RSS MB."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    full = ([str(TIME), "-v"] if TIME.exists() else []) + [str(c) for c in cmd]
    t0 = time.perf_counter()
    with open(logfile, "w") as fh:
        proc = subprocess.run(full, stdout=fh, stderr=subprocess.STDOUT, env=ENV)
    wall = time.perf_counter() - t0
    text = logfile.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(full)}\n{tail}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"wall_s": wall, "peak_rss_mb": int(m.group(1)) / 1024 if m else None}


def cryodrgn_seconds(logfile: Path) -> float | None:
    """cryoDRGN's own training time: the last 'Finished in H:MM:SS.ffffff' of its log."""
    found = re.findall(r"Finished in (\d+):(\d+):([\d.]+)", logfile.read_text(errors="replace"))
    if not found:
        return None
    h, m, sec = found[-1]
    return int(h) * 3600 + int(m) * 60 + float(sec)


def cryodrgn_epoch_seconds(logfile: Path) -> list[float]:
    """Seconds of each training epoch: the 'Finished in' of cryoDRGN's '# =====> Epoch: N' lines."""
    text = logfile.read_text(errors="replace")
    found = re.findall(r"# =====> Epoch: \d+ .*?Finished in (\d+):(\d+):([\d.]+)", text)
    return [int(h) * 3600 + int(m) * 60 + float(sec) for h, m, sec in found]


def evaluate(run: Path, gt: Path, align: bool = False) -> dict:
    out = run / "eval"
    cmd = [CRYOHET, "evaluate", run, "--gt", gt, "--out", out] + (["--align"] if align else [])
    timed(cmd, run.parent / f"{run.name}.evaluate.log")
    return json.loads((out / "metrics.json").read_text())


def simulate(args, data: Path) -> None:
    cmd = [
        CRYOHET,
        "simulate",
        args.preset,
        "--out",
        data,
        "-n",
        args.n,
        "--n-states",
        args.states,
        "--box",
        args.box,
        "--snr",
        args.snr,
        "--seed",
        args.seed,
    ]
    if args.apix:
        cmd += ["--apix", args.apix]
    log(f"simulating {args.n} {args.preset} images ({args.states} states, D={args.box})")
    timed(cmd, data.parent / "simulate.log")


def run_cryodrgn(args, exe: Path, data: Path, work: Path) -> dict:
    from cryohet.io.source import ParticleSource
    from cryohet.methods.external import CryoDRGNRunConfig, write_cryodrgn_wrapper

    meta = json.loads((data / "meta.json").read_text())
    poses, ctf = work / "poses.pkl", work / "ctf.pkl"
    if not poses.exists():
        timed(
            [CRYOHET, "convert", data / "particles.star", "--poses-out", poses, "--ctf-out", ctf], work / "convert.log"
        )
    out = work / "train_vae"
    saved = work / "train_vae.stats.json"
    name = f"cryoDRGN train_vae ({args.epochs} ep, {args.enc_dim}x{args.layers})"
    if args.reuse_cryodrgn and saved.exists() and (out / "weights.pkl").exists():
        log(f"reusing {out}")
        stats = json.loads(saved.read_text())
        return {"name": name, "stats": stats, "metrics": evaluate(work.parent / "runs" / "cryodrgn", data)}
    if out.exists():
        shutil.rmtree(out)
    cmd = [
        exe,
        "train_vae",
        data / "particles.mrcs",
        "--poses",
        poses,
        "--ctf",
        ctf,
        "--zdim",
        args.zdim,
        "--num-epochs",
        args.epochs,
        "--enc-dim",
        args.enc_dim,
        "--enc-layers",
        args.layers,
        "--dec-dim",
        args.dec_dim,
        "--dec-layers",
        args.layers,
        "--batch-size",
        args.batch_size,
        "-o",
        out,
        "--seed",
        args.seed,
        "--no-analysis",
    ]
    if args.threads:
        cmd += ["--max-threads", args.threads]
    log(
        f"cryoDRGN train_vae: {args.epochs} epochs, zdim {args.zdim}, "
        f"{args.enc_dim}x{args.layers} / {args.dec_dim}x{args.layers}"
    )
    stats = timed(cmd, work / "train_vae.log")
    stats["passes"] = args.epochs
    stats["method_s"] = cryodrgn_seconds(work / "train_vae.log")
    stats["epoch_s"] = cryodrgn_epoch_seconds(work / "train_vae.log")
    saved.write_text(json.dumps(stats))
    cfg = CryoDRGNRunConfig(
        cryodrgn_dir=out,
        epoch=None,
        cryodrgn_bin=exe,
        box=meta["box"],
        apix=meta["apix"],
        data=ParticleSource(path=data / "particles.star"),
    )
    wrap = write_cryodrgn_wrapper(cfg, work.parent / "runs" / "cryodrgn", overwrite=True)
    return {"name": name, "stats": stats, "metrics": evaluate(wrap, data)}


def run_abinit(args, exe: Path, data: Path, work: Path) -> dict:
    from cryohet.methods.external import CryoDRGNRunConfig, last_epoch, write_cryodrgn_wrapper

    meta = json.loads((data / "meta.json").read_text())
    out = work / "abinit"
    if out.exists():
        shutil.rmtree(out)
    cmd = [
        exe,
        "abinit",
        data / "particles.mrcs",
        "--ctf",
        work / "ctf.pkl",
        "--zdim",
        args.zdim,
        "--num-epochs",
        args.abinit_epochs,
        "-o",
        out,
        "--seed",
        args.seed,
    ]
    log(f"cryoDRGN abinit: {args.abinit_epochs} epochs")
    stats = timed(cmd, work / "abinit.log")
    stats["method_s"] = cryodrgn_seconds(work / "abinit.log")
    epoch = last_epoch(out)
    pose = out / f"pose.{epoch}.pkl"
    cfg = CryoDRGNRunConfig(
        cryodrgn_dir=out,
        epoch=epoch,
        cryodrgn_bin=exe,
        box=meta["box"],
        apix=meta["apix"],
        poses_pkl=pose if pose.exists() else None,
    )
    wrap = write_cryodrgn_wrapper(cfg, work.parent / "runs" / "cryodrgn_abinit", overwrite=True)
    stats["passes"] = args.abinit_epochs
    return {
        "name": f"cryoDRGN abinit ({args.abinit_epochs} ep, aligned)",
        "stats": stats,
        "metrics": evaluate(wrap, data, align=True),
    }


def logged_passes(run: Path) -> float:
    """Passes over the data a cryohet run logged: sum of ``n_images`` in its train_log.jsonl
    over the particle count (1 for homogeneous and oracle, the EM iterations for
    classify3d and pca; their consensus and initialisation passes are not counted)."""
    import yaml

    n = int(yaml.safe_load((run / "config.yaml").read_text())["resolved"]["n_particles"])
    lines = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines() if x.strip()]
    seen = sum(float(x.get("n_images", 0)) for x in lines)
    return seen / n if seen > 0 else 1.0


def run_spire(args, data: Path, runs: Path) -> dict:
    """``cryohet train spire`` with ``--spire-args``; passes and method s from its train_log.jsonl."""
    run = runs / "spire"
    cmd = [
        CRYOHET,
        "train",
        "spire",
        data / "particles.star",
        "--out",
        run,
        "--overwrite",
        *shlex.split(args.spire_args),
    ]
    log(f"cryohet train spire {args.spire_args}")
    stats = timed(cmd, runs / "spire.train.log")
    epochs = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines() if line.strip()]
    stats["passes"] = len(epochs)
    stats["method_s"] = sum(float(e["seconds"]) for e in epochs)
    stats["epoch_s"] = [float(e["seconds"]) for e in epochs]
    name = (
        f"cryohet spire ({sum(e.get('stage') == 'A' for e in epochs)}+{sum(e.get('stage') == 'B' for e in epochs)} ep)"
    )
    return {"name": name, "stats": stats, "metrics": evaluate(run, data)}


def run_baseline(method: str, args, data: Path, runs: Path) -> dict:
    run = runs / method
    cmd = [CRYOHET, "train", method, data / "particles.star", "--out", run, "--overwrite"]
    if method == "oracle":
        cmd += ["--labels", data / "gt" / "labels.npy"]
    if method == "classify3d":
        cmd += ["-K", args.states]
    if method == "pca":
        cmd += ["--k", args.pca_k]
    log(f"cryohet train {method}")
    stats = timed(cmd, runs / f"{method}.train.log")
    stats["passes"] = logged_passes(run)
    import yaml

    stats["method_s"] = float(yaml.safe_load((run / "config.yaml").read_text())["resolved"]["seconds"])
    return {"name": f"cryohet {method}", "stats": stats, "metrics": evaluate(run, data)}


def table(rows: list[dict], n: int, header: str) -> str:
    ceiling = rows[0]["metrics"]["auc_ceiling"]
    lines = [
        header,
        "",
        f"GT ceiling (CryoBench AUC of identical maps, (D/2-1)/D): {ceiling:.4f}",
        "",
        "| method | AUC masked mean (std) / median | AUC unmasked mean / median | ARI | wall s | method s "
        "| passes | images/s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pc = r["metrics"]["per_conformation"]
        mk, um = pc.get("masked"), pc["unmasked"]
        s = r["stats"]
        secs = s.get("method_s") or s["wall_s"]
        rate = n * s.get("passes", 1) / secs
        masked = f"{mk['auc_mean']:.4f} ({mk['auc_std']:.4f}) / {mk['auc_median']:.4f}" if mk else "-"
        rss = f"{s['peak_rss_mb']:.0f}" if s.get("peak_rss_mb") else "-"
        lines.append(
            f"| {r['name']} | {masked} | {um['auc_mean']:.4f} / {um['auc_median']:.4f} | "
            f"{r['metrics']['clustering']['ari']:.3f} | {s['wall_s']:.1f} | {secs:.1f} | {s.get('passes', 1):g} | "
            f"{rate:.1f} | {rss} |"
        )
    return "\n".join(lines) + "\n"


def header_text(meta: dict, threads: int | None) -> str:
    import platform

    extra = f", {threads} thread(s) per method" if threads else ""
    return (
        f"## cryoDRGN vs cryohet: {meta['preset']}, {meta['n_images']} images, {meta['n_states']} states, "
        f"D={meta['box']} at {meta['apix']:g} Å/px, SNR {meta['snr']:g}\n\nmachine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared), CPU only{extra}"
    )


def write_results(work: Path, out_name: str, data: Path, meta: dict, args: dict, rows: list[dict]) -> str:
    """Print and write the table (``<out_name>_table.md``) and the results JSON; returns the table."""
    threads = args.get("threads")
    text = table(rows, meta["n_images"], header_text(meta, int(threads) if threads not in (None, "None") else None))
    print(text)
    (work / f"{out_name}_table.md").write_text(text)
    (work / f"{out_name}_results.json").write_text(
        json.dumps(
            {
                "dataset": str(data),
                "meta": {k: meta[k] for k in ("preset", "n_images", "n_states", "box", "apix", "snr")},
                "args": {k: str(v) for k, v in args.items()},
                "rows": [
                    {
                        "name": r["name"],
                        "stats": r["stats"],
                        "per_conformation": {
                            k: {kk: v[kk] for kk in ("auc_mean", "auc_std", "auc_median", "per_state")}
                            for k, v in r["metrics"]["per_conformation"].items()
                        },
                        "clustering": r["metrics"]["clustering"],
                        "auc_ceiling": r["metrics"]["auc_ceiling"],
                    }
                    for r in rows
                ],
            },
            indent=2,
        )
    )
    log(f"wrote {work / f'{out_name}_table.md'} and {work / f'{out_name}_results.json'}")
    return text


def retable(work: Path, out_name: str) -> int:
    """Rebuild the table of a finished harness run from its results JSON."""
    saved = json.loads((work / f"{out_name}_results.json").read_text())
    rows = []
    for r in saved["rows"]:
        method = r["name"].split()[1] if r["name"].startswith("cryohet ") else None
        run = work / "runs" / (method or "")
        if method and method != "spire" and (run / "train_log.jsonl").exists():
            r["stats"]["passes"] = logged_passes(run)
        metrics = {
            "per_conformation": r["per_conformation"],
            "clustering": r["clustering"],
            "auc_ceiling": r["auc_ceiling"],
        }
        rows.append({"name": r["name"], "stats": r["stats"], "metrics": metrics})
    write_results(work, out_name, Path(saved["dataset"]), saved["meta"], saved["args"], rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--dataset", type=Path, help="existing simulated dataset folder (else one is simulated)")
    p.add_argument("--preset", default="igg-1d")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--states", type=int, default=8)
    p.add_argument("--box", type=int, default=32)
    p.add_argument("--apix", type=float, default=12.0)
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--venv", type=Path, default=Path("/work/peers/cryodrgn-venv"))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--zdim", type=int, default=8)
    p.add_argument("--enc-dim", type=int, default=256)
    p.add_argument("--dec-dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--abinit", action="store_true", help="also run cryodrgn abinit")
    p.add_argument("--abinit-epochs", type=int, default=20)
    p.add_argument("--pca-k", type=int, default=4)
    p.add_argument(
        "--methods",
        default="homogeneous,oracle,classify3d,pca",
        help="cryohet methods, comma-separated: spire, homogeneous, oracle, classify3d, pca; 'none' for none",
    )
    p.add_argument("--spire-args", default="", help="extra options of 'cryohet train spire', one quoted string")
    p.add_argument("--threads", type=int, help="OMP/MKL threads of every subprocess (default: inherit)")
    p.add_argument("--skip-cryodrgn", action="store_true")
    p.add_argument(
        "--reuse-cryodrgn", action="store_true", help="reuse a finished train_vae in --workdir (and its timing)"
    )
    p.add_argument("--out-name", default="peer", help="stem of the table/JSON files in --workdir")
    p.add_argument(
        "--retable",
        action="store_true",
        help="only rebuild the table from WORKDIR/<out-name>_results.json (passes re-read from the runs' logs)",
    )
    args = p.parse_args(argv)
    if args.retable:
        return retable(args.workdir.resolve(), args.out_name)

    known = {"spire", "homogeneous", "oracle", "classify3d", "pca"}
    methods = [m.strip() for m in args.methods.split(",") if m.strip() and m.strip() != "none"]
    unknown = sorted(set(methods) - known)
    if unknown:
        p.error(f"--methods: unknown {', '.join(unknown)} (known: {', '.join(sorted(known))}, none)")
    if args.skip_cryodrgn and not methods:
        p.error("nothing to run: --skip-cryodrgn and --methods none")
    set_threads(args.threads)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = args.dataset.resolve() if args.dataset else work / "data"
    if not (data / "particles.star").exists():
        simulate(args, data)
    meta = json.loads((data / "meta.json").read_text())
    rows = []
    if not args.skip_cryodrgn:
        exe = ensure_venv(args.venv)
        rows.append(run_cryodrgn(args, exe, data, work / "cryodrgn"))
        if args.abinit:
            rows.append(run_abinit(args, exe, data, work / "cryodrgn"))
    for m in methods:
        rows.append(
            run_spire(args, data, work / "runs") if m == "spire" else run_baseline(m, args, data, work / "runs")
        )
    write_results(work, args.out_name, data, meta, vars(args), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
