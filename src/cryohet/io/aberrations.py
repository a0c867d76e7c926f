"""Optics refinements a particle file carries that cryohet's forward model does not use.

cryohet's CTF is RELION's isotropic-astigmatism CTF (defocus U/V and angle, voltage, Cs,
amplitude contrast, phase shift, B-factor and scale). RELION's CtfRefine and cryoSPARC's
global CTF refinement add per-group corrections on top of it:

===========================  ======================================  ===========================
correction                   RELION (optics or particle table)       cryoSPARC ``.cs``
===========================  ======================================  ===========================
beam tilt (mrad)             ``rlnBeamTiltX/Y``                      ``ctf/tilt_A``
odd (antisymmetric) Zernike  ``rlnOddZernike`` (trefoil, coma …)     ``ctf/trefoil_A``
even (symmetric) Zernike     ``rlnEvenZernike`` (tetrafoil …)        ``ctf/tetra_A``
anisotropic magnification    ``rlnMagMat00/01/10/11`` (≠ identity)   ``ctf/anisomag`` (≠ 0)
===========================  ======================================  ===========================

They matter near atomic resolution (beam tilt and odd aberrations shift phases ∝ k³), far
beyond the 4–8 Å at which heterogeneity is usually analysed, so they are read, **listed**
(``cryohet info``) and **warned about once** when particles are loaded, never silently
dropped. ``rlnCtfDataAreCtfPremultiplied = 1`` is different: the images were multiplied
by their CTF, and a forward model that applies the CTF once would be wrong at every
frequency, so such a file is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import file_error

__all__ = ["unused_star_corrections", "unused_cs_corrections", "check_not_premultiplied"]


def _numeric(table: pd.DataFrame | None, col: str) -> np.ndarray | None:
    if table is None or col not in table.columns:
        return None
    return pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=np.float64)


def _zernike_max(table: pd.DataFrame | None, col: str) -> float:
    """Largest |coefficient| of a RELION Zernike list column (``[0.1,-0.2,…]``), 0 when absent."""
    if table is None or col not in table.columns:
        return 0.0
    best = 0.0
    for text in table[col].astype(str):
        for word in text.strip().strip("[]").replace(",", " ").split():
            try:
                best = max(best, abs(float(word)))
            except ValueError:
                continue
    return best


def _groups(optics: pd.DataFrame | None, mask: np.ndarray) -> str:
    if optics is None or "rlnOpticsGroup" not in optics.columns:
        return ""
    return f" in {int(mask.sum())} of {len(mask)} optics group(s)"


def check_not_premultiplied(parts: pd.DataFrame, optics: pd.DataFrame | None, source: str | Path) -> None:
    """Refuse CTF-premultiplied images (``rlnCtfDataAreCtfPremultiplied = 1``), one line."""
    for table in (optics, parts):
        v = _numeric(table, "rlnCtfDataAreCtfPremultiplied")
        if v is not None and np.nanmax(np.abs(v), initial=0.0) > 0:
            raise file_error(
                source,
                "rlnCtfDataAreCtfPremultiplied = 1: the images were multiplied by their CTF, which cryohet's forward "
                "model does not take; export particles that are not CTF-premultiplied",
            )


def unused_star_corrections(parts: pd.DataFrame, optics: pd.DataFrame | None) -> list[str]:
    """One phrase per non-zero correction of a RELION file that cryohet does not apply."""
    out: list[str] = []
    for table in (optics, parts):
        tx, ty = _numeric(table, "rlnBeamTiltX"), _numeric(table, "rlnBeamTiltY")
        if tx is None and ty is None:
            continue
        mag = np.hypot(np.nan_to_num(tx if tx is not None else 0.0), np.nan_to_num(ty if ty is not None else 0.0))
        if np.max(mag, initial=0.0) > 0:
            where = _groups(optics, mag > 0) if table is optics else " (per particle)"
            out.append(f"beam tilt up to {np.max(mag):.3g} mrad{where} (rlnBeamTiltX/Y)")
            break
    for col, what in (("rlnOddZernike", "odd Zernike aberrations"), ("rlnEvenZernike", "even Zernike aberrations")):
        top = max(_zernike_max(optics, col), _zernike_max(parts, col))
        if top > 0:
            out.append(f"{what} up to {top:.3g} ({col})")
    cols = ("rlnMagMat00", "rlnMagMat01", "rlnMagMat10", "rlnMagMat11")
    for table in (optics, parts):
        mats = [_numeric(table, c) for c in cols]
        if any(m is None for m in mats):
            continue
        m = np.stack(mats, axis=1)
        off = np.abs(m - np.array([1.0, 0.0, 0.0, 1.0])).max(axis=1)
        if np.nanmax(off, initial=0.0) > 1e-6:
            where = _groups(optics, off > 1e-6) if table is optics else " (per particle)"
            out.append(f"anisotropic magnification up to {np.nanmax(off):.2%} from identity{where} (rlnMagMat)")
            break
    return out


def unused_cs_corrections(arr: np.ndarray) -> list[str]:
    """One phrase per non-zero global-CTF-refinement correction of a cryoSPARC ``.cs``."""
    names = arr.dtype.names or ()
    out: list[str] = []
    for field, what in (
        ("ctf/tilt_A", "beam tilt"),
        ("ctf/trefoil_A", "trefoil"),
        ("ctf/tetra_A", "tetrafoil"),
        ("ctf/anisomag", "anisotropic magnification"),
    ):
        if field not in names:
            continue
        values = np.abs(np.asarray(arr[field], dtype=np.float64))
        top = float(np.nanmax(values, initial=0.0))
        if top > 0:
            n = int((values.reshape(len(arr), -1).max(axis=1) > 0).sum())
            unit = "" if field == "ctf/anisomag" else " Å"
            out.append(f"{what} up to {top:.3g}{unit} for {n} of {len(arr)} particles ({field})")
    return out
