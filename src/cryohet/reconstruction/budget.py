"""Memory budget of a backprojection, stated up front and checked against free memory.

A half-set reconstruction at box ``D`` (pixels) with Fourier oversampling ``o`` keeps two
half-space accumulation grids of ``P x P x (P//2 + 1) x 3`` float32 (``P = o D``; Re N,
Im N, W), i.e. ``2 * 12 * o^3 D^3 / 2`` bytes: 96 bytes per output voxel at ``o = 2``
(1.6 GB at D = 256, 12.9 GB at D = 512). Finalisation adds one complex ``(D, P, P//2 + 1)``
array and up to four ``D^3`` float32 maps; streaming adds
a batch of images and a bounded chunk of slice samples
(:data:`~cryohet.reconstruction.backprojection.POINTS_PER_CHUNK`). The estimate leaves out
the interpreter and libraries (~0.4 GB resident).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import InputError

__all__ = ["MemoryBudget", "available_memory_bytes", "check_budget", "reconstruction_budget"]

GB = 1e9
_CHUNK_BYTES = 160 * (1 << 20)  # streamed slice samples (~150 B each) plus FFT buffers
_SLAB_BYTES = 300 * (1 << 20)  # finalisation slabs (SLAB_ELEMENTS voxels, ~70 B each)


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes a reconstruction needs: its grids and the rest (finalisation, batches)."""

    box: int
    oversample: int
    grids_bytes: int
    other_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.grids_bytes + self.other_bytes

    def describe(self) -> str:
        p = self.oversample * self.box
        return (
            f"about {self.total_bytes / GB:.1f} GB (two {p}x{p}x{p // 2 + 1} half-space grids: "
            f"{self.grids_bytes / GB:.1f} GB)"
        )


def reconstruction_budget(box: int, oversample: int = 2, n_grids: int = 2, batch_size: int = 256) -> MemoryBudget:
    """Estimated peak bytes of a reconstruction with ``n_grids`` accumulators at box ``box`` (px)."""
    p = int(oversample) * int(box)
    h = p // 2 + 1
    grids = n_grids * p * p * h * 3 * 4
    vol = box**3 * 4
    finalize = box * p * h * 8 + 4 * vol + _SLAB_BYTES
    stream = batch_size * box * box * 4 * 2 + _CHUNK_BYTES
    return MemoryBudget(int(box), int(oversample), int(grids), int(max(finalize, stream)))


def available_memory_bytes(device: str | None = None) -> int | None:
    """Memory the grids can take: free memory of a CUDA ``device``, else what the system
    can give without swapping (``MemAvailable`` of /proc/meminfo); None where unknown."""
    if device is not None and str(device).startswith("cuda"):
        import torch

        try:
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError, ValueError):
            return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _largest_fitting_box(available: int, oversample: int, n_grids: int, batch_size: int, box: int) -> int | None:
    for d in range(box - box % 16, 15, -16):
        if reconstruction_budget(d, oversample, n_grids, batch_size).total_bytes <= available:
            return d
    return None


def check_budget(
    box: int,
    oversample: int = 2,
    n_grids: int = 2,
    batch_size: int = 256,
    source: str = "particles",
    available: int | None = None,
    device: str | None = None,
) -> MemoryBudget:
    """The budget of a reconstruction; raises :class:`InputError` (one line, suggesting ``-D``)
    when it exceeds the available memory (``available`` bytes, default
    :func:`available_memory_bytes` of ``device``)."""
    budget = reconstruction_budget(box, oversample, n_grids, batch_size)
    avail = available_memory_bytes(None if device is None else str(device)) if available is None else available
    if avail is not None and budget.total_bytes > avail:
        fit = _largest_fitting_box(avail, oversample, n_grids, batch_size, box)
        hint = (
            f"pass -D {fit} (Fourier-cropped images; needs "
            f"{reconstruction_budget(fit, oversample, n_grids, batch_size).total_bytes / GB:.1f} GB)"
            if fit
            else "free memory"
        )
        raise InputError(
            f"{source}: backprojection at box {box} needs {budget.describe()}, but only "
            f"{avail / GB:.1f} GB is available{f' on {device}' if str(device).startswith('cuda') else ''}: {hint} "
            "or run on a machine with more memory"
        )
    return budget
