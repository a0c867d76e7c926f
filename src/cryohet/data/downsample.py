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
from ..io.outputs import check_output, ensure_not_input, staged_folder
from ..io.particles import input_files
from ..io.star import write_star
from .dataset import ParticleDataset

__all__ = ["downsample_particles", "downsampled_paths"]

log = get_logger("data.downsample")


def downsampled_paths(out_dir: str | Path, box: int) -> tuple[Path, Path]:
    """``(out_dir/particles.{box}.mrcs, out_dir/particles.{box}.star)``."""
    d = Path(out_dir)
    return d / f"particles.{box}.mrcs", d / f"particles.{box}.star"


def downsample_particles(
    meta: ParticleMetadata, box: int, out_dir: str | Path, *, chunk: int = 1000, overwrite: bool = False
) -> tuple[Path, Path, ParticleMetadata]:
    """Fourier-crop every image of ``meta`` to ``box`` and write stack + STAR file.

    Returns ``(stack_path, star_path, new_meta)``; ``new_meta`` describes the new files
    (``original_index`` still points into the original source). The folder is written
    fresh (:func:`cryohet.io.outputs.staged_folder`): an existing non-empty ``out_dir`` is
    refused unless ``overwrite``, and then replaced as a whole; a folder holding an input
    file is always refused.
    """
    if chunk < 1:
        raise InputError(f"chunk must be >= 1, got {chunk}")
    ds = ParticleDataset(meta, box=box, normalize=False, invert=False)
    out = Path(out_dir)
    stack_path, star_path = downsampled_paths(out, box)
    inputs = input_files(meta)
    for p in (stack_path, star_path):
        ensure_not_input(p, inputs)  # the most direct message when the output files are inputs
    check_output(out, inputs, overwrite=overwrite, folder=True)
    n = len(ds)
    starts = range(0, n, chunk)
    apix = float(np.median(ds.apix))
    with staged_folder(out, overwrite=overwrite, inputs=inputs) as work:
        tmp_stack, tmp_star = downsampled_paths(work, box)
        with StackWriter(tmp_stack, n, box, apix) as writer:
            for s in progress(starts, total=len(starts), description=f"downsample to {box}", unit="chunk"):
                rows = np.arange(s, min(s + chunk, n))
                writer.write(s, ds.process(ds.read_raw(rows)).numpy())
        # the STAR file names the stack relative to its own folder, so it stays right after the move
        written = replace(
            meta,
            image_files=[tmp_stack.resolve()],
            file_index=np.zeros(n, dtype=np.int64),
            image_index=np.arange(n, dtype=np.int64),
            box=int(box),
            apix=ds.apix.copy(),
            extras={**meta.extras, "inputs": [tmp_stack.resolve()]},
        )
        write_star(tmp_star, written)
    new_meta = replace(
        written, image_files=[stack_path.resolve()], extras={**meta.extras, "inputs": [stack_path.resolve()]}
    )
    log.info("downsampled %d particles to box %d (%.4g Å/px)", n, box, apix)
    return stack_path, star_path, new_meta
