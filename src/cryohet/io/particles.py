"""One entry point for particle sets: :func:`load_particles` (its config,
:class:`~cryohet.io.source.ParticleSource`, lives in :mod:`cryohet.io.source`).

Dispatches on the extension of ``path``:

* ``.star`` -> :func:`cryohet.io.star.read_star`;
* ``.cs`` -> :func:`cryohet.io.cryosparc.read_cs` (optional ``passthrough``);
* ``.mrcs`` / ``.mrc`` -> every image of the stack; ``.txt`` -> stacks listed one per
  line (relative to the list's folder);

then applies cryoDRGN pickles if given (``poses``/``ctf`` replace what the file says;
``ind`` keeps a subset, remembering ``original_index``) and checks the stacks: each
must exist, hold every referenced image, have square 2D images of the metadata's box
and an intact data block. Pixel sizes from metadata win over MRC headers (with a
warning when they disagree). Every problem is one :class:`~cryohet.errors.InputError`
line naming the file.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..console import get_logger
from ..errors import InputError, file_error
from .cryodrgn import (
    check_ctf_pkl,
    poses_from_cryodrgn,
    read_ctf_pkl,
    read_ind_pkl,
    read_poses_pkl,
    write_ctf_pkl,
    write_poses_pkl,
)
from .cryosparc import read_cs
from .metadata import ParticleMetadata, check_pixel_size
from .mrc import open_stack
from .outputs import check_output, staged_files
from .paths import resolve_data_path
from .star import read_star, write_star

__all__ = [
    "StackReport",
    "load_particles",
    "read_stack_files",
    "check_stacks",
    "save_converted",
    "input_files",
    "PARTICLE_SUFFIXES",
]

log = get_logger("io.particles")

#: What to do about stacks that are missing or too short: fail, warn, or not look.
StackCheck = Literal["error", "warn", "skip"]
PARTICLE_SUFFIXES = (".star", ".cs", ".mrcs", ".mrc", ".txt")
_PX_TOL = 0.01  # relative pixel-size difference reported as a disagreement


@dataclass
class StackReport:
    """What :func:`check_stacks` found: stack files present/missing, images per stack."""

    found: list[Path]
    missing: list[Path]
    n_images: dict[Path, int]


# --------------------------------------------------------------------------- stacks
def _stack_list(path: Path, datadir: str | Path | None) -> list[Path]:
    if path.suffix.lower() != ".txt":
        return [Path(os.path.abspath(path))]
    if not path.exists():
        raise file_error(path, "file not found")
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    names = [ln for ln in lines if ln and not ln.startswith("#")]
    if not names:
        raise file_error(path, "lists no stack files")
    return [resolve_data_path(nm, path.resolve().parent, datadir, layout="star") for nm in names]


def read_stack_files(
    path: str | Path, *, datadir: str | Path | None = None, apix: float | None = None
) -> ParticleMetadata:
    """Every image of an ``.mrcs``/``.mrc`` stack, or of the stacks listed in a ``.txt``.

    Pixel size: ``apix`` if given, else the first stack's header (a warning when it is
    1 Å, a common placeholder; an error when it is 0). ``extras["apix_from_header"]``
    says which.
    """
    source = Path(path)
    if apix is not None:
        check_pixel_size(apix, source, "the given pixel size (apix)")
    files = _stack_list(source, datadir)
    counts, box, header_apix = [], 0, 0.0
    for f in files:
        data, info = open_stack(f)
        if box and data.shape[-1] != box:
            raise file_error(
                f, f"images are {data.shape[-1]}x{data.shape[-1]} but earlier stacks in {source} are {box}x{box}"
            )
        box = int(data.shape[-1])
        header_apix = header_apix or info.apix
        counts.append(int(data.shape[0]))
    file_index = np.repeat(np.arange(len(files)), counts)
    image_index = np.concatenate([np.arange(c) for c in counts])
    return ParticleMetadata(
        image_files=files,
        file_index=file_index,
        image_index=image_index,
        box=box,
        apix=float(apix) if apix is not None else float(header_apix),
        source=source,
        source_format="mrcs",
        extras={"inputs": [source, *files], "apix_from_header": apix is None},
    )


def _check_header_apix(meta: ParticleMetadata) -> None:
    """A pixel size taken from an MRC header: 0 is an error, 1 Å a warning."""
    px = float(meta.apix[0]) if len(meta) else 0.0
    first = meta.image_files[0] if meta.image_files else meta.source
    if px <= 0:
        raise file_error(first, "the MRC header has no pixel size; give the pixel size (apix, --apix) or a ctf.pkl")
    check_pixel_size(px, first, "pixel size (MRC header)")
    if abs(px - 1.0) < 1e-6:
        warnings.warn(
            f"{first}: pixel size 1 Å taken from the MRC header (often a placeholder); give apix if wrong", stacklevel=3
        )


def check_stacks(meta: ParticleMetadata, mode: StackCheck = "error") -> StackReport:
    """Check that stacks exist, hold every referenced image and match the box/pixel size.

    ``mode="warn"`` turns missing stack files into one warning (existing stacks are still
    checked); ``"skip"`` only reports which exist. Sets ``meta.box`` when it was unknown.
    Header pixel sizes that differ from the metadata are reported in one warning; the
    metadata's pixel size is kept.
    """
    src = meta.source
    found = [f for f in meta.image_files if f.is_file()]
    missing = [f for f in meta.image_files if not f.is_file()]
    report = StackReport(found=found, missing=missing, n_images={})
    if mode == "skip":
        return report
    if missing:
        more = f"; {len(missing)} of {len(meta.image_files)} stacks missing" if len(missing) > 1 else ""
        msg = f"{missing[0]}: stack file not found (named in {src}{more}; give --datadir, the folder that holds them)"
        if mode == "error":
            raise InputError(msg)
        warnings.warn(msg, stacklevel=3)
    nfiles = len(meta.image_files)
    max_idx = np.full(nfiles, -1, dtype=np.int64)
    np.maximum.at(max_idx, meta.file_index, meta.image_index)
    apix_hi = np.zeros(nfiles)
    np.maximum.at(apix_hi, meta.file_index, meta.apix)
    apix_lo = np.full(nfiles, np.inf)
    np.minimum.at(apix_lo, meta.file_index, meta.apix)
    header_warnings: list[str] = []
    px_mismatch: list[tuple[Path, float, float]] = []
    for k, f in enumerate(meta.image_files):
        if not f.is_file() or max_idx[k] < 0:
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data, info = open_stack(f)
        header_warnings += [str(w.message) for w in caught]
        n, d = int(data.shape[0]), int(data.shape[-1])
        report.n_images[f] = n
        if max_idx[k] >= n:
            raise file_error(
                f, f"image {max_idx[k] + 1} (1-based) requested by {src}, but the stack holds only {n} images"
            )
        if meta.box <= 0:
            meta.box = d
        elif d != meta.box:
            raise file_error(f, f"images are {d}x{d} pixels but {src} says the box is {meta.box}")
        # a stack may mix optics groups: the header must match one of its pixel sizes
        if info.apix > 0 and min(abs(info.apix - apix_lo[k]), abs(info.apix - apix_hi[k])) > _PX_TOL * apix_hi[k]:
            px_mismatch.append((f, info.apix, apix_hi[k]))
    if header_warnings:
        extra = f" (and {len(header_warnings) - 1} more stacks)" if len(header_warnings) > 1 else ""
        warnings.warn(header_warnings[0] + extra, stacklevel=3)
    if px_mismatch and not meta.extras.get("apix_from_header", False):
        f, hdr, md = px_mismatch[0]
        extra = f" (and {len(px_mismatch) - 1} more stacks)" if len(px_mismatch) > 1 else ""
        warnings.warn(
            f"{f}: header pixel size {hdr:g} Å differs from {md:g} Å in {src}; using {md:g} Å{extra}", stacklevel=3
        )
    return report


# --------------------------------------------------------------------------- loading
def _read_source(path: Path, datadir, passthrough, apix) -> ParticleMetadata:
    suffix = path.suffix.lower()
    if passthrough is not None and suffix != ".cs":
        raise file_error(passthrough, "a passthrough file only goes with a cryoSPARC .cs particle file")
    if suffix == ".star":
        return read_star(path, datadir=datadir, apix=apix)
    if suffix == ".cs":
        return read_cs(path, passthrough=passthrough, datadir=datadir, apix=apix)
    if suffix in (".mrcs", ".mrc", ".txt"):
        return read_stack_files(path, datadir=datadir, apix=apix)
    if path.is_dir():
        raise file_error(path, "is a directory; expected a .star, .cs, .mrcs or .txt particle file")
    raise file_error(path, f"unsupported particle file type '{path.suffix}' (expected .star, .cs, .mrcs, .mrc or .txt)")


def _count_error(pkl: Path, what: str, got: int, meta: ParticleMetadata) -> InputError:
    return file_error(pkl, f"has {got} {what} but {meta.source} has {len(meta)} particles")


def _apply_ctf(meta: ParticleMetadata, ctf_path: Path, apix_given: bool) -> None:
    ctf, box, apix = read_ctf_pkl(ctf_path, check=False)
    if len(ctf) != len(meta):
        raise _count_error(ctf_path, "CTF rows", len(ctf), meta)
    check_ctf_pkl(ctf_path, ctf, apix)
    # cryoDRGN: the pixel size in column 1 belongs to the box in column 0.
    eff_apix = apix * box / meta.box if meta.box > 0 else apix
    if meta.source_format == "mrcs" and not apix_given:
        meta.apix = np.asarray(eff_apix, dtype=np.float64).copy()
        meta.extras["apix_from_header"] = False
    elif np.any(np.abs(eff_apix - meta.apix) > _PX_TOL * meta.apix):
        warnings.warn(
            f"{ctf_path}: pixel size {float(np.median(eff_apix)):g} Å differs from {float(np.median(meta.apix)):g} Å "
            f"of {meta.source}; using the latter",
            stacklevel=3,
        )
    meta.ctf = ctf


def _apply_poses(meta: ParticleMetadata, poses_path: Path) -> None:
    rot, trans = read_poses_pkl(poses_path)
    if len(rot) != len(meta):
        raise _count_error(poses_path, "poses", len(rot), meta)
    if trans is not None and meta.box <= 0:
        raise file_error(
            poses_path, "the box size is unknown (stacks not found), so fractional shifts cannot be converted"
        )
    A, shifts = poses_from_cryodrgn(rot, trans, meta.box, meta.apix)
    meta.rotations = A
    meta.shifts_A = shifts if shifts is not None else np.zeros((len(meta), 2))


def _indices(ind: str | Path | np.ndarray | list[int], n: int, source: Path | None) -> np.ndarray:
    if isinstance(ind, (str, Path)):
        ix = read_ind_pkl(ind)
        where: str | Path = ind
    else:
        ix = np.asarray(ind)
        if ix.ndim != 1 or (ix.size and ix.dtype.kind not in "iu"):
            raise InputError(f"particle indices must be a 1D integer array, got shape {ix.shape} ({ix.dtype})")
        ix = ix.astype(np.int64)
        where = "ind"
    if ix.size == 0:
        raise file_error(where, "selects no particles")
    if ix.min() < 0 or ix.max() >= n:
        raise file_error(
            where,
            f"index {int(ix.max() if ix.max() >= n else ix.min())} is out of range for the {n} particles of {source}",
        )
    return ix


_warned_optics: set[str] = set()


def _warn_unused_optics(meta: ParticleMetadata) -> None:
    """One warning line per file (per process) listing the optics refinements cryohet does
    not apply (:mod:`cryohet.io.aberrations`); ``cryohet info`` lists them too."""
    unused = meta.extras.get("unused_optics") or []
    key = str(meta.source)
    if unused and key not in _warned_optics:
        _warned_optics.add(key)
        log.warning("%s: not used by cryohet's CTF (matters near atomic resolution): %s", meta.source,
                    "; ".join(unused))  # fmt: skip


def load_particles(
    path: str | Path,
    *,
    poses: str | Path | None = None,
    ctf: str | Path | None = None,
    datadir: str | Path | None = None,
    ind: str | Path | np.ndarray | list[int] | None = None,
    passthrough: str | Path | None = None,
    apix: float | None = None,
    stack_check: StackCheck = "error",
) -> ParticleMetadata:
    """Read a particle set (STAR, cryoSPARC, MRCS or a .txt list of stacks) into
    :class:`~cryohet.io.metadata.ParticleMetadata` in cryohet's convention.

    Args:
        path: particle file.
        poses: cryoDRGN ``poses.pkl`` (replaces the file's poses; same particle count).
        ctf: cryoDRGN ``ctf.pkl`` (replaces the file's CTF; same particle count).
        datadir: folder holding the stacks when the paths in the file do not resolve.
        ind: 0-based indices (``ind.pkl`` path or array) into the full set to keep.
        passthrough: cryoSPARC passthrough ``.cs`` merged on ``uid``.
        apix: pixel size in Å/px, overriding (STAR/MRCS) or completing (.cs) the file's.
        stack_check: ``"error"`` (default) fails on missing stacks; ``"warn"`` warns;
            ``"skip"`` does not open them (metadata only).
    """
    src = Path(path)
    meta = _read_source(src, datadir, passthrough, apix)
    inputs = list(meta.extras.get("inputs", [src]))
    if ctf is not None:
        _apply_ctf(meta, Path(ctf), apix is not None)
        inputs.append(Path(ctf))
    if meta.extras.get("apix_from_header"):
        _check_header_apix(meta)
    if poses is not None:
        _apply_poses(meta, Path(poses))
        inputs.append(Path(poses))
    if ind is not None:
        ix = _indices(ind, len(meta), src)
        if isinstance(ind, (str, Path)):
            inputs.append(Path(ind))
        meta = meta.subset(ix)
    meta.extras = {**meta.extras, "inputs": inputs}
    _warn_unused_optics(meta)
    report = check_stacks(meta, stack_check)
    meta.extras["stacks_found"] = report.found
    meta.extras["stacks_missing"] = report.missing
    return meta


def input_files(meta: ParticleMetadata) -> list[Path]:
    """Every file a particle set was read from (metadata files and stacks)."""
    return [*meta.extras.get("inputs", []), *([meta.source] if meta.source else []), *meta.image_files]


def save_converted(
    meta: ParticleMetadata,
    *,
    poses_out: str | Path | None = None,
    ctf_out: str | Path | None = None,
    star_out: str | Path | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write cryoDRGN ``poses.pkl`` / ``ctf.pkl`` and/or a RELION 3.1 STAR file.

    Refuses (InputError) to write over any file the set was read from (whatever
    ``overwrite`` says), over an existing file unless ``overwrite``, and to write poses or
    CTF the set does not have. The outputs appear together, or none of them (written to
    temporary names first). Returns the written paths.
    """
    outs = [Path(p) for p in (poses_out, ctf_out, star_out) if p is not None]
    if not outs:
        raise InputError("nothing to write: give poses_out, ctf_out or star_out")
    inputs = input_files(meta)
    for o in outs:
        check_output(o, inputs, overwrite=overwrite)
    if len({Path(os.path.abspath(o)) for o in outs}) != len(outs):
        raise InputError("two outputs have the same path")
    if poses_out is not None and meta.rotations is None:
        raise file_error(meta.source or "particles", f"has no poses to write to {poses_out}")
    if ctf_out is not None and meta.ctf is None:
        raise file_error(meta.source or "particles", f"has no CTF parameters to write to {ctf_out}")
    if (poses_out is not None or ctf_out is not None) and meta.box <= 0:
        raise file_error(meta.source or "particles", "box size unknown (no rlnImageSize/blob/shape and no stack found)")
    with staged_files(outs) as tmps:
        tmp = iter(tmps)
        if poses_out is not None:
            write_poses_pkl(next(tmp), meta.rotations, meta.shifts_A, meta.box, meta.apix)
        if ctf_out is not None:
            write_ctf_pkl(next(tmp), meta.ctf, meta.box, meta.apix)
        if star_out is not None:
            write_star(next(tmp), meta)
    return outs
