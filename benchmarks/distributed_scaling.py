"""CryoSPIRE stage-B training on 1 and N processes (torch.distributed): images/s and bytes per step.

For one dataset (``--dataset``: a folder with ``particles.star``, e.g. from ``cryohet
simulate``; seeded from ``gt/state_000.mrc`` so no consensus is computed) this launches
``torchrun --standalone --nproc-per-node W`` for each W in ``--world-sizes`` and, on
every rank, times ``--steps`` stage-B training steps of the trainer itself (DDP-wrapped
model, latent rows synchronised) after ``--warmup`` steps. The per-rank batch is
``--batch``, so a step processes ``batch x W`` images. It counts the bytes every rank
sends into collectives per step: the DDP gradient buckets (a DDP communication hook
around the default all-reduce) and the latent-table row gathers; and prints one table:
world size, threads per rank, images/s, s/step, speed-up, gradient and latent bytes per
step, peak RSS and GPU memory.

With one process no process group exists and no distributed call does anything (the
code path is the single-process one), so world size 1 *is* the baseline.

Example::

    .venv/bin/python benchmarks/distributed_scaling.py --dataset /work/data/igg1d_2k \\
        --world-sizes 1 2 --threads 1 --batch 32 --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from cryohet.io.source import ParticleSource
    from cryohet.methods.spire.config import SpireConfig
    from cryohet.methods.spire.trainer import SpireTrainer
    from cryohet.representations.render import prepare_batch
    from cryohet.training import distributed as D
    from cryohet.training.loop import gpu_peak_mb, peak_rss_mb

    info, device = D.init_distributed(args.device)
    D.quiet_non_main()
    counts = {"grad_bytes": 0, "latent_bytes": 0}
    original_gather = D.all_gather_rows

    def counting_gather(values):
        counts["latent_bytes"] += values.numel() * values.element_size()
        return original_gather(values)

    import cryohet.latents.table as table_module

    table_module.all_gather_rows = counting_gather
    cfg = SpireConfig(
        data=ParticleSource(path=str(Path(args.dataset) / "particles.star")),
        out=args.out,
        init_map=str(Path(args.dataset) / "gt" / "state_000.mrc"),
        device=args.device,
        latent_search=0,
        init_regions=0,
        stage_a={"epochs": 0},
        stage_b={"epochs": 1, "gaussians": args.gaussians},
        optim={"batch_size": args.batch},
    )
    tr = SpireTrainer(cfg, device=device)
    tr._begin_stage_b()
    if info.enabled:

        def hook(state, bucket):
            counts["grad_bytes"] += bucket.buffer().numel() * bucket.buffer().element_size()
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

            return allreduce_hook(None, bucket)

        tr.ddp.register_comm_hook(None, hook)
    tr.loader.set_epoch(0)
    sizes = tr.loader.sampler.global_batch_sizes() if info.enabled else None
    batches = iter(tr.loader)
    n_total = args.warmup + args.steps
    if len(tr.loader) < n_total:
        raise SystemExit(f"the dataset gives {len(tr.loader)} steps; need {n_total} (fewer --steps or more images)")
    images = 0
    t0 = 0.0
    for step in range(n_total):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            D.barrier()
            t0 = time.perf_counter()
            counts.update(grad_bytes=0, latent_bytes=0)
        fb = prepare_batch(next(batches), tr.band, device)
        tr.train_step(fb, None if sizes is None else sizes[step])
        if step >= args.warmup:
            images += sizes[step] if sizes is not None else len(fb)
    if device.type == "cuda":
        torch.cuda.synchronize()
    D.barrier()
    seconds = time.perf_counter() - t0
    if info.is_main:
        gpu = gpu_peak_mb(device)
        print(
            "RESULT "
            + json.dumps(
                {
                    "world": info.world_size,
                    "threads": args.threads,
                    "images_per_s": images / seconds,
                    "s_per_step": seconds / args.steps,
                    "grad_bytes_per_step": counts["grad_bytes"] / args.steps,
                    "latent_bytes_per_step": counts["latent_bytes"] / args.steps,
                    "peak_rss_mb": peak_rss_mb(),
                    "gpu_peak_mb": gpu,
                    "gaussians": tr.model_b.n_gaussians,
                    "params": sum(p.numel() for p in tr.model_b.parameters()),
                }
            ),
            flush=True,
        )
    D.shutdown_distributed()


def run(args: argparse.Namespace, world: int, out: Path) -> dict:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [torchrun, "--standalone", "--nproc-per-node", str(world), __file__, "--worker"]
    cmd += ["--dataset", str(args.dataset), "--out", str(out), "--threads", str(args.threads)]
    cmd += ["--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd += ["--device", args.device, "--gaussians", str(args.gaussians)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise SystemExit(f"world size {world} failed:\n{proc.stderr[-3000:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--world-sizes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--batch", type=int, default=32, help="images per step per rank")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--gaussians", type=int, default=4096)
    p.add_argument("--device", default="cpu")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.world_sizes:
            rows.append(run(args, w, Path(tmp) / f"w{w}"))
    base = rows[0]["images_per_s"]
    load = os.getloadavg()[0]
    print(
        f"# CryoSPIRE stage B, {rows[0]['gaussians']} Gaussians, {rows[0]['params']:,} parameters, "
        f"batch {args.batch} per rank, device {args.device}, load average {load:.1f}"
    )
    print(
        "| ranks | threads/rank | images/s | s/step | speed-up | gradient bytes/step/rank | latent bytes/step/rank "
        "| peak RSS MB (rank 0) | GPU MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gpu = "-" if r["gpu_peak_mb"] is None else f"{r['gpu_peak_mb']:.0f}"
        print(
            f"| {r['world']} | {r['threads']} | {r['images_per_s']:.1f} | {r['s_per_step']:.3f} | "
            f"{r['images_per_s'] / base:.2f}x | {r['grad_bytes_per_step']:,.0f} | {r['latent_bytes_per_step']:,.0f} | "
            f"{r['peak_rss_mb']:.0f} | {gpu} |"
        )


if __name__ == "__main__":
    main()
