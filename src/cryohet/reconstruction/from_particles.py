"""Homogeneous reconstruction of a particle dataset (``cryohet backproject``, consensus maps).

Streams a :class:`~cryohet.data.dataset.ParticleDataset` (flat memory) into two half-set
accumulators: RELION's ``rlnRandomSubset`` when the STAR file has it, otherwise a
seeded random half split. The Wiener term comes from the half-map FSC
(:mod:`.half_maps`). Maps are in the dataset's image units and sampling.

Before any image is read, the memory budget (:mod:`.budget`: two half-space grids of
``2D x 2D x (D+1) x 3`` float32, ~96 bytes per output voxel, plus finalisation) is logged
and checked against the available memory; a run that would not fit is refused in one line
that suggests a ``-D`` that fits.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..console import get_logger, progress
from ..data.dataset import ParticleDataset
from ..errors import InputError
from ..training.distributed import shard
from .budget import check_budget
from .half_maps import HalfMapResult, HalfSetReconstructor

__all__ = ["half_set_labels", "reconstruct_particles", "dataset_pixel_size"]

log = get_logger("reconstruction")


def dataset_pixel_size(dataset: ParticleDataset) -> float:
    """The single Å/px of a reconstruction from the dataset's (possibly downsampled) images.

    Every reconstruction (backprojection, the baselines, CryoSPIRE) calls it first, so it
    also refuses an odd working box (one line): cryohet's maps, Fourier bands and the
    CryoBench FSC assume an even box, as RELION and cryoDRGN do.
    """
    if dataset.box % 2:
        src = dataset.meta.source or "particles"
        if dataset.box == dataset.raw_box:
            raise InputError(
                f"{src}: the images are {dataset.box}x{dataset.box} pixels, an odd box; cryohet reconstructs "
                f"on even boxes: pass -D {dataset.box - 1} (-D/--box, a Fourier crop) or re-extract at an even box"
            )
        raise InputError(f"{src}: box {dataset.box} is odd; choose an even -D/--box (e.g. -D {dataset.box - 1})")
    return dataset.meta.pixel_size * dataset.raw_box / dataset.box


def half_set_labels(dataset: ParticleDataset, seed: int = 0) -> np.ndarray:
    """0/1 per particle: ``rlnRandomSubset - 1`` when present and valid, else a random half split."""
    table = dataset.meta.table
    if table is not None and "rlnRandomSubset" in table.columns:
        subsets = np.asarray(table["rlnRandomSubset"], dtype=np.int64) - 1
        if set(np.unique(subsets)) == {0, 1}:
            return subsets
    labels = np.zeros(len(dataset), dtype=np.int64)
    rng = np.random.default_rng(seed)
    labels[rng.permutation(len(dataset))[: len(dataset) // 2]] = 1
    return labels


def reconstruct_particles(
    dataset: ParticleDataset,
    rows: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    seed: int = 0,
    show_progress: bool = True,
) -> HalfMapResult:
    """Half maps, full map and half-map FSC of ``dataset`` (or of its ``rows``).

    ``weights`` (one per row, in [0, 1]) scale each image's contribution (soft class
    assignments); zero-weight images are skipped. In a distributed run every rank
    backprojects its share of the images and the accumulations are summed, so every rank
    gets the same maps.
    """
    if not dataset.has_poses:
        raise InputError(f"{dataset.meta.source}: backprojection needs poses (a refined .star/.cs or --poses)")
    apix = dataset_pixel_size(dataset)
    use = np.arange(len(dataset)) if rows is None else np.asarray(rows, dtype=np.int64)
    w_all = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w_all is not None:
        keep = w_all > 0
        use, w_all = use[keep], w_all[keep]
    if len(use) < 2:
        raise InputError(f"{dataset.meta.source}: need at least 2 particles to reconstruct, got {len(use)}")
    src = dataset.meta.source or "particles"
    budget = check_budget(dataset.box, batch_size=batch_size, source=str(src), device=device)
    log.info("backprojection memory budget at box %d: %s", dataset.box, budget.describe())
    halves = half_set_labels(dataset, seed)
    rec = HalfSetReconstructor(dataset.box, apix, device=device)
    order = np.argsort(use, kind="stable")  # storage order reads fastest
    order = order[shard(len(order))]  # this rank's share (all of them with one process)
    chunks = range(0, len(use), batch_size)
    it = progress(chunks, description=f"backprojection (box {dataset.box})", unit="batch") if show_progress else chunks
    t0 = time.perf_counter()
    for start in it:
        pick = order[start : start + batch_size]
        batch = dataset.get_batch(use[pick])
        images, ctf = batch.images, batch.ctf_params
        if w_all is not None:
            if ctf is None:
                raise InputError(f"{dataset.meta.source}: weighted reconstruction needs CTF parameters")
            # Numerator sum w C Y and normaliser sum w C^2: scale images and the CTF's
            # scale factor (column 8) by sqrt(w).
            sq = torch.as_tensor(np.sqrt(w_all[pick]), dtype=images.dtype)
            images = images * sq[:, None, None]
            ctf = ctf.clone()
            ctf[:, 8] = ctf[:, 8] * sq
        rec.add(images, batch.rotations, batch.shifts_A, ctf, halves[use[pick]])
    t1 = time.perf_counter()
    log.info("backprojected %d images in %.2f s (%.4f s per image)", len(order), t1 - t0, (t1 - t0) / len(order))
    result = rec.all_reduce().finalize("fsc")
    log.info("half maps, full map and FSC finalised in %.2f s", time.perf_counter() - t1)
    return result
