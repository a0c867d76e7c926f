"""How well can any method know the poses of a simulated dataset? Local searches from given
poses against references of known quality, so that a pose-error criterion can be judged.

For a simulated dataset (``DATA/particles.star`` with the true poses, ``DATA/gt/``), every
image is refined by the shared local search (:func:`cryohet.pose.local_search`, the
training likelihood) on the full band, from ``--start`` poses, against:

* ``states``: each image against its own true state's noiseless map: the floor set by the
  images' noise alone;
* ``consensus-halves``: each image against a backprojection of the *other* half of the
  images at the true poses (no image in its own reference: a consensus refinement's best);
* ``classes-halves``: ``--classes`` classes of adjacent true states (what a classification
  could reach at best), each image against the other half of its class;
* ``consensus``: against the backprojection of all images at the true poses (each image is
  in its reference, which favours the pose it was put in at: reference bias).

Maps are scaled to the images by least squares at the true poses. Start poses: ``truth``,
or a run's ``poses.npz`` (after one global alignment to the truth, hand included). Prints
the median rotation error, the fractions within 3 and 10 deg, and seconds per pass::

    .venv/bin/python benchmarks/pose_error_floor.py --data igg05 --reference states consensus-halves

Measured on igg-1d (4 000 images, D=64, SNR 0.05; two threads, 272 and 163 s per pass): from
the true poses, 1.66 deg against the states and 3.85 against the other halves (1.12 against
the full consensus, one thread); from a DRGN-AI ab initio run's poses (6.71 deg), 1.91 deg
against the states. Four classes of five adjacent states (``--classes 4``, one thread, load
4) gave 3.92 deg: with 500 images per half-class the references' noise, not the states'
blur, sets the error. Scoring on a narrower band does not help against the noisy half maps
(``--radius-px``, one thread, load 4): 4.33 deg at |k| <= 20 px and 5.33 at 14 px, against
3.85 on the full disc (31 px).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from cryohet.data.dataset import ParticleDataset
from cryohet.geometry.rotations import rotation_angle_deg
from cryohet.imaging.bands import FourierBand
from cryohet.imaging.likelihood import WeightedL2
from cryohet.io.mrc import read_volume
from cryohet.io.source import ParticleSource
from cryohet.metrics.pose_error import align_rotations
from cryohet.pose import LocalSchedule, local_search
from cryohet.reconstruction.from_particles import half_set_labels
from cryohet.reconstruction.half_maps import HalfSetReconstructor
from cryohet.representations.voxel import VoxelVolume

BATCH = 128


def _batches(n: int):
    for a in range(0, n, BATCH):
        yield np.arange(a, min(n, a + BATCH))


def _observe(ds: ParticleDataset, band: FourierBand, rows: np.ndarray):
    b = ds.get_batch(rows)
    return band.observed(b.images), band.filters(b.ctf_params, None), b


def _scaled(maps: list[torch.Tensor], groups: np.ndarray, ds, band, rot, sh) -> list[VoxelVolume]:
    """The maps scaled to the images by least squares at the true poses (first 1 024 images)."""
    from cryohet.imaging.shifts import phase_ramp

    src = [VoxelVolume(m, band.apix) for m in maps]
    num = den = 0.0
    for rows in _batches(min(len(ds), 1024)):
        y, ctf, _ = _observe(ds, band, rows)
        for g in np.unique(groups[rows]):
            sel = rows[groups[rows] == g]
            i = torch.as_tensor(np.searchsorted(rows, sel))
            model = src[g].slices(rot[sel], band) * ctf[i] * phase_ramp(band.kx_per_A, band.ky_per_A, sh[sel])
            num += float((y[i].conj() * model).real.sum())
            den += float((model.abs() ** 2).sum())
    return [VoxelVolume(m * (num / den), band.apix) for m in maps]


def _backprojection(ds, rot, sh, box: int, apix: float, halves: np.ndarray, subset: np.ndarray | None = None):
    rec = HalfSetReconstructor(box, apix)
    for rows in _batches(len(ds)):
        if subset is not None:
            rows = rows[subset[rows]]
            if not len(rows):
                continue
        b = ds.get_batch(rows)
        rec.add(b.images, rot[rows], sh[rows], b.ctf_params, halves[rows])
    return rec.finalize("fsc")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="simulated dataset folder (particles.star, gt/)")
    ap.add_argument("--reference", nargs="+", default=["states", "consensus-halves"],
                    choices=["states", "consensus-halves", "consensus", "classes-halves"])  # fmt: skip
    ap.add_argument("--classes", type=int, default=4, help="classes-halves: this many classes of adjacent states")
    ap.add_argument("--start", default="truth", help="truth, or a run's poses.npz")
    ap.add_argument("--step", type=float, default=2.0, help="first rotation step of the local search (deg)")
    ap.add_argument("--radius-px", type=float, default=None,
                    help="score on the band |k| <= this many Fourier px (default: the full disc)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    meta = ParticleSource(path=args.data / "particles.star").load()
    ds = ParticleDataset(meta, normalize=True, seed=0)
    box, apix = int(ds.box), float(np.median(meta.apix))
    band = FourierBand.disc(box, apix)
    if args.radius_px is not None:
        band = band.lowpass(min(1.0, args.radius_px / (box / 2)))
    lik = WeightedL2.white_noise(band)
    rot_true = torch.as_tensor(np.asarray(meta.rotations), dtype=torch.float32)
    sh_true = torch.as_tensor(np.array(meta.shifts_A), dtype=torch.float32)
    labels = np.load(args.data / "gt" / "labels.npy")
    if args.start == "truth":
        rot0, sh0 = rot_true.clone(), sh_true.clone()
    else:
        run = np.load(args.start)
        a = align_rotations(run["rotations"], rot_true.numpy(), 400, True)
        rot0 = torch.as_tensor(a.aligned, dtype=torch.float32)
        sh0 = torch.as_tensor(run["shifts_A"], dtype=torch.float32)
        sh0 = sh0 - (sh0 - sh_true).mean(0)  # one global offset
    halves = half_set_labels(ds, 0)

    shown = "full disc" if args.radius_px is None else f"|k| <= {args.radius_px:g} px"
    print(f"| reference | start | median deg | <= 3 deg | <= 10 deg | s per pass |  ({args.data}, {len(ds)}, {shown})")
    print("|---|---|---|---|---|---|")
    for ref in args.reference:
        t0 = time.perf_counter()
        if ref == "states":
            states = sorted(np.unique(labels))
            maps = [torch.as_tensor(np.array(read_volume(args.data / "gt" / f"state_{s:03d}.mrc")[0])) for s in states]
            groups = np.searchsorted(states, labels)
        elif ref == "classes-halves":  # classes of adjacent true states, each half against the other's
            states = sorted(np.unique(labels))
            classes = np.searchsorted(states, labels) * args.classes // len(states)
            maps = []
            for c in range(args.classes):
                res = _backprojection(ds, rot_true, sh_true, box, apix, halves, classes == c)
                maps += [res.half2, res.half1]
            groups = 2 * classes + np.asarray(halves, dtype=np.int64)
        else:
            res = _backprojection(ds, rot_true, sh_true, box, apix, halves)
            if ref == "consensus":
                maps, groups = [res.full], np.zeros(len(ds), dtype=np.int64)
            else:  # each half against the other half's map
                maps, groups = [res.half2, res.half1], np.asarray(halves, dtype=np.int64)
        sources = _scaled([m.float() for m in maps], groups, ds, band, rot_true, sh_true)
        rot = rot0.clone()
        for rows in _batches(len(ds)):
            y, ctf, _ = _observe(ds, band, rows)
            g = torch.as_tensor(groups[rows])
            out = local_search(y, ctf, g, sources, lik, rot0[rows], sh0[rows], LocalSchedule(args.step, args.step / 4))
            rot[rows] = out.rotations
        err = rotation_angle_deg(rot.numpy(), rot_true.numpy())
        print(f"| {ref} | {Path(args.start).name} | {np.median(err):.2f} | {(err <= 3).mean():.2f} | "
              f"{(err <= 10).mean():.2f} | {time.perf_counter() - t0:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
