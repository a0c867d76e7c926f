"""Compare two maps (arrays or MRC files): CryoBench FSC/AUC and resolution, as a report.

The API behind ``cryohet fsc``. Resolutions (Å) come from the conventional FSC
(:func:`~cryohet.metrics.fsc.fsc_standard`) at 0.5 and 0.143; the CryoBench AUC from
:func:`~cryohet.metrics.fsc.fsc_cryobench` (raw curve, not normalised). With a mask,
the masked and unmasked scores are both reported.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, file_error
from ..io.mrc import read_volume
from ..io.outputs import atomic_path, atomic_write
from ..metrics.fsc import FSCCurve, crossing_frequency, fsc_cryobench, fsc_standard, resolution_A

__all__ = ["FSCReport", "compare_maps", "compare_map_files", "write_report_json", "plot_report"]

THRESHOLDS = (0.5, 0.143)


@dataclass(frozen=True)
class FSCReport:
    """FSC curves of one map pair; ``masked_*`` are ``None`` without a mask. ``apix`` in Å/px."""

    apix: float
    box: int
    cryobench: FSCCurve
    standard: FSCCurve
    masked_cryobench: FSCCurve | None = None
    masked_standard: FSCCurve | None = None

    def resolution(self, threshold: float, masked: bool = False) -> float:
        """Resolution in Å at ``threshold`` from the (masked) conventional FSC."""
        curve = self.masked_standard if masked else self.standard
        if curve is None:
            raise ValueError("no masked FSC in this report")
        return resolution_A(curve, self.apix, threshold)

    def crosses(self, threshold: float, masked: bool = False) -> bool:
        """Whether the (masked) conventional FSC falls below ``threshold`` before Nyquist.

        If not, :meth:`resolution` is the Nyquist limit and only an upper bound.
        """
        curve = self.masked_standard if masked else self.standard
        if curve is None:
            raise ValueError("no masked FSC in this report")
        return crossing_frequency(curve, threshold) is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary and curves (frequencies in 1/Å and cycles/px)."""

        def curve_dict(c: FSCCurve) -> dict[str, Any]:
            return {
                "freq_per_px": c.freq_per_px.tolist(),
                "freq_per_A": c.freq_per_A(self.apix).tolist(),
                "fsc": c.fsc.tolist(),
                "auc": c.auc,
            }

        def res(v: float) -> float | None:
            return None if not math.isfinite(v) else v

        out: dict[str, Any] = {"apix": self.apix, "box": self.box, "nyquist_A": 2.0 * self.apix}
        variants = [("unmasked", self.cryobench, self.standard, False)]
        if self.masked_cryobench is not None and self.masked_standard is not None:
            variants.append(("masked", self.masked_cryobench, self.masked_standard, True))
        for name, cb, st, masked in variants:
            out[name] = {
                "cryobench_auc": cb.auc,
                "cryobench_auc_max": (self.box // 2 - 1) / self.box,
                **{f"resolution_A_fsc{t:g}": res(self.resolution(t, masked)) for t in THRESHOLDS},
                **{f"crosses_fsc{t:g}": self.crosses(t, masked) for t in THRESHOLDS},
                "cryobench_curve": curve_dict(cb),
                "standard_curve": curve_dict(st),
            }
        return out


def compare_maps(vol1: np.ndarray, vol2: np.ndarray, apix: float, mask: np.ndarray | None = None) -> FSCReport:
    """FSC report of two ``(D, D, D)`` maps with pixel size ``apix`` Å; ``mask`` optional."""
    D = int(np.asarray(vol1).shape[-1])
    return FSCReport(
        apix=float(apix),
        box=D,
        cryobench=fsc_cryobench(vol1, vol2),
        standard=fsc_standard(vol1, vol2),
        masked_cryobench=None if mask is None else fsc_cryobench(vol1, vol2, mask),
        masked_standard=None if mask is None else fsc_standard(vol1, vol2, mask),
    )


def _read_map(path: Path) -> tuple[np.ndarray, float]:
    data, info = read_volume(path)
    if info.is_stack:
        raise file_error(path, f"is an image stack of shape {data.shape}, expected a 3D map")
    if len(set(data.shape)) != 1:
        raise file_error(path, f"map is not cubic (shape {data.shape})")
    if data.shape[0] % 2:
        raise file_error(path, f"odd box size {data.shape[0]}; the CryoBench FSC needs an even box")
    return data, float(info.apix)


def compare_map_files(
    map1: str | Path, map2: str | Path, mask: str | Path | None = None, apix: float | None = None
) -> FSCReport:
    """Read two MRC maps (and a mask) and compare them; bad input raises ``InputError``.

    The pixel size is ``apix`` if given, else MAP1's header; the maps must agree in box
    size and (within 0.1 %) in header pixel size.
    """
    p1, p2 = Path(map1), Path(map2)
    v1, a1 = _read_map(p1)
    v2, a2 = _read_map(p2)
    if v1.shape != v2.shape:
        raise InputError(f"{p1} and {p2} differ in box size: {v1.shape[0]}^3 vs {v2.shape[0]}^3")
    if apix is None:
        if not a1 > 0:
            raise file_error(p1, "header has no pixel size; give it with --apix")
        if a2 > 0 and abs(a1 - a2) > 1e-3 * a1:
            raise InputError(f"{p1} and {p2} differ in pixel size: {a1:g} vs {a2:g} Å/px")
        apix = a1
    elif not apix > 0:
        raise InputError(f"pixel size must be positive, got {apix}")
    m = None
    if mask is not None:
        pm = Path(mask)
        m, _ = read_volume(pm)
        if m.shape != v1.shape:
            raise file_error(pm, f"mask shape {m.shape} differs from the maps' {v1.shape}")
    return compare_maps(v1, v2, float(apix), m)


def write_report_json(report: FSCReport, path: str | Path) -> Path:
    """Write :meth:`FSCReport.to_dict` as JSON (atomically)."""
    p = Path(path)
    with atomic_write(p) as fh:
        fh.write(json.dumps(report.to_dict(), indent=2))
    return p


def plot_report(report: FSCReport, path: str | Path) -> Path:
    """Plot the FSC curves against 1/Å (clipped to [0, 1] for display) with 0.5/0.143 lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    curves = [("unmasked", report.standard, report.cryobench)]
    if report.masked_standard is not None and report.masked_cryobench is not None:
        curves.append(("masked", report.masked_standard, report.masked_cryobench))
    for name, st, cb in curves:
        ax.plot(st.freq_per_A(report.apix), st.fsc, label=f"{name} (AUC {cb.auc:.3f})")
    for t in THRESHOLDS:
        ax.axhline(t, color="grey", lw=0.8, ls="--")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.legend(loc="upper right")
    fig.tight_layout()
    try:
        with atomic_path(p) as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return p
