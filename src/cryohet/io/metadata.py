"""The plain typed objects every particle reader returns (one internal convention).

* Rotations: RELION matrix ``A`` (see :mod:`cryohet.geometry.rotations`), float64 (N, 3, 3).
* Shifts: RELION origin in **Å**, (N, 2) as (x, y): the particle centre sits at
  ``-origin`` in the image, ``image(x) = centred(x + origin)``.
* CTF: RELION parameters per particle (defocus in Å, angles in degrees, voltage in kV,
  Cs in mm), optics-group values already merged with per-particle overrides.
* Images: ``image_files[file_index[i]]`` holds particle ``i`` at 0-based
  ``image_index[i]``; paths are absolute after reading.

Every reader checks the physics of what it read (:meth:`CTFParams.validate`,
:func:`check_pixel_size`): a value no microscope produces (defocus <= 0, i.e. a flipped
sign; voltage <= 0; Cs < 0; amplitude contrast outside [0, 1); pixel size <= 0; NaN) is
an :class:`~cryohet.errors.InputError` naming the file, the column, how many particles
and an example; a possible but unusual value (outside :data:`PLAUSIBLE`, typically a unit
mix-up) is one warning line per file and column on the ``cryohet`` logger.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..console import get_logger
from ..errors import InputError, file_error

__all__ = ["CTFParams", "ParticleMetadata", "CTF_PKL_COLUMNS", "PLAUSIBLE", "check_pixel_size"]

log = get_logger("io.metadata")

#: cryoDRGN ``ctf.pkl`` column order.
CTF_PKL_COLUMNS = ("box", "apix", "dfU_A", "dfV_A", "dfang_deg", "kV", "cs_mm", "w", "phase_deg")

#: Usual ranges (inclusive); a value outside is read but warned about once per file and column.
#: Defocus 0.1-10 µm (single particles are imaged at 0.5-3 µm; tomography up to ~8 µm; below
#: 0.1 µm only with a phase plate); 60-400 kV covers every cryo-EM microscope; Cs 0-10 mm
#: (0 for corrected scopes, 2.7 typical); amplitude contrast 0.07-0.1 typical, up to 0.5 when
#: a phase plate is folded into it; pixel sizes 0.3-20 Å (super-resolution to heavily binned).
PLAUSIBLE: dict[str, tuple[float, float, str]] = {
    "defocus_u_A": (1e3, 1e5, "Å"),
    "defocus_v_A": (1e3, 1e5, "Å"),
    "voltage_kV": (60.0, 400.0, "kV"),
    "cs_mm": (0.0, 10.0, "mm"),
    "amp_contrast": (0.0, 0.5, ""),
    "apix": (0.3, 20.0, "Å"),
}

#: What no microscope produces: an error (field -> (test of a valid value, rule, hint)).
_DEFOCUS_RULE = "positive (RELION convention: underfocus > 0, in Å)"
_VALID: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str, str]] = {
    "defocus_u_A": (lambda v: v > 0, _DEFOCUS_RULE, "; a flipped sign?"),
    "defocus_v_A": (lambda v: v > 0, _DEFOCUS_RULE, "; a flipped sign?"),
    "voltage_kV": (lambda v: v > 0, "a positive voltage in kV", ""),
    "cs_mm": (lambda v: v >= 0, "non-negative (spherical aberration in mm)", ""),
    "amp_contrast": (lambda v: (v >= 0) & (v < 1), "in [0, 1) (a fraction; 0.07-0.1 typical)", ""),
    "apix": (lambda v: v > 0, "a positive pixel size in Å", ""),
}

_warned: set[tuple[str, str]] = set()


def _example(values: np.ndarray, bad: np.ndarray) -> str:
    i = int(np.flatnonzero(bad)[0])
    return f"{int(bad.sum())} of {len(values)} particles (first: particle {i + 1}, {values[i]:g})"


def _check_values(
    values: np.ndarray, source: str | Path, column: str, name: str, exempt: np.ndarray | None = None
) -> None:
    """Error for NaN/Inf and impossible values (except where ``exempt``), one warning for
    unusual ones (see :data:`PLAUSIBLE`)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return
    finite = np.isfinite(v)
    if not finite.all():
        raise file_error(source, f"{column} must be a finite number, but is not for {_example(v, ~finite)}")
    if name in _VALID:
        test, rule, hint = _VALID[name]
        ok = test(v) if exempt is None else test(v) | exempt
        if not ok.all():
            raise file_error(source, f"{column} must be {rule}, but is not for {_example(v, ~ok)}{hint}")
    if name in PLAUSIBLE:
        lo, hi, unit = PLAUSIBLE[name]
        odd = (v < lo) | (v > hi)
        key = (str(source), "defocus" if name.startswith("defocus") else column)  # U and V: one line
        if odd.any() and key not in _warned:
            _warned.add(key)
            log.warning(
                "%s: %s is outside the usual %g-%g%s for %s; check the units",
                source,
                column,
                lo,
                hi,
                f" {unit}" if unit else "",
                _example(v, odd),
            )


def check_pixel_size(apix: float | np.ndarray, source: str | Path, column: str = "pixel size") -> None:
    """Error (one line) for a pixel size that is not a positive finite number; one warning
    per file when it is outside the usual 0.3-20 Å."""
    _check_values(np.atleast_1d(np.asarray(apix, dtype=np.float64)), source, column, "apix")


@dataclass
class CTFParams:
    """Per-particle RELION CTF parameters, each a float64 array of shape (N,).

    ``bfactor_A2`` is RELION's ``rlnCtfBfactor`` (envelope ``exp(-B k^2 / 4)``, k in 1/Å)
    and ``scale`` is ``rlnCtfScalefactor``; both default to 0 and 1.
    """

    defocus_u_A: np.ndarray
    defocus_v_A: np.ndarray
    defocus_angle_deg: np.ndarray
    voltage_kV: np.ndarray
    cs_mm: np.ndarray
    amp_contrast: np.ndarray
    phase_shift_deg: np.ndarray
    bfactor_A2: np.ndarray = None  # type: ignore[assignment]
    scale: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = len(np.atleast_1d(self.defocus_u_A))
        for name in self.field_names():
            val = getattr(self, name)
            if val is None:
                val = np.full(n, 1.0 if name == "scale" else 0.0)
            arr = np.asarray(val, dtype=np.float64)
            if arr.ndim == 0:
                arr = np.full(n, float(arr))
            if arr.shape != (n,):
                raise ValueError(f"CTF field {name} has shape {arr.shape}, expected ({n},)")
            setattr(self, name, arr)

    @staticmethod
    def field_names() -> tuple[str, ...]:
        return (
            "defocus_u_A",
            "defocus_v_A",
            "defocus_angle_deg",
            "voltage_kV",
            "cs_mm",
            "amp_contrast",
            "phase_shift_deg",
            "bfactor_A2",
            "scale",
        )

    def __len__(self) -> int:
        return len(self.defocus_u_A)

    def validate(self, source: str | Path, columns: Mapping[str, str] | None = None) -> CTFParams:
        """Check the physics of the values read from ``source``; returns ``self``.

        ``columns`` maps field names to the file's column names (used in messages).
        Errors: NaN/Inf anywhere, defocus <= 0 (RELION's convention is underfocus > 0;
        all-negative values are a flipped sign; 0 is allowed with a phase shift, i.e. a
        phase plate in focus), voltage <= 0, Cs < 0, amplitude contrast outside [0, 1).
        Warnings (one line per file and column): values outside :data:`PLAUSIBLE`.
        """
        names = dict(columns or {})
        for name in self.field_names():
            values = getattr(self, name)
            # in focus is a real setting with a phase plate (cryoDRGN's toy data: 0 Å at 90°)
            in_focus = (values == 0) & (self.phase_shift_deg != 0) if name.startswith("defocus") else None
            _check_values(values, source, names.get(name, name), name, exempt=in_focus)
        return self

    def subset(self, idx: np.ndarray) -> CTFParams:
        return CTFParams(**{k: getattr(self, k)[idx] for k in self.field_names()})

    def as_array(self) -> np.ndarray:
        """(N, 9) float64 in :meth:`field_names` order (the order imaging.ctf expects)."""
        return np.stack([getattr(self, k) for k in self.field_names()], axis=1)

    def to_cryodrgn(self, box: int, apix: float | np.ndarray) -> np.ndarray:
        """cryoDRGN ``ctf.pkl`` rows: ``[D, Apix, dfU, dfV, dfang, kV, Cs, w, phase]``."""
        n = len(self)
        return np.stack(
            [
                np.full(n, float(box)),
                np.broadcast_to(np.asarray(apix, dtype=np.float64), (n,)),
                self.defocus_u_A,
                self.defocus_v_A,
                self.defocus_angle_deg,
                self.voltage_kV,
                self.cs_mm,
                self.amp_contrast,
                self.phase_shift_deg,
            ],
            axis=1,
        ).astype(np.float32)

    @classmethod
    def from_cryodrgn(cls, rows: np.ndarray) -> CTFParams:
        """From cryoDRGN ``ctf.pkl`` rows (N, 9); box and pixel size are columns 0 and 1."""
        r = np.asarray(rows, dtype=np.float64)
        if r.ndim != 2 or r.shape[1] != 9:
            raise InputError(f"cryoDRGN CTF array must be (N, 9), got {r.shape}")
        return cls(r[:, 2], r[:, 3], r[:, 4], r[:, 5], r[:, 6], r[:, 7], r[:, 8])


@dataclass
class ParticleMetadata:
    """Everything known about a particle set except the pixels.

    Attributes:
        image_files: absolute paths of the stack files (unique).
        file_index: (N,) int, index into ``image_files`` for each particle.
        image_index: (N,) int, 0-based slice of that stack.
        box: image side in pixels (square images).
        apix: (N,) Å/px of each particle's image (optics groups may differ).
        ctf: CTF parameters, or None when the source has none.
        rotations: (N, 3, 3) RELION ``A`` matrices, or None when poses are unknown.
        shifts_A: (N, 2) RELION origin (x, y) in Å, or None.
        optics_group: (N,) int optics-group number (1-based as in RELION; 1 if none).
        optics: RELION optics table to keep when writing a STAR file (None if absent).
        table: the source's per-particle rows (STAR DataFrame, or a DataFrame view of the
            cryoSPARC record array) in the same order, for writing subsets back.
        source: the file this was read from; ``source_format`` one of star/cs/mrcs.
        original_index: (N,) int, row of each particle in the *original* source, so that
            subsets (``ind.pkl``) map back to it.
    """

    image_files: list[Path]
    file_index: np.ndarray
    image_index: np.ndarray
    box: int
    apix: np.ndarray
    ctf: CTFParams | None = None
    rotations: np.ndarray | None = None
    shifts_A: np.ndarray | None = None
    optics_group: np.ndarray | None = None
    optics: pd.DataFrame | None = None
    table: pd.DataFrame | None = None
    source: Path | None = None
    source_format: str = "mrcs"
    original_index: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.image_index)
        self.file_index = np.asarray(self.file_index, dtype=np.int64)
        self.image_index = np.asarray(self.image_index, dtype=np.int64)
        self.apix = np.broadcast_to(np.asarray(self.apix, dtype=np.float64), (n,)).copy()
        if self.optics_group is None:
            self.optics_group = np.ones(n, dtype=np.int64)
        if self.original_index is None:
            self.original_index = np.arange(n, dtype=np.int64)
        if self.rotations is not None:
            self.rotations = np.asarray(self.rotations, dtype=np.float64).reshape(n, 3, 3)
        if self.shifts_A is not None:
            self.shifts_A = np.asarray(self.shifts_A, dtype=np.float64).reshape(n, 2)
        if self.ctf is not None and len(self.ctf) != n:
            raise ValueError(f"{len(self.ctf)} CTF rows for {n} particles")

    def __len__(self) -> int:
        return len(self.image_index)

    @property
    def has_poses(self) -> bool:
        return self.rotations is not None

    @property
    def pixel_size(self) -> float:
        """The single Å/px of the set; an error when optics groups disagree."""
        vals = np.unique(np.round(self.apix, 6))
        if len(vals) != 1:
            raise InputError(
                f"{self.source}: particles have {len(vals)} different pixel sizes "
                f"({', '.join(f'{v:g}' for v in vals[:5])} Å); reconstruct each optics group separately"
            )
        return float(vals[0])

    def subset(self, idx: np.ndarray | list[int]) -> ParticleMetadata:
        """Particles ``idx`` (0-based rows of *this* object), keeping original indices."""
        ix = np.asarray(idx, dtype=np.int64)
        if ix.size and (ix.min() < 0 or ix.max() >= len(self)):
            raise InputError(f"particle index out of range 0..{len(self) - 1} (got {ix.min()}..{ix.max()})")
        return replace(
            self,
            file_index=self.file_index[ix],
            image_index=self.image_index[ix],
            apix=self.apix[ix],
            ctf=None if self.ctf is None else self.ctf.subset(ix),
            rotations=None if self.rotations is None else self.rotations[ix],
            shifts_A=None if self.shifts_A is None else self.shifts_A[ix],
            optics_group=self.optics_group[ix],
            table=None if self.table is None else self.table.iloc[ix].reset_index(drop=True),
            original_index=self.original_index[ix],
        )

    def shifts_px(self) -> np.ndarray | None:
        """Shifts in pixels of the stored images (origin_A / apix)."""
        return None if self.shifts_A is None else self.shifts_A / self.apix[:, None]
