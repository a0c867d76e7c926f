"""Throughput of the forward model and of backprojection (images per second).

Usage::

    .venv/bin/python benchmarks/render.py            # D = 64 and 128, batch 256
    .venv/bin/python benchmarks/render.py --quick    # batch 32, one timed run

Rows: Fourier-slice rendering of a voxel volume (prepared 2x-padded ``FourierVolume``,
so the per-call 3D FFT is excluded; real images out), analytic Gaussian-mixture
rendering (4k / 16k Gaussians, real images out via the half plane), each with and
without CTF (shifts always on), and streaming backprojection (``BackprojectionAccumulator.add``
with CTF and shifts). Runs on the CPU and, when available, on CUDA.

``model GFLOP/img`` is an operation-count model of the dominant terms, not a measurement:
Fourier slice ``~65 D^2`` (slice coordinates, trilinear weights, 8-corner complex gather)
``+ 5 D^2 log2(D^2)`` (inverse FFT) ``+ ~50 D^2`` (phase ramp) ``+ ~60 D^2`` (CTF);
Gaussians ``8 G D (D/2+1)`` (complex matmul) ``+ ~12 G (D + D/2+1)`` (separable factors)
``+ 2.5 D^2 log2(D^2)`` (inverse real FFT) ``+ ~60 D^2/2`` (CTF on the half plane);
backprojection on the ``P = 2D`` padded half plane ``P (P/2+1) (~80 + 48)`` (coordinates,
weights, CTF/shift, 8-corner 3-channel scatter) ``+ 2.5 P^2 log2(P^2)`` (forward real FFT).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from functools import partial

import torch

from cryohet.geometry.rotations import random_rotations
from cryohet.imaging.gaussians import voxelize_gaussians
from cryohet.imaging.projection import volume_to_fourier
from cryohet.reconstruction import BackprojectionAccumulator
from cryohet.representations import GaussianMixture
from cryohet.representations.render import render


def _flops_slice(d: int, ctf: bool) -> float:
    n = d * d
    return 65 * n + 5 * n * math.log2(n) + 50 * n + (60 * n if ctf else 0)


def _flops_gmm(d: int, g: int, ctf: bool) -> float:
    nx = d // 2 + 1
    return 8 * g * d * nx + 12 * g * (d + nx) + 2.5 * d * d * math.log2(d * d) + (60 * d * nx if ctf else 0)


def _flops_backprojection(d: int) -> float:
    p = 2 * d
    return p * (p // 2 + 1) * (80 + 48) + 2.5 * p * p * math.log2(p * p)


def _time(fn, device: torch.device, reps: int) -> float:
    fn()  # warm-up (allocations, kernels)
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def _inputs(batch: int, d: int, apix: float, device: torch.device):
    g = torch.Generator().manual_seed(0)
    rot = torch.tensor(random_rotations(batch, 0), dtype=torch.float32, device=device)
    shifts = ((torch.rand(batch, 2, generator=g) - 0.5) * 8 * apix).to(device)
    ctf = torch.zeros(batch, 9)
    ctf[:, 0] = 10000 + 15000 * torch.rand(batch, generator=g)
    ctf[:, 1] = ctf[:, 0] - 300
    ctf[:, 2] = 180 * torch.rand(batch, generator=g)
    ctf[:, 3], ctf[:, 4], ctf[:, 5], ctf[:, 8] = 300.0, 2.7, 0.1, 1.0
    return rot, shifts, ctf.to(device)


def _mixture(n: int, d: int, apix: float, device: torch.device) -> GaussianMixture:
    g = torch.Generator().manual_seed(1)
    c = (torch.rand(n, 3, generator=g) - 0.5) * (0.5 * d * apix)
    return GaussianMixture(
        c.to(device),
        (torch.rand(n, generator=g) + 0.5).to(device),
        torch.full((n,), 2.0 * apix, device=device),
    )


def run(device: torch.device, sizes: list[int], batch: int, n_gaussians: list[int], reps: int) -> Iterator[tuple]:
    """Yield ``(renderer, D, G, CTF, images/s, model GFLOP/img)`` rows as they are measured."""
    apix = 2.0
    for d in sizes:
        rot, shifts, ctf = _inputs(batch, d, apix, device)
        small = _mixture(512, d, apix, device)
        vft = volume_to_fourier(voxelize_gaussians(small.centres_A, small.amplitudes, small.sigmas_A, d, apix))
        for use_ctf in (False, True):
            p = ctf if use_ctf else None
            with torch.no_grad():
                t = _time(partial(render, vft, rot, shifts, p, d, apix), device, reps)
            yield (
                "Fourier slice",
                d,
                "-",
                "yes" if use_ctf else "no",
                batch / t,
                _flops_slice(d, use_ctf) / 1e9,
            )
        for n in n_gaussians:
            gmm = _mixture(n, d, apix, device)
            for use_ctf in (False, True):
                p = ctf if use_ctf else None
                with torch.no_grad():
                    t = _time(partial(render, gmm, rot, shifts, p, d, apix), device, reps)
                yield (
                    "Gaussian mixture",
                    d,
                    n,
                    "yes" if use_ctf else "no",
                    batch / t,
                    _flops_gmm(d, n, use_ctf) / 1e9,
                )
        images = torch.randn(batch, d, d, device=device)
        acc = BackprojectionAccumulator(d, apix, device=device)
        t = _time(partial(acc.add, images, rot, shifts, ctf), device, reps)
        yield ("backprojection", d, "-", "yes", batch / t, _flops_backprojection(d) / 1e9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 32 and a single timed run")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--gaussians", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--cpu-only", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (32 if args.quick else 256)
    reps = 1 if args.quick else 3
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, batch {batch}, best of {reps}")
    header = (
        f"{'device':<6} {'renderer':<17} {'D':>4} {'G':>6} {'CTF':>4} {'images/s':>10} "
        f"{'model GFLOP/img':>16} {'GFLOP/s':>8}"
    )
    print(header)
    print("-" * len(header))
    for dev in devices:
        for name, d, g, c, ips, gf in run(dev, args.sizes, batch, args.gaussians, reps):
            print(
                f"{dev.type:<6} {name:<17} {d:>4} {g!s:>6} {c:>4} {ips:>10.1f} {gf:>16.4f} {ips * gf:>8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
