"""Ab initio speed and memory: ``cryohet train drgnai`` beside cryoDRGN's ``abinit`` (DRGN-AI), same images.

One invocation runs both programs, one after the other, on the first ``--images``
particles of one dataset (the same ``ind.pkl`` for both), and prints one table row per
program and phase (pretrain, pose search, joint gradient descent, "sgd"): images per
epoch, epochs timed, s/image, images/s, s/epoch, CPU s/image, cores used, mean load
during the phase, and peak RSS; then the ratios cryohet/cryoDRGN (below 1: cryohet is
faster or smaller), each program's search band and the code that ran.

Run with the project's interpreter; cryoDRGN runs only as a subprocess from its own venv
(``--peer-venv``, default /work/peers/cryodrgn, made by ``benchmarks/peers/setup_cryodrgn.sh``)::

    .venv/bin/python benchmarks/drgnai_speed.py --dataset /work/data/igg1d_2k --images 16 \\
        --search-epochs 2 --sgd-epochs 2 --zdim 0 --work /tmp/drgnai_speed

    # cryoDRGN searching on cryohet's band at D=64 (its default 12 -> 32 px reaches Nyquist)
    .venv/bin/python benchmarks/drgnai_speed.py --images 64 --peer-args "--l-start 6 --l-end 16"

    # one program only
    .venv/bin/python benchmarks/drgnai_speed.py --images 256 --only cryohet

At D=64 on 2 shared cores cryoDRGN's default search costs about 11 s per image (3 s on
the 6 -> 16 px band), so keep ``--images`` x ``--search-epochs`` small (16 x 2: ~7 min).

What is run (each program keeps its own defaults: batch sizes, search grids, data
loading; only the schedule is set so that both make the same passes):

* cryoDRGN: ``cryodrgn abinit PARTICLES.star --datadir DIR --ctf ctf.pkl --ind ind.pkl
  --zdim Z --epochs-pose-search K --epochs-sgd E --no-analysis --seed S -o OUT``
  (its pretraining is one pass over the images when they are fewer than its 10 000;
  without ``--ctf`` it would train with no CTF: it does not read the CTF of a .star);
* cryohet: ``cryohet train drgnai PARTICLES.star --out RUN --ind ind.pkl --zdim Z
  --pretrain-images N --search-images K*N --epochs-sgd E --seed S --overwrite``
  (``--pretrain-images N``: one pretraining pass, as cryoDRGN makes on N < 10 000 images;
  cryohet makes at least 2 search epochs).

Timings are each program's own per-epoch timers: cryoDRGN's ``# =====> PHASE Epoch: n
finished in H:MM:SS`` console lines (the summaries written after an epoch are not
counted), cryohet's ``seconds`` of ``RUN/train_log.jsonl``. Start-up (imports, reading,
the first volume) is in the wall time only. CPU seconds of an epoch: the user + system
time of the program's whole process tree, sampled from /proc every 0.2 s and read at the
epoch's start and end (cryoDRGN's console stamps whole seconds: +-0.5 s). Peak RSS:
``ru_maxrss`` of the program (``os.wait4``: its largest single process) and the peak of
the summed RSS of its process tree (cryoDRGN starts 2 spawned data-loading workers by
default). A program that runs past ``--timeout`` is stopped and its finished epochs are
reported. Outputs: WORK/table.md, WORK/results.json (every epoch), WORK/*.log.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

CRYOHET = Path(sys.executable).parent / "cryohet"
PEER_VENV = Path("/work/peers/cryodrgn")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# -- measuring one child ------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _tree_usage(root: int) -> tuple[int, float]:
    """Summed RSS (kB) and CPU seconds (user + system, reaped children included) of ``root``
    and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    usage: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(f[1])
        children.setdefault(ppid, []).append(pid)
        usage[pid] = (int(f[21]) * PAGE_KB, sum(int(x) for x in f[11:15]) / CLK_TCK)
    rss, cpu, todo = 0, 0.0, [root]
    while todo:
        pid = todo.pop()
        r, c = usage.get(pid, (0, 0.0))
        rss, cpu = rss + r, cpu + c
        todo.extend(children.get(pid, []))
    return rss, cpu


def run_measured(cmd: list, logfile: Path, env: dict, timeout: float) -> dict:
    """Run ``cmd`` (output to ``logfile``): wall s, exit code, peak RSS (process and tree), CPU s,
    and samples (unix time, tree CPU s, 1-min load) every 0.2 s for :func:`attribute`."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    before = load()
    peak_tree = [0]
    samples: list[tuple[float, float, float]] = []
    stop = threading.Event()
    t0 = time.perf_counter()
    with open(logfile, "w") as fh:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip

        def poll() -> None:
            cpu_max = 0.0
            while not stop.is_set():
                rss, cpu = _tree_usage(proc.pid)
                peak_tree[0] = max(peak_tree[0], rss)
                cpu_max = max(cpu_max, cpu)  # a worker's exit may hide its time until it is reaped
                samples.append((time.time(), cpu_max, os.getloadavg()[0]))
                stop.wait(0.2)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            for sig in (signal.SIGTERM, signal.SIGKILL):  # SIGKILL if still there 30 s after SIGTERM
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    return
                if stop.wait(30):
                    return

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            stop.set()
            poller.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "returncode": proc.returncode,
        "timed_out": expired.is_set(),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "peak_tree_rss_mb": peak_tree[0] / 1024,
        "load_before": before,
        "load_after": load(),
        "samples": samples,
    }


def attribute(stats: dict) -> None:
    """CPU seconds and mean 1-min load of each epoch (``end`` unix time, ``seconds``) from the samples."""
    import numpy as np

    samples = stats.pop("samples")
    if len(samples) < 2:
        return
    t, cpu, ld = (np.asarray(x) for x in zip(*samples))
    for e in stats["epochs"]:
        if e.get("end") is None:
            continue
        a, b = e["end"] - e["seconds"], e["end"]
        e["cpu_s"] = float(np.interp(b, t, cpu) - np.interp(a, t, cpu))
        inside = (t >= a) & (t <= b)
        e["load"] = float(ld[inside].mean()) if inside.any() else float(np.interp(b, t, ld))


def tail(logfile: Path, n: int = 1) -> str:
    lines = [x for x in logfile.read_text(errors="replace").splitlines() if x.strip()]
    return " | ".join(lines[-n:])


# -- the two programs ---------------------------------------------------------------------
def prepare(args, work: Path) -> tuple[Path, Path, int]:
    """ind.pkl (the first --images particles) and the full dataset's ctf.pkl in ``work``."""
    import numpy as np

    star = args.dataset / "particles.star"
    ctf = work / "ctf.pkl"
    if not ctf.exists():
        proc = subprocess.run([str(CRYOHET), "convert", str(star), "--ctf-out", str(ctf)], capture_output=True,
                              text=True)  # fmt: skip
        if proc.returncode:
            raise SystemExit(f"cryohet convert failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    with open(ctf, "rb") as fh:
        total = len(pickle.load(fh))
    n = min(args.images, total)
    ind = work / f"ind{n}.pkl"
    with open(ind, "wb") as fh:  # a plain int array: what both --ind options read
        pickle.dump(np.arange(n), fh)
    return ind, ctf, n


_PEER_EPOCH = re.compile(
    r"(?:\((\d+-\w+-\d+ \d+:\d+:\d+)\) )?# =====> (\w+) Epoch: (\d+) finished in (\d+):(\d+):([\d.]+)"
)


def peer_epochs(text: str) -> list[dict]:
    """cryoDRGN's finished epochs: phase (pretrain/search/sgd), seconds and end (unix time, from
    the stamp of its console line: whole seconds, so + 0.5), from its console output."""
    names = {"Pretrain": "pretrain", "HPS": "search", "SGD": "sgd"}
    rows = []
    for stamp, kind, epoch, h, m, s in _PEER_EPOCH.findall(text):
        end = time.mktime(time.strptime(stamp, "%d-%b-%Y %H:%M:%S")) + 0.5 if stamp else None
        rows.append({"phase": names.get(kind, kind), "epoch": int(epoch),
                     "seconds": int(h) * 3600 + int(m) * 60 + float(s), "end": end})  # fmt: skip
    return rows


def run_peer(args, work: Path, ind: Path, ctf: Path, n: int, env: dict) -> dict:
    exe = args.peer_venv / "bin" / "cryodrgn"
    out = work / "peer"
    cmd = [exe, "abinit", args.dataset / "particles.star", "--datadir", args.dataset, "--ctf", ctf, "--ind", ind,
           "--zdim", args.zdim, "--epochs-pose-search", args.search_epochs, "--epochs-sgd", args.sgd_epochs,
           "--no-analysis", "--seed", args.seed, "-o", out, *shlex.split(args.peer_args)]  # fmt: skip
    log("peer: " + shlex.join(str(c) for c in cmd))
    stats = run_measured(cmd, work / "peer.log", env, args.timeout)
    stats["command"] = shlex.join(str(c) for c in cmd)
    stats["epochs"] = peer_epochs((work / "peer.log").read_text(errors="replace"))
    # its pretraining pass stops after the batch that passes 10 000 images: all N when N is smaller
    for e in stats["epochs"]:
        e["n_images"] = n
    text = (work / "peer.log").read_text(errors="replace")
    found = dict(re.findall(r"\b(l_start|l_end|t_extent|t_n_grid|n_iter|base_healpy|batch_size_hps)=([\d.]+)", text))
    if found:
        stats["search"] = (f"radius {found.get('l_start')} -> {found.get('l_end')} px (at most D/2) over "
                           f"{found.get('n_iter')} rounds, base HEALPix {found.get('base_healpy')}, shifts "
                           f"{found.get('t_n_grid')}^2 within {found.get('t_extent')} px, "
                           f"batch {found.get('batch_size_hps')}")  # fmt: skip
    attribute(stats)
    return stats


def run_cryohet(args, work: Path, ind: Path, n: int, env: dict) -> dict:
    run = work / "cryohet"
    cmd = [CRYOHET, "train", "drgnai", args.dataset / "particles.star", "--out", run, "--ind", ind,
           "--zdim", args.zdim, "--pretrain-images", n, "--search-images", args.search_epochs * n,
           "--epochs-sgd", args.sgd_epochs, "--seed", args.seed, "--overwrite",
           *shlex.split(args.cryohet_args)]  # fmt: skip
    log("cryohet: " + shlex.join(str(c) for c in cmd))
    stats = run_measured(cmd, work / "cryohet.log", env, args.timeout)
    stats["command"] = shlex.join(str(c) for c in cmd)
    rows = []
    train_log = run / "train_log.jsonl"
    if train_log.exists():
        for line in train_log.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            rows.append({"phase": r.get("phase", "?"), "epoch": int(r.get("epoch", len(rows))),
                         "seconds": float(r["seconds"]), "n_images": int(r.get("n_images", n)),
                         "end": r.get("time"), "radius_px": r.get("radius_px")})  # fmt: skip
    stats["epochs"] = rows
    radii = [e["radius_px"] for e in rows if e["phase"] == "search" and e.get("radius_px") is not None]
    if radii:
        stats["search"] = "radius per search epoch " + ", ".join(f"{r:.3g}" for r in radii) + " px"
    stats["code"] = code_state()
    attribute(stats)
    return stats


def code_state() -> str:
    """The project's commit, and whether its working tree had changes (the code that ran)."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "src"],
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in src/" if dirty else "")


# -- the table ----------------------------------------------------------------------------
PHASES = ("pretrain", "search", "sgd")


def phase_summary(stats: dict | None, phase: str) -> dict | None:
    """Mean per epoch of one phase: images, seconds, CPU seconds, load (None: no such epoch)."""
    if not stats:
        return None
    rows = [e for e in stats["epochs"] if e["phase"] == phase]
    if not rows:
        return None
    secs = sum(e["seconds"] for e in rows)
    imgs = sum(e["n_images"] for e in rows)
    timed = [e for e in rows if "cpu_s" in e]
    cpu = sum(e["cpu_s"] for e in timed) if timed else None
    cpu_imgs = sum(e["n_images"] for e in timed)
    return {
        "epochs": len(rows),
        "images": imgs // len(rows),
        "s_epoch": secs / len(rows),
        "s_image": secs / imgs if imgs else None,
        "images_s": imgs / secs if secs else None,
        "cpu_s_image": cpu / cpu_imgs if cpu is not None and cpu_imgs else None,
        "cores": cpu / sum(e["seconds"] for e in timed) if cpu is not None else None,
        "load": sum(e["load"] for e in timed) / len(timed) if timed else None,
    }


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def table(results: dict[str, dict | None], n: int, args) -> str:
    lines = [
        f"## DRGN-AI ab initio: cryohet vs cryoDRGN ({args.dataset.name}, first {n} images, zdim {args.zdim}, "
        f"{args.search_epochs} search + {args.sgd_epochs} SGD epochs asked)",
        "",
        f"machine: {os.cpu_count()} CPU cores (shared), CPU only, threads: "
        f"{args.threads if args.threads else 'each program default'}. Per phase, the mean over its epochs; "
        "CPU s = user + system of the whole process tree in the epoch, cores = CPU s / s, "
        "load = mean 1-min load average during the epoch.",
        "",
        "| program | phase | images | epochs | s/image | images/s | s/epoch | CPU s/image | cores | load "
        "| peak RSS MB (process / tree) | wall s | load before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for prog, stats in results.items():
        if stats is None:
            continue
        rss = f"{stats['peak_rss_mb']:.0f} / {stats['peak_tree_rss_mb']:.0f}"
        state = "" if stats["returncode"] == 0 else (" (timed out)" if stats["timed_out"] else " (failed)")
        tail_cols = f"{rss} | {stats['wall_s']:.0f} | {stats['load_before']} → {stats['load_after']} |"
        shown = False
        for phase in PHASES:
            s = phase_summary(stats, phase)
            if s is None:
                continue
            lines.append(
                f"| {prog}{state} | {phase} | {s['images']} | {s['epochs']} | {_f(s['s_image'], '.3f')} | "
                f"{_f(s['images_s'], '.2f')} | {s['s_epoch']:.1f} | {_f(s['cpu_s_image'], '.3f')} | "
                f"{_f(s['cores'], '.2f')} | {_f(s['load'], '.1f')} | {tail_cols}"
            )
            shown = True
        if not shown:
            lines.append(f"| {prog}{state} | (no epoch finished) | {n} | 0 | - | - | - | - | - | - | {tail_cols}")
    ours, peer = results.get("cryohet"), results.get("cryoDRGN")
    if ours and peer:
        lines += ["", "ratio cryohet / cryoDRGN (below 1: cryohet faster or smaller):", ""]
        for phase in PHASES:
            a, b = phase_summary(ours, phase), phase_summary(peer, phase)
            if not (a and b):
                continue
            parts = []
            for key, label in (("s_image", "s/image"), ("cpu_s_image", "CPU s/image"), ("s_epoch", "s/epoch")):
                if a[key] and b[key]:
                    parts.append(f"{label} {a[key] / b[key]:.3f} ({a[key]:.3g} vs {b[key]:.3g})")
            lines.append(f"* {phase}: " + "; ".join(parts))
        for key, label in (("peak_rss_mb", "peak RSS (process)"), ("peak_tree_rss_mb", "peak RSS (tree)")):
            if ours[key] and peer[key]:
                lines.append(f"* {label}: {ours[key] / peer[key]:.3f} ({ours[key]:.0f} vs {peer[key]:.0f} MB)")
    lines.append("")
    for prog, stats in results.items():
        if stats is not None:
            extra = "; ".join(x for x in (stats.get("search"), stats.get("code") and f"code {stats['code']}") if x)
            lines.append(f"{prog}: `{stats['command']}`" + (f" ({extra})" if extra else ""))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, default=Path("/work/data/igg1d_2k"),
                   help="folder with particles.star (+ stacks), e.g. from cryohet simulate")  # fmt: skip
    p.add_argument("--images", type=int, default=16, help="the first N particles (both programs)")
    p.add_argument("--zdim", type=int, default=0, help="0: homogeneous; > 0: heterogeneous (both programs)")
    p.add_argument(
        "--search-epochs", type=int, default=2, help="pose-search epochs (cryoDRGN's default 3; cryohet's least 2)"
    )
    p.add_argument("--sgd-epochs", type=int, default=2, help="joint gradient-descent epochs after the search")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="OMP/MKL threads of both programs (default: each one's own)")
    p.add_argument("--peer-venv", type=Path, default=PEER_VENV, help=f"cryoDRGN's venv (default {PEER_VENV})")
    p.add_argument("--peer-args", default="", help="more options of 'cryodrgn abinit', one quoted string")
    p.add_argument("--cryohet-args", default="", help="more options of 'cryohet train drgnai', one quoted string")
    p.add_argument("--only", choices=("peer", "cryohet"), help="run one program only")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per program before it is stopped")
    p.add_argument("--work", type=Path, default=Path("/tmp/drgnai_speed"), help="run folders, logs, results")
    p.add_argument("--json", type=Path, help="also write the measurements here (default WORK/results.json)")
    args = p.parse_args(argv)

    args.dataset = args.dataset.resolve()
    if not (args.dataset / "particles.star").exists():
        print(f"drgnai_speed: no particles.star in {args.dataset}", file=sys.stderr)
        return 2
    if args.only != "cryohet" and not (args.peer_venv / "bin" / "cryodrgn").exists():
        print(f"drgnai_speed: no cryoDRGN venv at {args.peer_venv} (make it with benchmarks/peers/"
              "setup_cryodrgn.sh, or pass --peer-venv DIR, or --only cryohet)", file=sys.stderr)  # fmt: skip
        return 2
    if args.only != "peer":
        probe = subprocess.run([str(CRYOHET), "train", "drgnai", "--help"], capture_output=True, text=True)
        if probe.returncode:
            print(f"drgnai_speed: '{CRYOHET} train drgnai' is not available here (or pass --only peer)",
                  file=sys.stderr)  # fmt: skip
            return 2
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.threads:
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[k] = str(args.threads)
    ind, ctf, n = prepare(args, work)
    results: dict[str, dict | None] = {"cryohet": None, "cryoDRGN": None}
    failed = []
    if args.only != "peer":
        results["cryohet"] = run_cryohet(args, work, ind, n, env)
    if args.only != "cryohet":
        results["cryoDRGN"] = run_peer(args, work, ind, ctf, n, env)
    for prog, stats in results.items():
        if stats is not None and stats["returncode"] != 0:
            why = "timed out" if stats["timed_out"] else f"exit {stats['returncode']}"
            logfile = work / ("peer.log" if prog == "cryoDRGN" else "cryohet.log")
            log(f"{prog} {why}: {tail(logfile)} (log: {logfile})")
            failed.append(prog)
    text = table(results, n, args)
    print("\n" + text)
    (work / "table.md").write_text(text)
    out = args.json or work / "results.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "images": n, **results},
                              indent=2))  # fmt: skip
    log(f"wrote {work / 'table.md'} and {out}")
    # a program stopped by --timeout still gives numbers; one that failed otherwise does not
    return 1 if any(not results[p]["timed_out"] for p in failed) else 0


if __name__ == "__main__":
    sys.exit(main())
