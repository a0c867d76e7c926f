"""cryoSPARC ``.cs`` particle files (numpy structured arrays, read with ``np.load``).

Conversion to the internal convention (checked against cryoDRGN's conversion of a real
refinement, ``pose.cs.pkl`` / ``ctf.cs.pkl`` in the shared fixtures):

* ``alignments3D/pose`` is an axis-angle vector (radians) with ``expmap(pose) = A.T``,
  so ``A = axis_angle_to_matrix(pose).T``;
* ``alignments3D/shift`` is in **pixels at** ``alignments3D/psize_A`` (which may differ
  from ``blob/psize_A``), same sign as RELION's origin: ``shifts_A = shift * psize``;
* ``blob/idx`` is 0-based; ``blob/path`` may start with ``>`` (stripped) and is
  relative to the cryoSPARC project folder; ``blob/psize_A`` is the image pixel size;
* ``ctf/df1_A, df2_A`` (Å) -> defocus U, V; ``df_angle_rad``, ``phase_shift_rad``
  -> degrees; ``accel_kv``, ``cs_mm``, ``amp_contrast``, ``bfactor``, ``scale``;
* ``ctf/exp_group_id`` (exposure group) becomes the optics group (numbered 1..K in
  sorted order of the ids).

A ``passthrough`` file (``*_passthrough_particles.cs``) is merged on ``uid``: fields
missing from the main file are taken from it.

Writing: :func:`write_cs_subset` writes rows of a source ``.cs`` unchanged, or with some
fields replaced (or added); :func:`poses_to_cs` is the inverse of the pose conversion above
(``cryohet export``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import file_error
from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from .aberrations import unused_cs_corrections
from .metadata import CTFParams, ParticleMetadata, check_pixel_size
from .mrc import read_mrc_header
from .outputs import atomic_write, ensure_not_input
from .paths import resolve_data_path

__all__ = ["load_cs", "merge_passthrough", "read_cs", "write_cs_subset", "poses_to_cs"]


def load_cs(path: str | Path) -> np.ndarray:
    """The record array of a ``.cs`` file (no pickles are ever loaded)."""
    p = Path(path)
    if not p.exists():
        raise file_error(p, "file not found")
    if p.is_dir():
        raise file_error(p, "is a directory, expected a cryoSPARC .cs file")
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as err:  # noqa: BLE001
        with open(p, "rb") as fh:
            magic = fh.read(8)
        hint = " (cryoSPARC's compressed dataset format; re-export it as a .cs numpy file)" if b"CSDAT" in magic else ""
        raise file_error(p, f"not a readable cryoSPARC .cs file{hint} ({type(err).__name__}: {err})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None or arr.ndim != 1:
        raise file_error(p, "not a cryoSPARC .cs file (expected a 1D numpy array with named fields)")
    if len(arr) == 0:
        raise file_error(p, "holds no particles")
    return arr


def merge_passthrough(main: np.ndarray, passthrough: np.ndarray, source: Path | str = "passthrough") -> np.ndarray:
    """Add the fields of ``passthrough`` that ``main`` lacks, matched on ``uid``."""
    for arr, name in ((main, "main"), (passthrough, str(source))):
        if "uid" not in arr.dtype.names:
            raise file_error(source if name != "main" else "cs", "has no uid field; cannot merge the passthrough")
    order = np.argsort(passthrough["uid"], kind="stable")
    sorted_uid = passthrough["uid"][order]
    pos = np.clip(np.searchsorted(sorted_uid, main["uid"]), 0, len(sorted_uid) - 1)
    found = sorted_uid[pos] == main["uid"]
    if not found.all():
        raise file_error(source, f"lacks {int((~found).sum())} of the {len(main)} particle uids of the main .cs file")
    rows = order[pos]
    new = [f for f in passthrough.dtype.names if f not in main.dtype.names]
    dtype = np.dtype([(f, main.dtype[f]) for f in main.dtype.names] + [(f, passthrough.dtype[f]) for f in new])
    out = np.empty(len(main), dtype=dtype)
    for f in main.dtype.names:
        out[f] = main[f]
    for f in new:
        out[f] = passthrough[f][rows]
    return out


def _paths(arr: np.ndarray, source: Path, datadir) -> tuple[list[Path], np.ndarray]:
    codes, uniques = pd.factorize(pd.Series(arr["blob/path"]), sort=False)
    base = source.resolve().parent
    resolved: dict[Path, int] = {}
    files: list[Path] = []
    remap = np.empty(len(uniques), dtype=np.int64)
    for i, raw in enumerate(uniques):
        name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        name = name.strip().lstrip(">")
        if not name:
            raise file_error(source, "empty blob/path")
        p = resolve_data_path(name, base, datadir, layout="cs")
        if p not in resolved:
            resolved[p] = len(files)
            files.append(p)
        remap[i] = resolved[p]
    return files, remap[codes]


def _relion_view(arr: np.ndarray, source: Path, datadir) -> dict[str, np.ndarray]:
    """RELION columns a ``.cs`` (with its passthrough) can fill, for STAR files written from it:

    * ``rlnMicrographName`` — ``location/micrograph_path``, resolved like the stacks (project folder);
    * ``rlnCoordinateX/Y`` — ``location/center_x_frac``/``center_y_frac`` × the micrograph's
      width/height (``location/micrograph_shape`` is ``(ny, nx)``), pixels of the micrograph;
    * ``rlnRandomSubset`` — ``alignments3D/split`` + 1 (cryoSPARC's half sets 0/1).
    """
    names = arr.dtype.names or ()
    out: dict[str, np.ndarray] = {}
    if "location/micrograph_path" in names:
        codes, uniques = pd.factorize(pd.Series(arr["location/micrograph_path"]), sort=False)
        base = source.resolve().parent
        paths = []
        for raw in uniques:
            name = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip().lstrip(">")
            paths.append(str(resolve_data_path(name, base, datadir, layout="cs")) if name else "")
        out["rlnMicrographName"] = np.asarray(paths, dtype=object)[codes]
    if {"location/center_x_frac", "location/center_y_frac", "location/micrograph_shape"} <= set(names):
        shape = np.asarray(arr["location/micrograph_shape"], dtype=np.float64).reshape(len(arr), -1)
        out["rlnCoordinateX"] = np.asarray(arr["location/center_x_frac"], dtype=np.float64) * shape[:, 1]
        out["rlnCoordinateY"] = np.asarray(arr["location/center_y_frac"], dtype=np.float64) * shape[:, 0]
    if "alignments3D/split" in names:
        out["rlnRandomSubset"] = np.asarray(arr["alignments3D/split"], dtype=np.int64) + 1
    return out


def _field(arr: np.ndarray, name: str) -> np.ndarray | None:
    return np.asarray(arr[name], dtype=np.float64) if name in arr.dtype.names else None


#: CTFParams field -> .cs field (for messages; angles are converted from radians).
_CTF_FIELDS = {
    "defocus_u_A": "ctf/df1_A",
    "defocus_v_A": "ctf/df2_A",
    "defocus_angle_deg": "ctf/df_angle_rad (in degrees)",
    "voltage_kV": "ctf/accel_kv",
    "cs_mm": "ctf/cs_mm",
    "amp_contrast": "ctf/amp_contrast",
    "phase_shift_deg": "ctf/phase_shift_rad (in degrees)",
    "bfactor_A2": "ctf/bfactor",
    "scale": "ctf/scale",
}


def _ctf(arr: np.ndarray, source: Path) -> CTFParams | None:
    if "ctf/df1_A" not in arr.dtype.names:
        return None
    need = ("ctf/df1_A", "ctf/df2_A", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast")
    missing = [f for f in need if f not in arr.dtype.names]
    if missing:
        raise file_error(source, f"missing required CTF field(s) {', '.join(missing)}")
    angle = _field(arr, "ctf/df_angle_rad")
    phase = _field(arr, "ctf/phase_shift_rad")
    return CTFParams(
        defocus_u_A=_field(arr, "ctf/df1_A"),
        defocus_v_A=_field(arr, "ctf/df2_A"),
        defocus_angle_deg=0.0 if angle is None else np.rad2deg(angle),
        voltage_kV=_field(arr, "ctf/accel_kv"),
        cs_mm=_field(arr, "ctf/cs_mm"),
        amp_contrast=_field(arr, "ctf/amp_contrast"),
        phase_shift_deg=0.0 if phase is None else np.rad2deg(phase),
        bfactor_A2=_field(arr, "ctf/bfactor"),
        scale=_field(arr, "ctf/scale"),
    ).validate(source, _CTF_FIELDS)


def _poses(arr: np.ndarray, blob_apix: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    if "alignments3D/pose" not in arr.dtype.names:
        return None, None
    pose = np.asarray(arr["alignments3D/pose"], dtype=np.float64).reshape(len(arr), 3)
    A = np.swapaxes(axis_angle_to_matrix(pose).reshape(len(arr), 3, 3), 1, 2)
    if "alignments3D/shift" not in arr.dtype.names:
        return A, np.zeros((len(arr), 2))
    shift_px = np.asarray(arr["alignments3D/shift"], dtype=np.float64).reshape(len(arr), 2)
    align_apix = _field(arr, "alignments3D/psize_A")
    psize = blob_apix if align_apix is None else align_apix
    return A, shift_px * psize[:, None]


def _box(arr: np.ndarray, files: list[Path], source: Path) -> int:
    if "blob/shape" in arr.dtype.names:
        shape = np.asarray(arr["blob/shape"]).reshape(len(arr), -1)
        uniq = np.unique(shape, axis=0)
        if len(uniq) > 1:
            raise file_error(source, f"particles have different image shapes {uniq.tolist()[:4]}")
        if shape.shape[1] != 2 or uniq[0][0] != uniq[0][1]:
            raise file_error(source, f"images are not square (blob/shape {uniq[0].tolist()})")
        return int(uniq[0][0])
    for f in files:
        if f.is_file():
            return int(read_mrc_header(f).shape[-1])
    return 0


def read_cs(
    path: str | Path,
    *,
    passthrough: str | Path | None = None,
    datadir: str | Path | None = None,
    apix: float | None = None,
) -> ParticleMetadata:
    """Read a cryoSPARC particle ``.cs`` file (plus an optional passthrough file).

    ``apix`` (Å/px) is used only when the file has no ``blob/psize_A``. Stack files are
    resolved (see :func:`cryohet.io.paths.candidate_paths`, layout ``"cs"``) but not
    opened; :func:`cryohet.io.particles.load_particles` checks them.
    """
    source = Path(path)
    arr = load_cs(source)
    inputs: list[Path] = [source]
    if passthrough is not None:
        pt = Path(passthrough)
        arr = merge_passthrough(arr, load_cs(pt), pt)
        inputs.append(pt)
    for f in ("blob/path", "blob/idx"):
        if f not in arr.dtype.names:
            raise file_error(source, f"missing required field {f}")
    n = len(arr)
    files, file_index = _paths(arr, source, datadir)
    blob_apix = _field(arr, "blob/psize_A")
    if blob_apix is None:
        if apix is None:
            raise file_error(source, "no blob/psize_A field; give the pixel size (apix, --apix)")
        check_pixel_size(apix, source, "the given pixel size (apix)")
        blob_apix = np.full(n, float(apix))
    else:
        check_pixel_size(blob_apix, source, "blob/psize_A")
    rotations, shifts = _poses(arr, blob_apix)
    if "ctf/exp_group_id" in arr.dtype.names:
        ids = np.asarray(arr["ctf/exp_group_id"], dtype=np.int64)
        uniq, groups = np.unique(ids, return_inverse=True)
        groups = groups.astype(np.int64) + 1
    else:
        uniq, groups = np.zeros(1, np.int64), np.ones(n, dtype=np.int64)
    scalar = [f for f in arr.dtype.names if arr.dtype[f].shape == () and arr.dtype[f].kind in "iuf"]
    table = pd.DataFrame({f: arr[f] for f in scalar})
    for col, values in _relion_view(arr, source, datadir).items():
        table[col] = values
    return ParticleMetadata(
        image_files=files,
        file_index=file_index,
        image_index=np.asarray(arr["blob/idx"], dtype=np.int64),
        box=_box(arr, files, source),
        apix=blob_apix,
        ctf=_ctf(arr, source),
        rotations=rotations,
        shifts_A=shifts,
        optics_group=groups,
        table=table,
        source=source,
        source_format="cs",
        extras={
            "inputs": inputs,
            "cs_path": source,
            "passthrough_path": None if passthrough is None else Path(passthrough),
            "exp_group_ids": uniq,
            "blob_sign": _field(arr, "blob/sign"),
            "unused_optics": unused_cs_corrections(arr),
        },
    )


def poses_to_cs(
    rotations: np.ndarray, shifts_A: np.ndarray, psize_A: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Internal ``(A (N,3,3), shifts_A (N,2))`` -> cryoSPARC ``(alignments3D/pose (N,3),
    alignments3D/shift (N,2))`` float32: ``pose`` the axis-angle vector (radians) of ``A.T``,
    ``shift = shifts_A / psize_A`` in pixels at ``alignments3D/psize_A`` (same sign as
    RELION's origin). The inverse of what :func:`read_cs` does."""
    A = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    n = len(A)
    pose = matrix_to_axis_angle(np.swapaxes(A, 1, 2)).reshape(n, 3)
    psize = np.broadcast_to(np.asarray(psize_A, dtype=np.float64), (n,))
    shift = np.asarray(shifts_A, dtype=np.float64).reshape(n, 2) / psize[:, None]
    return pose.astype(np.float32), shift.astype(np.float32)


def _with_fields(arr: np.ndarray, fields: dict[str, np.ndarray], source: Path | str) -> np.ndarray:
    """A copy of ``arr`` with ``fields`` replaced (cast to the field's dtype) or added at the end
    (with the given array's dtype and per-row shape)."""
    new = [(name, np.asarray(v).dtype, np.asarray(v).shape[1:]) for name, v in fields.items()]
    new = [f for f in new if f[0] not in arr.dtype.names]
    if new:
        dtype = np.dtype(arr.dtype.descr + [(name, dt, shape) for name, dt, shape in new])
        out = np.zeros(len(arr), dtype=dtype)
        for name in arr.dtype.names:
            out[name] = arr[name]
    else:
        out = arr.copy()
    for name, values in fields.items():
        v = np.asarray(values)
        want = (len(out), *out.dtype[name].shape)
        if v.shape != want:
            raise file_error(source, f"field {name} needs values of shape {want}, got {v.shape}")
        out[name] = v.astype(out.dtype[name].base)
    return out


def write_cs_subset(
    path: str | Path,
    source_cs: str | Path,
    rows: np.ndarray | list[int],
    fields: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write rows ``rows`` (0-based, into ``source_cs``) of a ``.cs`` file unchanged.

    The output keeps every field and the dtype of the source, so cryoSPARC imports it
    as is (used by ``cryohet select``). ``fields`` (name -> values with one row per written
    row) replace those fields, or are added after the source's when it lacks them
    (``cryohet export``: the poses). Refuses to overwrite the source; atomic.
    """
    out = Path(path)
    ensure_not_input(out, [source_cs])
    arr = load_cs(source_cs)
    ix = np.asarray(rows, dtype=np.int64).reshape(-1)
    if ix.size and (ix.min() < 0 or ix.max() >= len(arr)):
        raise file_error(source_cs, f"row index out of range 0..{len(arr) - 1} (got {ix.min()}..{ix.max()})")
    sub = arr[ix] if not fields else _with_fields(arr[ix], fields, source_cs)
    with atomic_write(out, "wb") as fh:
        np.save(fh, sub, allow_pickle=False)
    return out
