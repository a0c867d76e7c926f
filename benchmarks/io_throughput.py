"""Particle I/O throughput and memory: batched lazy reads vs the sequential-read limit.

Writes a synthetic stack of at least ``--size-gb`` GB (float32, ``--box`` pixels) and a
STAR file into a temporary folder, then streams it several ways and prints MB/s and the
peak resident memory (VmHWM, reset before each row) of each:

* ``np.fromfile sequential``: plain sequential reads of the same bytes into numpy
  (the physical limit of this disk/page cache);
* ``loader ...``: :class:`cryohet.data.BatchedParticleLoader` batches (dict of tensors),
  sequential, shuffled ("random": random batches sorted on disk; "chunks": contiguous
  batches in random order);
* ``one image at a time``: ``dataset[i]`` for a random sample (what a plain DataLoader
  without batched reads does);
* ``loader, pages kept``: the same loader with ``release_pages=False`` to show what
  memory mapping does to RSS without releasing pages.

"cold" rows evict the file from the page cache first (``fsync`` +
``posix_fadvise(DONTNEED)`` on this file; no root needed), "warm" rows read it right
after another pass (cached if RAM allows). The folder is deleted at the end.

    python benchmarks/io_throughput.py --size-gb 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from cryohet.data import BatchedParticleLoader, ParticleDataset
from cryohet.data.synthetic import synthetic_metadata
from cryohet.io.mrc import StackWriter
from cryohet.io.particles import load_particles
from cryohet.io.star import write_star


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
    except OSError:
        pass


def _evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _make_dataset(folder: Path, size_gb: float, box: int) -> tuple[Path, Path, int]:
    n = int(np.ceil(size_gb * 2**30 / (box * box * 4)))
    stack = folder / "stack_0.mrcs"
    rng = np.random.default_rng(0)
    base = rng.standard_normal((512, box, box), dtype=np.float32)
    with StackWriter(stack, n, box, 1.5) as w:
        for s in range(0, n, 512):
            m = min(512, n - s)
            w.write(s, base[:m] + np.float32(s % 97))
    meta = synthetic_metadata(n, box, 1.5, [stack], seed=0)
    star = write_star(folder / "particles.star", meta)
    return star, stack, n


def _row(name: str, cache: str, nbytes: int, seconds: float, rss0: float) -> tuple[str, ...]:
    peak = _status_mb("VmHWM")
    return (name, cache, f"{nbytes / 2**20 / seconds:,.0f}", f"{seconds:.2f}", f"{peak:,.0f}", f"{peak - rss0:+,.0f}")


def _fromfile(stack: Path, n: int, box: int, batch: int) -> int:
    per = box * box
    with open(stack, "rb") as fh:
        fh.seek(1024)
        total = 0
        for s in range(0, n, batch):
            a = np.fromfile(fh, dtype=np.float32, count=min(batch, n - s) * per)
            total += a.nbytes
    return total


def _loader_pass(ds: ParticleDataset, batch: int, **kw) -> int:
    loader = BatchedParticleLoader(ds, batch_size=batch, **kw)
    total = 0
    for b in loader:
        total += b.images.numel() * 4
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=4.0, help="stack size in GB (default 4)")
    ap.add_argument("--box", type=int, default=256, help="image size in pixels (default 256)")
    ap.add_argument("--batch", type=int, default=256, help="images per batch (default 256)")
    ap.add_argument("--single", type=int, default=4096, help="images read one at a time (default 4096)")
    ap.add_argument("--dir", type=Path, default=None, help="parent folder for the temporary data")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    folder = Path(tempfile.mkdtemp(prefix="cryohet_io_bench_", dir=args.dir))
    console = Console(width=150)
    try:
        t0 = time.perf_counter()
        star, stack, n = _make_dataset(folder, args.size_gb, args.box)
        size = stack.stat().st_size
        console.print(
            f"stack {stack} : {n:,} images of {args.box}² float32, {size / 2**30:.2f} GiB, "
            f"written in {time.perf_counter() - t0:.1f} s; "
            f"RAM {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"
        )
        meta = load_particles(star)
        rows = []
        ds = ParticleDataset(meta)
        ds_keep = ParticleDataset(meta)
        ds_keep.reader.release_pages = False

        def run(name: str, cache: str, fn) -> None:
            if cache == "cold":
                _evict(stack)
            rss0 = _status_mb("VmRSS")
            _reset_peak()
            t = time.perf_counter()
            nbytes = fn()
            rows.append(_row(name, cache, nbytes, time.perf_counter() - t, rss0))

        b = args.batch
        for cache in ("cold", "warm"):
            run("np.fromfile sequential", cache, lambda: _fromfile(stack, n, args.box, b))
            run(f"loader sequential (batch {b})", cache, lambda: _loader_pass(ds, b))
            run(f"loader shuffled 'random' (batch {b})", cache, lambda: _loader_pass(ds, b, shuffle=True, seed=1))
            run(
                f"loader shuffled 'chunks' (batch {b})", cache, lambda: _loader_pass(ds, b, shuffle=True, mode="chunks")
            )
        k = min(args.single, n)
        pick = np.random.default_rng(2).choice(n, size=k, replace=False)
        run(f"one image at a time ({k:,} random)", "warm", lambda: sum(ds[int(i)].images.numel() * 4 for i in pick))
        run(f"loader sequential, pages kept (batch {b})", "warm", lambda: _loader_pass(ds_keep, b))
        # 2 DataLoader worker processes (fork): each opens its own maps
        run(f"loader 'random', 2 workers (batch {b})", "warm", lambda: _loader_pass(ds, b, shuffle=True, num_workers=2))

        table = Table(title=f"particle I/O, {size / 2**30:.2f} GiB stack, box {args.box}, {os.cpu_count()} CPUs")
        for col in ("read", "page cache", "MB/s", "seconds", "peak RSS MB", "peak - start MB"):
            table.add_column(col, justify="left" if col == "read" else "right")
        for r in rows:
            table.add_row(*r)
        console.print(table)
        console.print(
            "peak RSS = VmHWM of this process (reset before each row; worker processes not included). "
            "'cold' = file evicted with posix_fadvise(DONTNEED) just before."
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
