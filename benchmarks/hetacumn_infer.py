"""Amortised inference speed of HetACUMN's encoder (``cryohet infer``'s core): images/s on a
particle stack, reading included, one CPU thread by default.

    python benchmarks/hetacumn_infer.py --particles sim/igg1d/particles.star [--threads 1] [--device cpu] \
        [--zdim 8] [--readout-shell S]

Prints a table (images/s, s/image, peak RSS, GPU memory) for the default encoder (one pose
head, rotations classified over the level-1 grid; ``--rotation-grid none`` regresses them;
with several heads every image's heads are also scored against the field), then the same
with the subspace readout of ``latent_readout`` (``zdim`` components on the band up to shell
``S``, default ``D/2 - 1``: the whole band, the dearest case; a seed's band ends at its
consensus FSC 0.143 + 2 shells, on simulated igg-1d at D=64 shell 27-31 of 32), and the
machine's load. The weights are untrained: the
cost does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import resource
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--particles", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--rotation-grid", default="1", help="encoder.rotation_grid_level ('none': regressed rotations)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("-n", type=int, default=4000, help="images encoded (the first n)")
    ap.add_argument("--zdim", type=int, default=8)
    ap.add_argument("--readout-shell", type=int, default=None, help="the readout's last shell (default D/2 - 1)")
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from cryohet.data.dataset import ParticleDataset
    from cryohet.imaging.bands import FourierBand
    from cryohet.imaging.likelihood import WeightedL2
    from cryohet.io.source import ParticleSource
    from cryohet.methods.hetacumn.config import HetacumnConfig
    from cryohet.methods.hetacumn.inference import encode_dataset
    from cryohet.methods.hetacumn.trainer import build_networks
    from cryohet.reconstruction.linear_subspace import SubspaceReadout

    meta = ParticleSource(path=args.particles).load()
    meta = meta.subset(np.arange(min(args.n, len(meta))))
    dataset = ParticleDataset(meta, normalize=True)
    cfg = HetacumnConfig(
        data=ParticleSource(path=args.particles),
        out="/tmp/unused",
        zdim=args.zdim,
        encoder={
            "heads": args.heads,
            "rotation_grid_level": args.rotation_grid,
        },
    )
    apix = float(np.median(dataset.apix))
    field, encoder = build_networks(cfg, dataset.box, apix)
    dev = torch.device(args.device)
    field, encoder = field.to(dev), encoder.to(dev)
    band = FourierBand.disc(dataset.box, apix, device=dev)
    box = dataset.box
    gen = torch.Generator().manual_seed(0)
    shell = args.readout_shell or box // 2 - 1
    readout_band = FourierBand.up_to_shell(box, apix, shell, dev)
    readout = SubspaceReadout(
        torch.randn((box,) * 3, generator=gen).to(dev), torch.randn((args.zdim,) + (box,) * 3, generator=gen).to(dev),
        readout_band, torch.ones(readout_band.n_shells, dtype=torch.float64, device=dev),
    )  # fmt: skip
    warm = dataset.__class__(meta.subset(np.arange(64)), normalize=True)
    rows = []
    for name, with_readout in (("cryohet infer (encoder)", None), (f"cryohet infer (encoder + subspace readout, "
                               f"k={args.zdim}, shell {shell})", readout)):  # fmt: skip
        encode_dataset(encoder, field, band, WeightedL2.white_noise(band), warm, dev, args.batch_size,
                       readout=with_readout)  # warm-up  # fmt: skip
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        encode_dataset(encoder, field, band, WeightedL2.white_noise(band), dataset, dev, args.batch_size,
                       readout=with_readout)  # fmt: skip
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        gpu = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else float("nan")
        rows.append(f"| {name} | {len(dataset) / seconds:.0f} | {seconds / len(dataset):.2e} | {rss:.0f} | {gpu:.0f} |")
    load = os.getloadavg()
    print(f"# {len(dataset)} images, box {dataset.box}, {args.threads} thread(s), {args.device}, heads {args.heads}, "
          f"rotation grid {args.rotation_grid}; "
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    print("| tool | images/s | s/image | peak RSS MB | GPU MB |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
