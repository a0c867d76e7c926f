"""How fast HetACUMN's task 2 teaches an encoder poses, and whether they carry over to real images.

A fresh encoder (the run's architecture) is trained on task 2 alone: images rendered from
the **true** map of a simulated dataset (``DATA/gt/state_NNN.mrc``, resampled to the
training box and scaled to the images by least squares at their true poses), at uniform
random poses and shifts, with the data's CTFs and white noise at ``--noise`` times the
data's level; ``--state -1`` renders every true state in turn (one per step), as the
field does at the encoder's latents. Every ``--every`` steps it prints the task-2 loss
(regressed rotations: squared Frobenius + shift, random ~6; classified: cross-entropy +
shift, random ~ln N) and the median rotation error on new renders and on real images of
the dataset against their true poses (random: ~126 deg; with several heads, each image's
head that best explains it against its true state's map). No field and no search are
involved, so the curve isolates the encoder's side of task 2::

    .venv/bin/python benchmarks/hetacumn_task2_curve.py --data igg4k --state -1 --steps 30000

Measured on igg-1d (4 000 images, D=64, SNR 0.1) at box 32, one thread, load 3-4, median
error on real images after 5 000 / 15 000 / 30 000 steps, every state rendered:

* rotations classified over the level-1 grid (the default): 33.1 / 18.5 / 15.7 deg (40.4 /
  24.5 / 22.0 with the best grid rotation unrefined); at level 2: 48.8 / 21.2 / 15.6 deg;
* two classified heads: 18.7 deg at 15 000 steps, 16.0 at 25 000 (one head: 18.5, 16.1);
* regressed (``--rotation-grid none``): 112.8 / 105.2 / 79.5 deg.

Rendering state 0 only, regressed: 87 deg after 30 000 steps and 74 after 100 000 (51 on new
renders); four regressed heads 96 deg, the CTF's phases flipped before the encoder 95 deg
(30 000 steps): neither pays.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np
import torch

from cryohet.geometry.rotations import rotation_angle_deg
from cryohet.io.source import ParticleSource
from cryohet.methods.hetacumn import HetacumnConfig
from cryohet.methods.hetacumn.pose_task import pose_task_loss, render_at_random_poses
from cryohet.methods.hetacumn.trainer import HetacumnTrainer
from cryohet.representations.voxel import VoxelVolume, resample_volume


def _true_map(trainer: HetacumnTrainer, data: Path, state: int) -> VoxelVolume:
    """The state's map at the trainer's box, scaled to the images at their true poses."""
    path = data / "gt" / f"state_{state:03d}.mrc"
    with mrcfile.open(path, permissive=True) as m:
        vol = torch.as_tensor(np.asarray(m.data, dtype=np.float32).copy())
        apix_in = float(m.voxel_size.x) or trainer.apix
    vol = resample_volume(vol, apix_in, trainer.box, trainer.apix)
    band, b = trainer.render_band, next(iter(trainer.loader))
    with torch.no_grad():
        rendered = band.to_images(VoxelVolume(vol, trainer.apix).slices(b.rotations, band) * band.filters(
            b.ctf_params, b.shifts_A))  # fmt: skip
    scale = float((b.images * rendered).sum() / (rendered * rendered).sum())
    return VoxelVolume(vol * scale, trainer.apix)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="simulated dataset folder (particles.star, gt/)")
    ap.add_argument("--noise", type=float, default=1.0, help="noise of the renders, x the data's")
    ap.add_argument("--steps", type=int, default=30000)
    ap.add_argument("--every", type=int, default=2500, help="report every this many steps")
    ap.add_argument("--box", type=int, default=32, help="training box (Fourier-cropped)")
    ap.add_argument("--state", type=int, default=0, help="which true state to render (-1: all, one per step)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heads", type=int, default=1, help="pose heads (the best head by the data term is scored)")
    ap.add_argument("--channels", type=str, default=None, help="encoder channels, e.g. 32,64,128,256")
    ap.add_argument("--phase-flip", action="store_true", help="the encoder sees phase-flipped images (CTF sign undone)")
    ap.add_argument("--rotation-grid", default="1", help="the encoder's rotation_grid_level: classify rotations "
                    "over the HEALPix grid of this level; 'none' regresses them (6D)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    encoder = {
        "heads": args.heads,
        "rotation_grid_level": args.rotation_grid,
    }
    if args.channels:
        encoder["channels"] = tuple(int(c) for c in args.channels.split(","))
    cfg = HetacumnConfig(
        data=ParticleSource(path=str(args.data / "particles.star")), out=str(Path(tempfile.gettempdir()) / "task2"),
        zdim=8, box=args.box, poses_mode="fixed", seed=args.seed, encoder=encoder,
    )  # fmt: skip
    trainer = HetacumnTrainer(cfg)
    band, encoder = trainer.render_band, trainer.encoder
    labels = np.load(args.data / "gt" / "labels.npy")
    states = sorted(np.unique(labels)) if args.state < 0 else [args.state]
    maps = {s: _true_map(trainer, args.data, s) for s in states}
    source = maps[states[0]]
    limit = 0.5 * encoder.max_shift_A
    noise_std = trainer.noise_std * args.noise
    batches = iter(trainer.loader)
    held = [next(batches) for _ in range(16)]  # 512 real images to score (training uses only CTFs)
    ctf_eval = torch.cat([b.ctf_params for b in held])[:256]

    def encode(images: torch.Tensor, ctf_params: torch.Tensor):
        """The encoder's answer on images (phase-flipped first with ``--phase-flip``)."""
        if args.phase_flip:
            images = band.to_images(band.observed(images) * torch.sign(band.filters(ctf_params, None)))
        return encoder(images)

    def chosen(images: torch.Tensor, ctf_params: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Each image's rotation from the head whose pose best explains it (squared error
        against its true state's map (``index``: rows of the dataset; else the rendered
        state's) at that head's pose: what a trained field would do)."""
        enc = encode(images, ctf_params)
        if enc.heads == 1:
            return enc.rotations[:, 0]
        observed, ctf = band.observed(images), band.filters(ctf_params, None)
        own = [source] * len(images) if index is None else [maps.get(int(labels[i]), source) for i in index]
        errs = []
        for h in range(enc.heads):
            slices = torch.cat([own[i].slices(enc.rotations[i : i + 1, h], band) for i in range(len(images))])
            model = slices * ctf * band.filters(None, enc.shifts_A[:, h])
            errs.append(((observed - model).abs() ** 2).sum(dim=(-2, -1)))
        head = torch.stack(errs, dim=1).argmin(dim=1)
        return enc.pick(head)[0]

    def medians() -> tuple[float, float]:
        encoder.eval()
        with torch.no_grad():
            images, rot, _ = render_at_random_poses(
                source, band, len(ctf_eval), np.random.default_rng(99), ctf_params=ctf_eval, max_shift_A=limit,
                noise_std=noise_std,
            )  # fmt: skip
            on_renders = float(rotation_angle_deg(chosen(images, ctf_eval), rot).median())
            real = torch.cat([rotation_angle_deg(chosen(b.images, b.ctf_params, b.index), b.rotations) for b in held])
        encoder.train()
        return on_renders, float(real.median())

    opt = torch.optim.Adam(encoder.parameters(), lr=cfg.optim.lr_encoder)
    rng = np.random.default_rng(args.seed)
    losses: list[float] = []
    print(f"| step | task-2 loss | renders: median deg | real images: median deg | s |  (noise {args.noise} x)")
    print("|---|---|---|---|---|")
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        b = next(batches, None)
        if b is None:
            batches = iter(trainer.loader)
            b = next(batches)
        source = maps[states[step % len(states)]]
        images, rot, shifts = render_at_random_poses(source, band, len(b.images), rng, ctf_params=b.ctf_params,
                                                     max_shift_A=limit, noise_std=noise_std)  # fmt: skip
        loss, _ = pose_task_loss(encode(images, b.ctf_params), rot, shifts, limit)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % args.every == 0 or step == args.steps:
            on_renders, real = medians()
            print(f"| {step} | {np.mean(losses[-args.every:]):.3f} | {on_renders:.1f} | {real:.1f} | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
