"""Kill CryoSPIRE training at every phase and inside every write, resume it, compare bitwise.

For each case, ``cryohet train spire`` runs on a small dataset (default: the pinned test
set) in a subprocess that kills itself with SIGKILL at one moment — at the start of an
epoch (stage A, the stage-A→B transition, stage B, the last-quarter latent search),
before or after ``torch.save`` of a checkpoint (a written temporary file, not yet in
place), after a checkpoint is in place but before its log row, or inside the final
outputs (before ``latents.npy``, before the extras, before ``COMPLETED``) — then the same
command with ``--resume`` finishes it. The finished run must equal an uninterrupted run
bit for bit: ``latents.npy``, every tensor of ``model.pt``, ``extras/gaussians.npz`` and
``part_motion.npz``, the per-epoch losses of ``train_log.jsonl`` (one row per epoch, no
hole, no duplicate), a ``COMPLETED`` stamp, and no temporary file left anywhere.
``--ranks 2`` repeats a subset on two processes (``torchrun``, gloo) against a two-process
reference. Prints a table and the count of cases passed.

Example::

    .venv/bin/python scripts/fault_injection.py --workdir /tmp/faults --ranks 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PINNED = ROOT / "tests" / "data" / "pinned" / "data"

#: The injection: patched into the training process before the CLI runs.
INJECT = r"""
import os, signal, sys
target, when, nth = os.environ["CRYOHET_FAULT"].split(":")
nth = int(nth)
calls = {"n": 0}
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def wrap(owner, name, after=False, key=None):
    real = getattr(owner, name)
    def wrapped(*a, **k):
        if key is None or key(a, k):
            calls["n"] += 1
            if calls["n"] == nth and not after:
                die()
        out = real(*a, **k)
        if (key is None or key(a, k)) and calls["n"] == nth and after:
            die()
        return out
    setattr(owner, name, wrapped)
import cryohet.training.checkpoint as C
import cryohet.training.loop as L
import cryohet.training.rundir as R
import cryohet.methods.spire.trainer as T
import cryohet.methods.spire.outputs as O
is_epoch_ckpt = lambda a, k: "epoch_" in str(a[1] if len(a) > 1 else k.get("f", ""))
if target == "epoch":
    real = T.SpireTrainer.train_epoch
    def train_epoch(self, epoch):
        if epoch == nth:
            die()
        return real(self, epoch)
    T.SpireTrainer.train_epoch = train_epoch
elif target == "torch.save":
    wrap(C.torch, "save", after=(when == "after"), key=is_epoch_ckpt)
elif target == "prune":
    wrap(L, "prune_checkpoints")
elif target == "append_log":
    wrap(R.RunDir, "append_log")
elif target == "save_latents":
    wrap(R.RunDir, "save_latents")
elif target == "save_extra":
    wrap(R.RunDir, "save_extra")
elif target == "mark_complete":
    wrap(R.RunDir, "mark_complete")
elif target == "consensus":
    wrap(T, "write_volume", after=True)
else:
    raise SystemExit(f"unknown fault target {target}")
from cryohet.cli.app import main
sys.exit(main(sys.argv[1:]))
"""

#: (label, CRYOHET_FAULT) — epochs 0-1 are stage A, 2-4 stage B (the last-quarter search before 4).
CASES = [
    ("after the consensus map is written", "consensus:after:1"),
    ("start of epoch 1 (stage A)", "epoch:at:1"),
    ("start of epoch 2 (stage A -> B transition)", "epoch:at:2"),
    ("start of epoch 3 (stage B)", "epoch:at:3"),
    ("start of epoch 4 (latent search, stage B)", "epoch:at:4"),
    ("before torch.save of checkpoint 1", "torch.save:before:1"),
    ("after torch.save of checkpoint 2 (temporary file written)", "torch.save:after:2"),
    ("after checkpoint 3 is in place, before its log row", "prune:before:3"),
    ("before the log row of epoch 2", "append_log:before:2"),
    ("outputs: before latents.npy", "save_latents:before:1"),
    ("outputs: before the first extras file", "save_extra:before:1"),
    ("outputs: between two extras files", "save_extra:before:2"),
    ("outputs: before COMPLETED", "mark_complete:before:1"),
]
TWO_RANK_CASES = {"epoch:at:2", "epoch:at:3", "torch.save:after:2", "append_log:before:2", "save_extra:before:2"}


def spire_args(data: Path, out: Path) -> list[str]:
    return [
        "train", "spire", str(data / "particles.star"), "-o", str(out), "--zdim", "3", "--latent-search", "4",
        "--init-regions", "4", "--epochs-a", "2", "--epochs-b", "3", "--coarse-gaussians", "128",
        "--gaussians", "256", "-b", "16", "--seed", "3",
    ]  # fmt: skip


def launch(args: list[str], ranks: int, fault: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    if fault:
        env["CRYOHET_FAULT"] = fault
        code = ["-c", INJECT]
    else:
        code = ["-m", "cryohet"]
    if ranks == 1:
        cmd = [sys.executable, *code, *args]
    else:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
        if fault:
            script = Path(os.environ.get("TMPDIR", "/tmp")) / "cryohet_fault_inject.py"
            script.write_text(INJECT)
            cmd = [torchrun, "--standalone", "--nproc-per-node", str(ranks), str(script), *args]
        else:
            cmd = [torchrun, "--standalone", "--nproc-per-node", str(ranks), "-m", "cryohet", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def fingerprint(run: Path) -> dict:
    """Everything that must be identical between a resumed and an uninterrupted run."""
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines() if x.strip()]
    model = torch.load(run / "model.pt", weights_only=True)
    arrays = {"latents": np.load(run / "latents.npy")}
    for name in ("gaussians", "part_motion", "stage_a"):
        with np.load(run / "extras" / f"{name}.npz") as f:
            arrays.update({f"{name}.{k}": f[k] for k in f.files})
    for part, sd in model.items():
        arrays.update({f"model.{part}.{k}": v.numpy() for k, v in sd.items()})
    return {
        "epochs": [r["epoch"] for r in log],
        "data": [r["data"] for r in log],
        "arrays": arrays,
        "complete": (run / "COMPLETED").exists(),
        "leftovers": sorted(str(p.relative_to(run)) for p in run.rglob("*") if ".tmp" in p.name),
    }


def compare(got: dict, ref: dict) -> str:
    """'' when equal bit for bit, else what differs."""
    if got["epochs"] != ref["epochs"]:
        return f"log epochs {got['epochs']} != {ref['epochs']}"
    if got["data"] != ref["data"]:
        return "per-epoch losses differ"
    if not got["complete"]:
        return "no COMPLETED stamp"
    if got["leftovers"]:
        return f"temporary files left: {got['leftovers'][:3]}"
    if set(got["arrays"]) != set(ref["arrays"]):
        return "different output files/tensors"
    for k, v in ref["arrays"].items():
        if not np.array_equal(got["arrays"][k], v):
            return f"{k} differs"
    return ""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=PINNED, help="dataset folder with particles.star")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/cryohet_faults"))
    p.add_argument("--ranks", type=int, nargs="+", default=[1], help="world sizes to try (1 and/or 2)")
    args = p.parse_args()
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    rows = []
    for ranks in args.ranks:
        ref_dir = args.workdir / f"reference_{ranks}"
        res = launch(spire_args(args.data, ref_dir), ranks, None)
        if res.returncode != 0:
            raise SystemExit(f"reference run ({ranks} ranks) failed:\n{res.stderr[-3000:]}")
        ref = fingerprint(ref_dir)
        for label, fault in CASES:
            if ranks > 1 and fault not in TWO_RANK_CASES:
                continue
            run = args.workdir / f"{fault.replace(':', '_')}_{ranks}"
            t0 = time.perf_counter()
            killed = launch(spire_args(args.data, run), ranks, fault)
            resumed = launch([*spire_args(args.data, run), "--resume"], ranks, None)
            if killed.returncode == 0:
                verdict = "NOT KILLED (the fault point was not reached)"
            elif resumed.returncode != 0:
                last = (resumed.stderr.strip().splitlines() or ["?"])[-1]
                verdict = f"resume failed: {last[:160]}"
            else:
                verdict = compare(fingerprint(run), ref) or "identical"
            rows.append((ranks, label, killed.returncode, verdict, time.perf_counter() - t0))
            print(f"{ranks} rank(s) | {label} | killed rc {killed.returncode} | {verdict}", flush=True)
    passed = sum(r[3] == "identical" for r in rows)
    print("\n| ranks | killed at | exit code of the killed run | resumed run vs uninterrupted | s |")
    print("|---|---|---|---|---|")
    for ranks, label, rc, verdict, s in rows:
        print(f"| {ranks} | {label} | {rc} | {verdict} | {s:.0f} |")
    print(f"\n{passed} of {len(rows)} cases: resumed bitwise identical to an uninterrupted run")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
