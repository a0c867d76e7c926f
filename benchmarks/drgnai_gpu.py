"""DRGN-AI throughput per phase on one device (meant for a GPU at D=128): pose search,
grid caching and training steps, with and without bf16 autocast, and peak GPU memory.

It builds the very trainer ``cryohet train drgnai`` builds (``DrgnaiTrainer``) on a
dataset, warms the field up with a few pretraining steps, then times each piece of an
epoch on real batches of that dataset:

* ``cache``: the field's Fourier grids for the search, one per latent cluster (once per
  search window of ``refresh_batches`` batches in a run), filled as the run fills them
  (``search.grid_from``) and, for comparison, the other way;
* ``search``: the hierarchical search of one window's images (``_search_batches``), at the
  first search epoch's band and at the last one's; ``window`` = images searched together;
* ``step``: one training step (forward, backward, Adam, table updates) at the pretraining
  band, at the search's end band, and on the full band with trained poses (joint descent),
  each with autocast on and off.

Rows: images/s, s/image, peak GPU memory (``torch.cuda.max_memory_allocated``) and peak
RSS. ``--simulate N`` first writes an ``igg-1d`` set of N images (20 states, SNR 0.05) at
``--box`` with the simulator on the same device. Example (on a lent H200)::

    python3 benchmarks/drgnai_gpu.py --simulate 4096 --box 128 --data /tmp/igg128 \\
        --device cuda --zdim 8 --windows 4,16,64 --json /tmp/drgnai_gpu.json

    # CPU, tiny, to check the script itself
    .venv/bin/python benchmarks/drgnai_gpu.py --data tests/data/pinned/data --device cpu \\
        --zdim 2 --windows 1,2 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from cryohet.io.source import ParticleSource
from cryohet.methods.drgnai import DrgnaiConfig
from cryohet.methods.drgnai.trainer import DrgnaiTrainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _gpu_peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Timer:
    """Median seconds of ``repeats`` timed calls after one warm-up call, device-synchronised."""

    def __init__(self, device: torch.device, repeats: int) -> None:
        self.device, self.repeats = device, repeats

    def __call__(self, fn) -> tuple[float, float | None]:
        fn()
        _sync(self.device)
        _reset_peak(self.device)
        times = []
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            fn()
            _sync(self.device)
            times.append(time.perf_counter() - t0)
        return float(np.median(times)), _gpu_peak_mb(self.device)


def simulate(out: Path, n: int, box: int, device: str, seed: int = 0) -> float:
    from cryohet.simulate.config import SimulationConfig
    from cryohet.simulate.simulator import simulate_dataset

    t0 = time.perf_counter()
    simulate_dataset(SimulationConfig(preset="igg-1d", out=out, n_images=n, box=box, snr=0.05, seed=seed, n_states=20,
                                      device=device, overwrite=True))  # fmt: skip
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with particles.star (written by --simulate)")
    ap.add_argument("--simulate", type=int, default=0, help="first simulate this many igg-1d images into --data")
    ap.add_argument("--box", type=int, default=128)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--zdim", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32, help="training batch (images per step)")
    ap.add_argument("--windows", default="4,16,64", help="search windows to time, in batches")
    ap.add_argument("--chunks", default="32,256,1024", help="first-round chunks to time on the largest window")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    rows: list[dict] = []
    if args.simulate:
        sec = simulate(args.data, args.simulate, args.box, args.device)
        rows.append({"piece": "simulate", "images": args.simulate, "seconds": sec, "images_per_s": args.simulate / sec})
    cfg = DrgnaiConfig(
        data=ParticleSource(path=args.data / "particles.star"),
        out=str(args.data / "bench_run"),
        zdim=args.zdim,
        optim={"batch_size": args.batch},
        device=args.device,
        num_workers=0,
    )
    t = DrgnaiTrainer(cfg, device=device)
    windows = [int(w) for w in args.windows.split(",")]
    need = max(windows) * args.batch
    if t.n < need:
        raise SystemExit(f"{t.n} images; the largest window needs {need}")
    batches = [t.dataset.get_batch(np.arange(i * args.batch, (i + 1) * args.batch)) for i in range(max(windows))]
    for i, b in enumerate(batches[:8]):  # warm the field up a little
        t.train_step(b, t.radius_start_px, "pretrain", seed=i)
    timer = Timer(device, args.repeats)
    first_r = t.radius(t.n_pretrain)
    last_r = t.radius(t.n_pretrain + t.n_search - 1)
    centres = t._cluster_centres()

    def add(piece: str, images: int, sec: float, gpu: float | None, **kw) -> None:
        row = {"piece": piece, "images": images, "seconds": sec, "images_per_s": images / sec,
               "s_per_image": sec / images, "gpu_peak_mb": gpu, "peak_rss_mb": _rss_mb(), **kw}  # fmt: skip
        rows.append(row)
        print(_fmt(row), flush=True)

    print(f"D={t.box} ({t.apix:.3g} Å/px), zdim {args.zdim}, batch {args.batch}, device {device}, "
          f"search band {t.radius_start_px:.1f} -> {t.radius_end_px:.1f} px, base level {cfg.search.base_level}",
          flush=True)  # fmt: skip
    print(f"first-round chunk: {cfg.search.chunk_images or (256 if device.type == 'cuda' else 32)} images")
    fills = (cfg.search.grid_from, "network" if cfg.search.grid_from == "map" else "map")
    for radius, tag in ((first_r, "first"), (last_r, "last")):
        for fill in fills:  # the run's way of filling the grids first, then the other for comparison
            t.cfg.search.grid_from = fill
            sec, gpu = timer(lambda r=radius: t._search_sources(r, centres))
            add(
                f"cache grids ({tag} search band, from {fill})",
                1,
                sec,
                gpu,
                radius_px=radius,
                clusters=1 if centres is None else len(centres),
            )
        t.cfg.search.grid_from = fills[0]
        sources = t._search_sources(radius, centres)
        for w in windows:
            win = batches[:w]
            sec, gpu = timer(lambda win=win, s=sources, r=radius: t._search_batches(win, s, r))
            add(f"search ({tag} band), window {w} x {args.batch}", w * args.batch, sec, gpu, radius_px=radius)
        if tag == "last":
            for chunk in [int(c) for c in args.chunks.split(",") if c]:
                t.cfg.search.chunk_images = chunk
                win = batches[: windows[-1]]
                sec, gpu = timer(lambda win=win, s=sources, r=radius: t._search_batches(win, s, r))
                add(f"search ({tag} band), window {windows[-1]} x {args.batch}, chunk {chunk}", len(win) * args.batch,
                    sec, gpu, radius_px=radius, chunk=chunk)  # fmt: skip
            t.cfg.search.chunk_images = None
    for amp in (True, False):
        t.cfg.amp = amp
        for phase, radius in (("pretrain", t.radius_start_px), ("search", last_r), ("sgd", t.box / 2)):
            b = batches[0]
            sec, gpu = timer(lambda b=b, p=phase, r=radius: t.train_step(b, r, p, seed=1))
            add(f"train step {phase} (r={radius:.0f} px){' amp' if amp else ''}", args.batch, sec, gpu, amp=amp)
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "box": t.box, "zdim": args.zdim, "rows": rows},
                                        indent=1))  # fmt: skip
    print("\n| piece | images | seconds | images/s | s/image | GPU peak MB | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(_fmt(r))


def _fmt(r: dict) -> str:
    gpu = r.get("gpu_peak_mb")
    return (f"| {r['piece']} | {r['images']} | {r['seconds']:.4f} | {r['images_per_s']:.1f} | "
            f"{r.get('s_per_image', 0):.2e} | "
            f"{'-' if gpu is None else f'{gpu:.0f}'} | {r.get('peak_rss_mb', 0):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
