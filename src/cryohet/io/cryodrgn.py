"""cryoDRGN pickles: ``poses.pkl``, ``ctf.pkl``, ``ind.pkl`` (the de-facto interchange format).

Layouts (cryoDRGN writes them; RECOVAR reads them too):

* ``poses.pkl``: tuple ``(rot (N, 3, 3) float32, trans (N, 2) float32)`` with ``rot``
  equal to RELION's ``A`` (cryoDRGN applies it to row vectors, ``coords @ R``) and
  ``trans`` the RELION origin in pixels divided by the box ``D`` (no sign flip). A
  rotations-only ``(N, 3, 3)`` array is accepted on reading.
* ``ctf.pkl``: ``(N, 9)`` float32 ``[D, Apix, dfU Å, dfV Å, dfang °, kV, Cs mm, w, phase °]``.
* ``ind.pkl``: int array of 0-based indices into the *original* stack.

Reading goes through :func:`cryohet.io.safe_pickle.load_pickle` only (arrays, never code).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import file_error
from ..geometry.rotations import is_rotation
from .metadata import CTF_PKL_COLUMNS, CTFParams, check_pixel_size
from .safe_pickle import load_pickle, save_pickle

__all__ = [
    "read_poses_pkl",
    "read_ctf_pkl",
    "check_ctf_pkl",
    "read_ind_pkl",
    "write_poses_pkl",
    "write_ctf_pkl",
    "write_ind_pkl",
    "poses_from_cryodrgn",
    "poses_to_cryodrgn",
]


def read_poses_pkl(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rot (N, 3, 3) float64, trans (N, 2) float64 in fractions of D, or None)``."""
    p = Path(path)
    obj = load_pickle(p)
    if isinstance(obj, np.ndarray):
        rot, trans = obj, None
    elif isinstance(obj, (tuple, list)) and len(obj) == 2:
        rot, trans = obj
    else:
        raise file_error(p, "not a cryoDRGN poses file (expected (rot, trans) or a (N, 3, 3) rotation array)")
    rot = np.asarray(rot)
    if rot.ndim != 3 or rot.shape[1:] != (3, 3) or rot.dtype.kind not in "fi":
        raise file_error(p, f"rotations must be an (N, 3, 3) float array, got shape {rot.shape}")
    rot = rot.astype(np.float64)
    if not np.isfinite(rot).all():
        raise file_error(p, "rotations hold NaN/Inf")
    bad = ~is_rotation(rot, atol=1e-3)
    if bad.any():
        raise file_error(
            p, f"{int(bad.sum())} of {len(rot)} matrices are not rotations (first: row {int(np.flatnonzero(bad)[0])})"
        )
    if trans is not None:
        trans = np.asarray(trans)
        if trans.dtype.kind not in "fi" or trans.shape != (len(rot), 2):
            raise file_error(p, f"translations must be ({len(rot)}, 2), got shape {trans.shape}")
        trans = trans.astype(np.float64)
        if not np.isfinite(trans).all():
            raise file_error(p, "translations hold NaN/Inf")
    return rot, trans


def read_ctf_pkl(path: str | Path, check: bool = True) -> tuple[CTFParams, np.ndarray, np.ndarray]:
    """``(CTFParams, box D (N,), apix Å/px (N,))`` from a cryoDRGN ``ctf.pkl``.

    ``check``: also check the physics (:func:`check_ctf_pkl`); callers that first compare
    the row count with the particle set pass False and call it themselves.
    """
    p = Path(path)
    arr = load_pickle(p)
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != 9 or arr.dtype.kind not in "fi":
        shape = getattr(arr, "shape", type(arr).__name__)
        raise file_error(p, f"not a cryoDRGN CTF file (expected an (N, 9) float array, got {shape})")
    rows = arr.astype(np.float64)
    if not np.isfinite(rows).all():
        raise file_error(p, "CTF parameters hold NaN/Inf")
    if (rows[:, 0] <= 0).any():
        raise file_error(p, "box size (column 0) must be positive")
    ctf, box, apix = CTFParams.from_cryodrgn(rows), rows[:, 0].round().astype(np.int64), rows[:, 1]
    if check:
        check_ctf_pkl(p, ctf, apix)
    return ctf, box, apix


def check_ctf_pkl(path: str | Path, ctf: CTFParams, apix: np.ndarray) -> None:
    """The physics checks of :meth:`CTFParams.validate` and :func:`check_pixel_size` for a
    ``ctf.pkl``, naming its columns."""
    check_pixel_size(apix, path, "pixel size (column 1)")
    names = CTFParams.field_names()[:7]  # columns 2..8
    ctf.validate(path, {name: f"column {i + 2} ({CTF_PKL_COLUMNS[i + 2]})" for i, name in enumerate(names)})


def read_ind_pkl(path: str | Path) -> np.ndarray:
    """0-based int64 indices from a cryoDRGN ``ind.pkl``."""
    p = Path(path)
    arr = np.asarray(load_pickle(p))
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        raise file_error(p, f"not a cryoDRGN index file (expected a 1D int array, got shape {arr.shape})")
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise file_error(p, "indices are not integers")
    ind = arr.astype(np.int64)
    if ind.size and ind.min() < 0:
        raise file_error(p, "indices must be 0-based and non-negative")
    return ind


def poses_from_cryodrgn(
    rot: np.ndarray, trans: np.ndarray | None, box: int, apix: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """cryoDRGN ``(rot, trans)`` -> internal ``(A, shifts_A)``: ``A = rot``,
    ``shifts_A = trans * D * apix`` (RELION origin in Å)."""
    A = np.asarray(rot, dtype=np.float64)
    if trans is None:
        return A, None
    ap = np.broadcast_to(np.asarray(apix, dtype=np.float64), (len(A),))
    return A, np.asarray(trans, dtype=np.float64) * float(box) * ap[:, None]


def poses_to_cryodrgn(
    rotations: np.ndarray, shifts_A: np.ndarray | None, box: int, apix: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Internal ``(A, shifts_A)`` -> cryoDRGN ``(rot float32, trans float32)``:
    ``rot = A``, ``trans = shifts_A / apix / D`` (zeros when shifts are unknown)."""
    A = np.asarray(rotations, dtype=np.float64)
    n = len(A)
    if shifts_A is None:
        trans = np.zeros((n, 2))
    else:
        ap = np.broadcast_to(np.asarray(apix, dtype=np.float64), (n,))
        trans = np.asarray(shifts_A, dtype=np.float64) / ap[:, None] / float(box)
    return A.astype(np.float32), trans.astype(np.float32)


def write_poses_pkl(
    path: str | Path, rotations: np.ndarray, shifts_A: np.ndarray | None, box: int, apix: float | np.ndarray
) -> Path:
    """Write cryoDRGN's ``poses.pkl``: the tuple ``(rot (N,3,3) f32, trans (N,2) f32)``."""
    if box <= 0:
        raise ValueError(f"box must be positive to express shifts as fractions of it, got {box}")
    return save_pickle(path, poses_to_cryodrgn(rotations, shifts_A, box, apix))


def write_ctf_pkl(path: str | Path, ctf: CTFParams, box: int, apix: float | np.ndarray) -> Path:
    """Write cryoDRGN's ``ctf.pkl``: ``(N, 9)`` float32 (box and Å/px in columns 0, 1)."""
    return save_pickle(path, ctf.to_cryodrgn(box, apix))


def write_ind_pkl(path: str | Path, ind: np.ndarray) -> Path:
    """Write cryoDRGN's ``ind.pkl``: a 1D int64 array of 0-based indices."""
    return save_pickle(path, np.asarray(ind, dtype=np.int64).reshape(-1))
