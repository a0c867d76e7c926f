"""Write a Fourier-cropped copy of a particle set: ``DIR/particles.D.mrcs`` + ``.star``.

Images are streamed in chunks (memory does not grow with the number of particles):
each chunk is read from the memory-mapped input stacks, Fourier-cropped to ``D``
(:func:`cryohet.imaging.fft.fourier_downsample_images`) and written at its place in one
output stack. The STAR file (RELION 3.1 with optics) keeps poses, CTF and every other
column; the pixel size becomes ``apix * D0 / D``; shifts in Å are unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..console import get_logger, progress
from ..errors import InputError
from ..io.metadata import ParticleMetadata
from ..io.mrc import StackWriter
from ..io.particles import input_files
from ..io.paths import ensure_not_input
from ..io.star import write_star
from .dataset import ParticleDataset

__all__ = ["downsample_particles", "downsampled_paths"]

log = get_logger("data.downsample")


def downsampled_paths(out_dir: str | Path, box: int) -> tuple[Path, Path]:
    """``(out_dir/particles.{box}.mrcs, out_dir/particles.{box}.star)``."""
    d = Path(out_dir)
    return d / f"particles.{box}.mrcs", d / f"particles.{box}.star"


def downsample_particles(
    meta: ParticleMetadata, box: int, out_dir: str | Path, *, chunk: int = 1000
) -> tuple[Path, Path, ParticleMetadata]:
    """Fourier-crop every image of ``meta`` to ``box`` and write stack + STAR file.

    Returns ``(stack_path, star_path, new_meta)``; ``new_meta`` describes the new files
    (``original_index`` still points into the original source). Refuses to overwrite
    any input file.
    """
    if chunk < 1:
        raise InputError(f"chunk must be >= 1, got {chunk}")
    ds = ParticleDataset(meta, box=box, normalize=False, invert=False)
    stack_path, star_path = downsampled_paths(out_dir, box)
    inputs = input_files(meta)
    for p in (stack_path, star_path):
        ensure_not_input(p, inputs)
    n = len(ds)
    starts = range(0, n, chunk)
    with StackWriter(stack_path, n, box, float(np.median(ds.apix))) as writer:
        for s in progress(starts, total=len(starts), description=f"downsample to {box}", unit="chunk"):
            rows = np.arange(s, min(s + chunk, n))
            writer.write(s, ds.process(ds.read_raw(rows)).numpy())
    new_meta = replace(
        meta,
        image_files=[stack_path.resolve()],
        file_index=np.zeros(n, dtype=np.int64),
        image_index=np.arange(n, dtype=np.int64),
        box=int(box),
        apix=ds.apix.copy(),
        extras={**meta.extras, "inputs": [stack_path.resolve()]},
    )
    write_star(star_path, new_meta)
    log.info(
        "wrote %s and %s (%d particles, box %d, %.4g Å/px)", stack_path, star_path, n, box, float(np.median(ds.apix))
    )
    return stack_path, star_path, new_meta
