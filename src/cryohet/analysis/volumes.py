"""Volumes at given latents for any method's run (``cryohet volumes``).

One MRC per latent row, ``vol_000.mrc``, ``vol_001.mrc`` ... in row order, written with
the voxel size they were decoded at (the run's native box and pixel size unless
``box``/``apix`` are given). Without latents, one map, ``vol_000.mrc``, at the mean of the
run's latents (for a homogeneous run: its single map). With ``parts`` each row also gets
one map per part, ``vol_000_part_00.mrc`` ... (:meth:`TrainedModel.part_volumes`; methods
without parts are an error), and ``parts.cxc`` is a ChimeraX script that opens them with one
colour per part. With ``flip`` every map (parts too) is written as its mirror image
(:func:`cryohet.geometry.hand.mirror_volume`): the other hand of the reconstruction, the one
that goes with the poses ``cryohet export --flip`` writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, file_error
from ..geometry.hand import mirror_volume
from ..io.mrc import write_volume
from ..io.outputs import check_output, run_dir_inputs, staged_folder

__all__ = ["read_latents_file", "write_volumes", "chimerax_parts_script", "PART_COLOURS"]

#: Distinct colours (Tableau 10, then a few more) for parts, cycled when there are more parts.
PART_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
)


def read_latents_file(path: str | Path) -> np.ndarray:
    """Latents ``(n, zdim)`` float32 from ``.npy`` (``(zdim,)`` or ``(n, zdim)``) or a text file
    of numbers (one row per line)."""
    p = Path(path)
    if not p.exists():
        raise file_error(p, "latent file not found")
    try:
        if p.suffix.lower() == ".npy":
            z = np.load(p, allow_pickle=False)
        else:
            z = np.loadtxt(p, dtype=np.float64, ndmin=2, comments="#")
    except Exception as err:
        raise file_error(
            p,
            f"not a readable latent file ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})",
        ) from None
    z = np.asarray(z)
    if z.dtype.kind not in "fiu":
        raise file_error(p, f"latents must be numbers, got {z.dtype}")
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or z.shape[0] == 0:
        raise file_error(p, f"latents must be (zdim,) or (n, zdim), got shape {z.shape}")
    if not np.isfinite(z).all():
        raise file_error(p, "latents hold NaN/Inf")
    return z.astype(np.float32)


def chimerax_parts_script(files: list[list[Path]], folder: Path) -> str:
    """ChimeraX commands opening ``files[row][part]`` (paths relative to ``folder``) with one colour per part."""
    lines = ["# cryohet volumes --parts: one colour per part (open with: chimerax parts.cxc)"]
    model = 0
    for row, parts in enumerate(files):
        for k, f in enumerate(parts):
            model += 1
            colour = PART_COLOURS[k % len(PART_COLOURS)]
            lines.append(f"open {f.relative_to(folder).as_posix()}")
            lines.append(f"volume #{model} color {colour} style surface")
        if len(files) > 1:
            lines.append(f"# row {row}: models #{model - len(parts) + 1}-{model}")
    lines.append("view")
    return "\n".join(lines) + "\n"


def write_volumes(
    run_dir: str | Path,
    z: np.ndarray | None,
    out_dir: str | Path,
    box: int | None = None,
    apix: float | None = None,
    parts: bool = False,
    inputs: list[Path] | None = None,
    device: str = "cpu",
    allow_unfinished: bool = False,
    overwrite: bool = False,
    flip: bool = False,
    epoch: int | None = None,
) -> list[Path]:
    """Decode ``z (n, zdim)`` (or ``(zdim,)``; None: the mean of the run's latents) with the
    run's method and write the maps (mirrored with ``flip``, see the module doc).

    ``inputs`` are files that must not be overwritten (the latent file); the run directory
    is protected too. The folder is written fresh (:func:`cryohet.io.outputs.staged_folder`):
    an existing non-empty ``out_dir`` is refused unless ``overwrite``, and then replaced as
    a whole. Returns the written paths (volumes, then parts and the script). ``epoch``:
    decode with the run as it was after that epoch (its snapshot).
    """
    from ..methods.base import load_run

    run = Path(run_dir)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise file_error(out, "exists and is not a folder; --out names the folder the maps are written to")
    protected = [*(inputs or []), *run_dir_inputs(run)]
    check_output(out, protected, overwrite=overwrite, folder=True)  # before decoding anything
    model = load_run(run, device=device, allow_unfinished=allow_unfinished, epoch=epoch)
    if z is None:
        z = model.latents.mean(axis=0, dtype=np.float64)
    zs = np.atleast_2d(np.asarray(z, dtype=np.float32))
    if zs.shape[1] != model.zdim:
        raise InputError(f"latents have {zs.shape[1]} values per row but the {model.method} run has zdim {model.zdim}")
    if box is not None and box < 2:
        raise InputError(f"--box must be at least 2, got {box}")
    if apix is not None and not apix > 0:
        raise InputError(f"--apix must be positive, got {apix}")
    b = model.box if box is None else int(box)
    a = model.apix if apix is None else float(apix)

    def hand(vol: np.ndarray) -> np.ndarray:
        return mirror_volume(vol) if flip else vol

    part_maps: list[dict[str, np.ndarray]] = []
    if parts:
        for zz in zs:
            pv = model.part_volumes(zz, b, a)
            if not pv:
                raise InputError(f"{run}: the {model.method} method has no parts (--parts needs a part-aware method)")
            part_maps.append({name: hand(np.asarray(v, np.float32)) for name, v in pv.items()})
    written = []
    with staged_folder(out, overwrite=overwrite, inputs=protected) as work:
        for i, vol in enumerate(model.volumes(zs, b, a)):
            written.append(write_volume(work / f"vol_{i:03d}.mrc", hand(np.asarray(vol, dtype=np.float32)), a))
        if parts:
            files: list[list[Path]] = []
            for i, pv in enumerate(part_maps):
                row = []
                for k, (_, vol) in enumerate(sorted(pv.items())):
                    row.append(write_volume(work / f"vol_{i:03d}_part_{k:02d}.mrc", np.asarray(vol, np.float32), a))
                files.append(row)
                written.extend(row)
            script = work / "parts.cxc"
            script.write_text(chimerax_parts_script(files, work))
            written.append(script)
    return [out / p.relative_to(work) for p in written]
