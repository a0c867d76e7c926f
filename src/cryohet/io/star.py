"""RELION STAR particle files (3.0, 3.1, 4, 5) through the ``starfile`` package.

Reading (:func:`read_star`) converts to the internal convention at the border:

* rotations: RELION ``A`` from ``rlnAngleRot/Tilt/Psi`` (degrees, ZYZ) via
  :func:`cryohet.geometry.rotations.euler_relion_to_matrix`; any angle equal to -999
  (RELION's "not estimated") or missing angle columns mean poses are unknown (None);
* shifts: RELION origin in Å, from ``rlnOriginXAngst/YAngst`` (3.1+) or
  ``rlnOriginX/Y`` in *pixels* (3.0) times the pixel size;
* pixel size (Å/px) per particle, first found of: the ``apix`` argument, per-particle
  or optics ``rlnImagePixelSize``, ``rlnDetectorPixelSize`` (µm) x 1e4 /
  ``rlnMagnification`` (3.0);
* CTF values from the particle table override the optics group's (cryoDRGN#241);
* ``rlnImageName`` = ``NNN@path``: NNN is 1-based and becomes the 0-based
  ``image_index``; the path is resolved relative to the star file's folder, then
  ``datadir/path``, then ``datadir/basename`` (see :mod:`cryohet.io.paths`).

The tables themselves are read and written by :mod:`cryohet.io.star_tables`.

Writing (:func:`write_star`) always produces RELION 3.1 format with a ``data_optics``
table (RELION rejects particle files without it): the original optics rows are kept
(with image size and pixel size updated) or one row per optics group is built. With
``source_columns`` a RELION 3.1+ source is written as it was (its optics table and every
particle column, values exactly as read) with only the poses replaced (``cryohet export``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..console import get_logger
from ..errors import file_error
from ..geometry.rotations import euler_relion_to_matrix, matrix_to_euler_relion
from .aberrations import check_not_premultiplied, unused_star_corrections
from .metadata import CTFParams, ParticleMetadata, check_pixel_size
from .mrc import read_mrc_header
from .outputs import atomic_write
from .paths import relative_to_output, resolve_data_path
from .star_tables import STAR_FLOAT_FORMAT, parse_image_names, read_star_tables, write_loop

__all__ = ["read_star", "write_star", "read_star_tables", "parse_image_names", "STAR_FLOAT_FORMAT"]

log = get_logger("io.star")

_ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
_ORIGIN_A = ("rlnOriginXAngst", "rlnOriginYAngst")
_ORIGIN_PX = ("rlnOriginX", "rlnOriginY")
#: CTFParams field -> STAR column (for messages).
_CTF_COLUMNS = {
    "defocus_u_A": "rlnDefocusU",
    "defocus_v_A": "rlnDefocusV",
    "defocus_angle_deg": "rlnDefocusAngle",
    "voltage_kV": "rlnVoltage",
    "cs_mm": "rlnSphericalAberration",
    "amp_contrast": "rlnAmplitudeContrast",
    "phase_shift_deg": "rlnPhaseShift",
    "bfactor_A2": "rlnCtfBfactor",
    "scale": "rlnCtfScalefactor",
}
_NOT_ESTIMATED = -999.0

# Columns write_star derives from the metadata (never copied from the source table).
_MANAGED = {
    "rlnImageName",
    "rlnOpticsGroup",
    *_ANGLES,
    *_ORIGIN_A,
    *_ORIGIN_PX,
    "rlnDefocusU",
    "rlnDefocusV",
    "rlnDefocusAngle",
    "rlnPhaseShift",
    "rlnCtfBfactor",
    "rlnCtfScalefactor",
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
    "rlnImagePixelSize",
    "rlnImageSize",
    "rlnImageDimensionality",
    "rlnMagnification",
    "rlnDetectorPixelSize",
}


# --------------------------------------------------------------------------- reading
def _group_lookup(parts: pd.DataFrame, optics: pd.DataFrame | None, source: Path) -> np.ndarray:
    """Optics-group number of each particle (1 when there is no optics table)."""
    n = len(parts)
    if "rlnOpticsGroup" in parts.columns:
        g = pd.to_numeric(parts["rlnOpticsGroup"], errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(g).all():
            raise file_error(source, "rlnOpticsGroup has non-numeric values")
        groups = g.astype(np.int64)
    elif optics is not None and len(optics) > 1:
        raise file_error(source, "the particle table has no rlnOpticsGroup column but data_optics has several groups")
    elif optics is not None:
        groups = np.full(n, int(optics["rlnOpticsGroup"].iloc[0]), dtype=np.int64)
    else:
        groups = np.ones(n, dtype=np.int64)
    if optics is not None:
        known = set(int(x) for x in optics["rlnOpticsGroup"])
        missing = sorted(set(np.unique(groups).tolist()) - known)
        if missing:
            raise file_error(source, f"particles refer to optics group(s) {missing[:5]} missing from data_optics")
    return groups


def _merged(
    name: str, parts: pd.DataFrame, optics: pd.DataFrame | None, groups: np.ndarray, source: Path
) -> np.ndarray | None:
    """Per-particle float values of ``name``: the particle column overrides optics."""
    vals = None
    if optics is not None and name in optics.columns:
        og = optics["rlnOpticsGroup"].to_numpy(dtype=np.int64)
        ov = pd.to_numeric(optics[name], errors="coerce").to_numpy(dtype=np.float64)
        order = np.argsort(og)
        pos = np.searchsorted(og[order], groups)
        vals = ov[order][pos]
    if name in parts.columns:
        pv = pd.to_numeric(parts[name], errors="coerce").to_numpy(dtype=np.float64)
        vals = pv if vals is None else np.where(np.isnan(pv), vals, pv)
    if vals is not None and np.isnan(vals).any():
        row = int(np.flatnonzero(np.isnan(vals))[0])
        raise file_error(source, f"{name} is missing or not a number for particle {row + 1}")
    return vals


def _pixel_size(parts, optics, groups, source: Path, apix: float | None) -> np.ndarray:
    n = len(parts)
    from_file = _merged("rlnImagePixelSize", parts, optics, groups, source)
    if from_file is None:
        det = _merged("rlnDetectorPixelSize", parts, optics, groups, source)
        mag = _merged("rlnMagnification", parts, optics, groups, source)
        if det is not None and mag is not None:
            if (mag <= 0).any():
                raise file_error(source, "rlnMagnification must be positive")
            from_file = det * 1e4 / mag  # detector pixel in µm -> Å at the specimen
    if apix is not None:
        check_pixel_size(apix, source, "the given pixel size (apix)")
        if from_file is not None and np.any(np.abs(from_file - apix) > 1e-3 * apix):
            warnings.warn(
                f"{source}: using the given pixel size {apix:g} Å instead of the file's "
                f"{', '.join(f'{v:g}' for v in np.unique(np.round(from_file, 5))[:4])} Å",
                stacklevel=3,
            )
        return np.full(n, float(apix))
    if from_file is None:
        raise file_error(
            source,
            "no pixel size (no rlnImagePixelSize, nor rlnDetectorPixelSize with rlnMagnification); "
            "give the pixel size (apix, --apix)",
        )
    check_pixel_size(from_file, source, "pixel size (rlnImagePixelSize)")
    return from_file


def _poses(parts: pd.DataFrame, source: Path) -> np.ndarray | None:
    present = [c for c in _ANGLES if c in parts.columns]
    if not present:
        return None
    if len(present) < 3:
        missing = [c for c in _ANGLES if c not in parts.columns]
        warnings.warn(f"{source}: no {', '.join(missing)} column; poses treated as unknown", stacklevel=3)
        return None
    ang = parts[list(_ANGLES)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    unknown = (ang == _NOT_ESTIMATED).any(axis=1) | ~np.isfinite(ang).all(axis=1)
    if unknown.all():
        return None
    if unknown.any():
        warnings.warn(
            f"{source}: {int(unknown.sum())} of {len(ang)} particles have angles -999 (not estimated); "
            "poses treated as unknown for all",
            stacklevel=3,
        )
        return None
    return euler_relion_to_matrix(ang)


def _shifts(parts: pd.DataFrame, apix: np.ndarray, has_poses: bool, source: Path) -> np.ndarray | None:
    for cols, scale in ((_ORIGIN_A, None), (_ORIGIN_PX, apix)):
        have = [c in parts.columns for c in cols]
        if all(have):
            xy = parts[list(cols)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
            if not np.isfinite(xy).all():
                raise file_error(source, f"{cols[0]}/{cols[1]} hold non-numeric values")
            return xy if scale is None else xy * scale[:, None]
        if any(have):
            raise file_error(source, f"has {cols[have.index(True)]} but no {cols[have.index(False)]}")
    return np.zeros((len(parts), 2)) if has_poses else None


def _ctf(parts, optics, groups, source: Path) -> CTFParams | None:
    if "rlnDefocusU" not in parts.columns and "rlnDefocusV" not in parts.columns:
        return None
    vals = {}
    for col in ("rlnDefocusU", "rlnDefocusV", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"):
        v = _merged(col, parts, optics, groups, source)
        if v is None:
            raise file_error(source, f"missing required column {col} (needed for the CTF)")
        vals[col] = v
    opt = {
        col: _merged(col, parts, optics, groups, source)
        for col in ("rlnDefocusAngle", "rlnPhaseShift", "rlnCtfBfactor", "rlnCtfScalefactor")
    }
    return CTFParams(
        defocus_u_A=vals["rlnDefocusU"],
        defocus_v_A=vals["rlnDefocusV"],
        defocus_angle_deg=0.0 if opt["rlnDefocusAngle"] is None else opt["rlnDefocusAngle"],
        voltage_kV=vals["rlnVoltage"],
        cs_mm=vals["rlnSphericalAberration"],
        amp_contrast=vals["rlnAmplitudeContrast"],
        phase_shift_deg=0.0 if opt["rlnPhaseShift"] is None else opt["rlnPhaseShift"],
        bfactor_A2=opt["rlnCtfBfactor"],
        scale=opt["rlnCtfScalefactor"],
    ).validate(source, _CTF_COLUMNS)


def _box(parts, optics, groups, files: list[Path], source: Path) -> int:
    sizes = _merged("rlnImageSize", parts, optics, groups, source)
    if sizes is not None:
        uniq = np.unique(sizes)
        if len(uniq) > 1:
            raise file_error(source, f"particles have different image sizes {uniq.astype(int).tolist()[:5]}")
        return int(uniq[0])
    for f in files:
        if f.is_file():
            info = read_mrc_header(f)
            return int(info.shape[-1])
    return 0  # unknown until a stack is found


def read_star(path: str | Path, *, datadir: str | Path | None = None, apix: float | None = None) -> ParticleMetadata:
    """Read a RELION particle STAR file (3.0 to 5) into :class:`ParticleMetadata`.

    Stack files are resolved but not opened (except to learn the box of a RELION 3.0
    file without ``rlnImageSize``); :func:`cryohet.io.particles.load_particles` checks
    them. ``apix`` (Å/px) replaces the file's pixel size (with a warning if they differ)
    and is required when the file has none.
    """
    source = Path(path)
    parts, optics = read_star_tables(source)
    if "rlnImageName" not in parts.columns:
        raise file_error(source, "missing required column rlnImageName")
    image_index, codes, names = parse_image_names(parts["rlnImageName"], source)
    star_dir = source.resolve().parent
    resolved = [resolve_data_path(nm, star_dir, datadir, layout="star") for nm in names]
    files, remap = _dedupe(resolved)
    file_index = remap[codes]
    check_not_premultiplied(parts, optics, source)
    groups = _group_lookup(parts, optics, source)
    px = _pixel_size(parts, optics, groups, source, apix)
    rotations = _poses(parts, source)
    shifts = _shifts(parts, px, rotations is not None, source)
    ctf = _ctf(parts, optics, groups, source)
    box = _box(parts, optics, groups, files, source)
    return ParticleMetadata(
        image_files=files,
        file_index=file_index,
        image_index=image_index,
        box=box,
        apix=px,
        ctf=ctf,
        rotations=rotations,
        shifts_A=shifts,
        optics_group=groups,
        optics=optics,
        table=parts,
        source=source,
        source_format="star",
        extras={
            "star_version": "3.0" if optics is None else "3.1+",
            "inputs": [source],
            "unused_optics": unused_star_corrections(parts, optics),
        },
    )


def _dedupe(paths: list[Path]) -> tuple[list[Path], np.ndarray]:
    """Unique paths in first-seen order and the map old position -> new position."""
    out: list[Path] = []
    pos: dict[Path, int] = {}
    remap = np.empty(len(paths), dtype=np.int64)
    for i, p in enumerate(paths):
        if p not in pos:
            pos[p] = len(out)
            out.append(p)
        remap[i] = pos[p]
    return out, remap


# --------------------------------------------------------------------------- writing
def _per_group(values: np.ndarray, groups: np.ndarray) -> tuple[dict[int, float], bool]:
    """Value of each optics group (its median) and whether any group is not constant."""
    order = np.argsort(groups, kind="stable")
    g_sorted, v_sorted = groups[order], values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g_sorted)) + 1]
    out: dict[int, float] = {}
    varies = False
    for a, b in zip(starts, np.r_[starts[1:], len(g_sorted)]):
        v = v_sorted[a:b]
        if np.ptp(v) > 1e-6 * max(1.0, float(np.abs(v).max())):
            varies = True
        out[int(g_sorted[a])] = float(np.median(v))
    return out, varies


def _optics_table(meta: ParticleMetadata) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Optics rows for the groups in ``meta`` and per-particle columns for values that
    vary inside a group (written to the particle table so nothing is lost)."""
    groups = np.asarray(meta.optics_group, dtype=np.int64)
    per_group: dict[str, dict[int, float]] = {}
    per_particle: dict[str, np.ndarray] = {}
    fields = {"rlnImagePixelSize": meta.apix}
    if meta.ctf is not None:
        fields.update(
            rlnVoltage=meta.ctf.voltage_kV,
            rlnSphericalAberration=meta.ctf.cs_mm,
            rlnAmplitudeContrast=meta.ctf.amp_contrast,
        )
    for col, vals in fields.items():
        per_group[col], varies = _per_group(np.asarray(vals, dtype=np.float64), groups)
        if varies:
            per_particle[col] = np.asarray(vals, dtype=np.float64)
    original = meta.optics
    rows = []
    for g in np.unique(groups):
        g = int(g)
        row: dict = {}
        if original is not None:
            match = original[original["rlnOpticsGroup"].astype(np.int64) == g]
            if len(match):
                row = match.iloc[0].to_dict()
        row.setdefault("rlnOpticsGroup", g)
        row.setdefault("rlnOpticsGroupName", f"opticsGroup{g}")
        for col in fields:
            row[col] = per_group[col][g]
        row["rlnImageSize"] = int(meta.box)
        row["rlnImageDimensionality"] = 2
        rows.append(row)
    cols = list(original.columns) if original is not None else []
    for key in rows[0]:
        if key not in cols:
            cols.append(key)
    table = pd.DataFrame(rows, columns=cols)
    for c in ("rlnOpticsGroup", "rlnImageSize", "rlnImageDimensionality"):
        table[c] = table[c].astype(np.int64)
    return table, per_particle


def _image_names(meta: ParticleMetadata, out_dir: Path) -> list[str]:
    rel = [relative_to_output(f, out_dir) for f in meta.image_files]
    return [f"{i + 1:06d}@{rel[f]}" for i, f in zip(meta.image_index.tolist(), meta.file_index.tolist())]


def _particle_table(meta: ParticleMetadata, out_dir: Path, per_particle: dict[str, np.ndarray]) -> pd.DataFrame:
    n = len(meta)
    cols: dict[str, object] = {"rlnImageName": _image_names(meta, out_dir)}
    cols["rlnOpticsGroup"] = np.asarray(meta.optics_group, dtype=np.int64)
    if meta.rotations is not None:
        ang = matrix_to_euler_relion(meta.rotations).reshape(n, 3)
        cols.update(rlnAngleRot=ang[:, 0], rlnAngleTilt=ang[:, 1], rlnAnglePsi=ang[:, 2])
    if meta.shifts_A is not None:
        cols.update(rlnOriginXAngst=meta.shifts_A[:, 0], rlnOriginYAngst=meta.shifts_A[:, 1])
    if meta.ctf is not None:
        c = meta.ctf
        cols.update(
            rlnDefocusU=c.defocus_u_A,
            rlnDefocusV=c.defocus_v_A,
            rlnDefocusAngle=c.defocus_angle_deg,
            rlnPhaseShift=c.phase_shift_deg,
            rlnCtfBfactor=c.bfactor_A2,
            rlnCtfScalefactor=c.scale,
        )
    cols.update(per_particle)
    df = pd.DataFrame(cols)
    table = meta.table
    if meta.source_format == "cs" and table is not None and len(table) == n:
        # the RELION view the .cs reader derived (micrographs, coordinates, half sets)
        rln = [c for c in table.columns if c.startswith("rln") and c not in _MANAGED]
        for c in rln:
            df[c] = table[c].to_numpy()
        if "rlnMicrographName" in df.columns:
            df["rlnMicrographName"] = [relative_to_output(m, out_dir) for m in df["rlnMicrographName"]]
    if meta.source_format == "star" and table is not None:
        if len(table) != n:
            log.warning(
                "%s: source table has %d rows for %d particles; extra columns not kept", meta.source, len(table), n
            )
        else:
            keep = [c for c in table.columns if c not in _MANAGED]
            extra = table[keep].reset_index(drop=True)
            df = pd.concat([df, extra], axis=1)
    return df


def _kept_image_names(meta: ParticleMetadata, names: pd.Series, out_dir: Path) -> pd.Series:
    """The source's ``rlnImageName`` text where its stack path, read from ``out_dir``, is the
    stack the particle was read from; elsewhere the name :func:`write_star` builds."""
    _, codes, paths = parse_image_names(names, meta.source or out_dir)
    keep = np.zeros(len(names), dtype=bool)
    pairs = np.unique(np.stack([codes, meta.file_index]), axis=1)
    for code, f in pairs.T:
        name = Path(paths[code])
        if Path(os.path.abspath(name if name.is_absolute() else out_dir / name)) == meta.image_files[f]:
            keep |= (codes == code) & (meta.file_index == f)
    if keep.all():
        return names.reset_index(drop=True)
    built = pd.Series(_image_names(meta, out_dir), dtype=object)
    return names.reset_index(drop=True).astype(object).where(keep, built)


def _source_tables(meta: ParticleMetadata, out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The optics and particle tables of a RELION 3.1+ source as read, with the poses of
    ``meta`` in place of the source's (angles and ``rlnOriginXAngst/YAngst``, formatted with
    :data:`STAR_FLOAT_FORMAT`; pixel origins ``rlnOriginX/Y`` dropped) and ``rlnImageName``
    kept where it still names the stack from ``out_dir`` (:func:`_kept_image_names`); None
    when ``meta`` does not hold such a source's rows."""
    table = meta.table
    if meta.source_format != "star" or meta.optics is None or table is None or len(table) != len(meta):
        return None
    parts = table.reset_index(drop=True).copy()
    parts["rlnImageName"] = _kept_image_names(meta, parts["rlnImageName"], out_dir)

    def put(col: str, values: np.ndarray) -> None:
        parts[col] = np.char.mod(STAR_FLOAT_FORMAT, np.asarray(values, dtype=np.float64))

    if meta.rotations is not None:
        ang = matrix_to_euler_relion(meta.rotations).reshape(len(meta), 3)
        for k, col in enumerate(_ANGLES):
            put(col, ang[:, k])
    if meta.shifts_A is not None:
        parts = parts.drop(columns=[c for c in _ORIGIN_PX if c in parts.columns])
        for k, col in enumerate(_ORIGIN_A):
            put(col, meta.shifts_A[:, k])
    return meta.optics.reset_index(drop=True), parts


def write_star(
    path: str | Path, meta: ParticleMetadata, *, overwrite: bool = True, source_columns: bool = False
) -> Path:
    """Write ``meta`` as a RELION 3.1 particle STAR file (``data_optics`` + ``data_particles``).

    Angles come from ``A`` via :func:`matrix_to_euler_relion` (degrees), origins are
    written in Å (``rlnOriginXAngst/YAngst``), ``rlnImageName`` uses 1-based indices and
    stack paths relative to the output file's folder (as RELION writes them, so the file
    and its stacks move together).
    Columns of a STAR source that cryohet does not manage (class numbers, half-sets,
    micrograph names, coordinates, ...) are kept row for row. Written atomically.

    ``source_columns``: when ``meta`` holds the rows of a RELION 3.1+ STAR file, write that
    file's tables as read instead (the optics table whole, every particle column in its
    order with the same values, floats in the shortest text that reads back equal), with
    only the poses of ``meta`` replaced (angles and origins in Å, at
    :data:`STAR_FLOAT_FORMAT`) and ``rlnImageName`` kept where it still names the same
    stack from the output's folder. Other sources are written as without it.
    """
    out = Path(path)
    if not overwrite and out.exists():
        raise file_error(out, "exists; refusing to overwrite")
    if len(meta) == 0:
        raise file_error(out, "no particles to write")
    if meta.box <= 0:
        raise file_error(
            meta.source or out, "box size unknown (no rlnImageSize and no stack found), RELION 3.1 needs rlnImageSize"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tables = _source_tables(meta, out.parent.resolve()) if source_columns else None
    if tables is not None:
        with atomic_write(out, "w") as fh:
            fh.write(f"# Written by cryohet {__version__} (RELION 3.1 format)\n\n")
            write_loop(fh, "optics", tables[0], float_format=None)
            write_loop(fh, "particles", tables[1], float_format=None)
        return out
    optics, per_particle = _optics_table(meta)
    if per_particle:
        log.warning(
            "%s: %s vary within an optics group; also written per particle", out, ", ".join(sorted(per_particle))
        )
    particles = _particle_table(meta, out.parent.resolve(), per_particle)
    with atomic_write(out, "w") as fh:
        fh.write(f"# Written by cryohet {__version__} (RELION 3.1 format)\n\n")
        write_loop(fh, "optics", optics)
        write_loop(fh, "particles", particles)
    return out
