"""Where a CryoSPIRE training step spends its time: torch.profiler's top operators, and
images/s against the batch size.

For one dataset (``--dataset``, a folder with ``particles.star``) this builds the trainer
seeded from ``gt/state_000.mrc`` (no consensus), enters stage A or B, and

* times ``--batches`` steps at each ``--batch-sizes`` value (images/s, GPU memory);
* profiles ``--profile-steps`` steps at the first batch size and prints the operators
  with the largest self time on the device (CUDA) or CPU.

Example (GPU)::

    python benchmarks/spire_profile.py --dataset DATA --device cuda --stage B --batch-sizes 64,128,256
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def _trainer(args, batch_size: int):
    from cryohet.io.source import ParticleSource
    from cryohet.methods.spire.config import SpireConfig
    from cryohet.methods.spire.trainer import SpireTrainer

    cfg = SpireConfig(
        data=ParticleSource(path=args.dataset / "particles.star"),
        out=str(args.workdir / f"run_{batch_size}"),
        init_map=str(args.dataset / "gt" / "state_000.mrc"),
        device=args.device,
        stage_a={"epochs": 0},
        stage_b={"epochs": 1, "decoder": args.decoder},
        optim={"batch_size": batch_size},
    )
    tr = SpireTrainer(cfg)
    if args.stage == "B":
        tr._begin_stage_b()
    return tr


def _stepper(tr):
    """The trainer's own step on a few pre-loaded batches (the step, not the reader, is timed)."""
    from cryohet.representations.render import prepare_batch

    batches = []
    for i, b in enumerate(tr.loader):
        batches.append(prepare_batch(b, tr.band, tr.device))
        if i == 3:
            break

    def step(i: int) -> int:
        data, _ = tr.train_step(batches[i % len(batches)])
        return len(data)

    return step


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/spire_profile"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--stage", choices=["A", "B"], default="B")
    p.add_argument("--decoder", default="factorized")
    p.add_argument("--batch-sizes", default="128")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    print("| stage | batch | Gaussians | images/s | GPU MB |\n|---|---|---|---|---|")
    first = None
    for bs in sizes:
        tr = _trainer(args, bs)
        step = _stepper(tr)
        step(0), step(1)
        if tr.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(tr.device)
        _sync(tr.device)
        t0, n = time.perf_counter(), 0
        for i in range(args.batches):
            n += step(i)
        _sync(tr.device)
        rate = n / (time.perf_counter() - t0)
        gpu = f"{torch.cuda.max_memory_allocated(tr.device) / 2**20:.0f}" if tr.device.type == "cuda" else "-"
        model = tr._active()
        g = getattr(model, "n_gaussians", None) or int(model.centres_px.shape[0])
        print(f"| {args.stage} | {bs} | {g} | {rate:.1f} | {gpu} |", flush=True)
        if first is None:
            first = (tr, step)
    tr, step = first
    acts = [torch.profiler.ProfilerActivity.CPU]
    if tr.device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        for i in range(args.profile_steps):
            step(i)
        _sync(tr.device)
    key = "self_cuda_time_total" if tr.device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.top, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
