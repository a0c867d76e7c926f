"""Small synthetic particle sets (random images + consistent metadata) for tests and benchmarks.

The images are noise (with a per-image offset so that means differ); the metadata are
random but valid: rotations uniform on SO(3), origins in Å, RELION CTF values per
optics group. Nothing here is physics: use :mod:`cryohet.simulate` for that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geometry.rotations import random_rotations
from ..io.metadata import CTFParams, ParticleMetadata
from ..io.mrc import StackWriter
from ..io.star import write_star

__all__ = ["synthetic_metadata", "write_synthetic_particles"]


def synthetic_metadata(
    n: int,
    box: int,
    apix: float | list[float],
    files: list[Path],
    *,
    seed: int = 0,
    poses: bool = True,
    ctf: bool = True,
) -> ParticleMetadata:
    """Metadata for ``n`` particles spread in order over ``files`` (equal parts).

    ``apix`` may be a list: one optics group per value, assigned to whole stacks in turn
    (stack k belongs to group ``k % len(apix) + 1``).
    """
    rng = np.random.default_rng(seed)
    per = -(-n // len(files))
    file_index = np.arange(n) // per
    image_index = np.arange(n) - file_index * per
    px = np.atleast_1d(np.asarray(apix, dtype=np.float64))
    groups = file_index % len(px) + 1
    c = None
    if ctf:
        du = rng.uniform(8000, 25000, n)
        c = CTFParams(
            defocus_u_A=du,
            defocus_v_A=du - rng.uniform(0, 500, n),
            defocus_angle_deg=rng.uniform(-180, 180, n),
            voltage_kV=np.where(groups == 1, 300.0, 200.0),
            cs_mm=np.where(groups == 1, 2.7, 2.0),
            amp_contrast=np.full(n, 0.1),
            phase_shift_deg=np.zeros(n),
        )
    return ParticleMetadata(
        image_files=[Path(f).resolve() for f in files],
        file_index=file_index,
        image_index=image_index,
        box=box,
        apix=px[groups - 1],
        ctf=c,
        rotations=random_rotations(n, rng) if poses else None,
        shifts_A=rng.uniform(-5, 5, (n, 2)) if poses else None,
        optics_group=groups,
        source_format="synthetic",
    )


def write_synthetic_particles(
    out_dir: str | Path,
    n: int = 20,
    box: int = 16,
    apix: float | list[float] = 2.0,
    *,
    n_stacks: int = 1,
    seed: int = 0,
    poses: bool = True,
    ctf: bool = True,
    chunk: int = 4096,
) -> tuple[Path, ParticleMetadata]:
    """Write ``n_stacks`` stacks ``stack_K.mrcs`` and ``particles.star`` in ``out_dir``.

    Returns the STAR path and the metadata written (images are standard normal noise
    plus a per-image offset, float32). Streams in chunks, so it also makes huge stacks.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"stack_{k}.mrcs" for k in range(n_stacks)]
    meta = synthetic_metadata(n, box, apix, files, seed=seed, poses=poses, ctf=ctf)
    rng = np.random.default_rng(seed + 1)
    for k, f in enumerate(files):
        count = int((meta.file_index == k).sum())
        px = float(meta.apix[meta.file_index == k][0])
        with StackWriter(f, count, box, px) as w:
            for s in range(0, count, chunk):
                m = min(chunk, count - s)
                imgs = rng.standard_normal((m, box, box), dtype=np.float32)
                imgs += rng.uniform(-1, 1, (m, 1, 1)).astype(np.float32)
                w.write(s, imgs)
    star = write_star(out / "particles.star", meta)
    meta.source = star
    return star, meta
