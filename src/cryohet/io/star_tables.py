"""STAR files as tables: reading the loops (``starfile``) and writing one loop (pandas).

What :mod:`cryohet.io.star` builds on: :func:`read_star_tables` (the particle and optics
tables of a file, as text values parsed by ``starfile``), :func:`parse_image_names`
(``NNN@stack`` names) and :func:`write_loop` (a ``data_<name>`` loop in the layout
``starfile`` reads back, fast for 10^6 rows). No conventions are converted here.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from ..errors import file_error

__all__ = ["STAR_FLOAT_FORMAT", "STRING_COLUMNS", "read_star_tables", "parse_image_names", "write_loop"]

#: printf format of floats written to STAR files: 10 significant digits keeps angles to
#: 1e-7 degree and origins to 1e-7 Å without the noise digits of float32 inputs.
STAR_FLOAT_FORMAT = "%.10g"

#: Columns read as text even when they look numeric (names, paths).
STRING_COLUMNS = [
    "rlnImageName",
    "rlnMicrographName",
    "rlnOpticsGroupName",
    "rlnImageOriginalName",
    "rlnReconstructImageName",
    "rlnCtfImage",
    "rlnOriginalParticleName",
]


def read_star_tables(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The particle table and the optics table (None for RELION 3.0) of a STAR file.

    The particle block is ``data_particles``, else the only block, else the first
    block with an ``rlnImageName`` column.
    """
    p = Path(path)
    if not p.exists():
        raise file_error(p, "file not found")
    if p.is_dir():
        raise file_error(p, "is a directory, expected a STAR file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = starfile.read(p, always_dict=True, parse_as_string=STRING_COLUMNS)
    except Exception as err:  # noqa: BLE001 - any parser failure is a malformed file
        raise file_error(p, f"not a readable STAR file ({type(err).__name__}: {err})") from None
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    optics = tables.get("optics")
    if "particles" in tables:
        parts = tables["particles"]
    else:
        others = [v for k, v in tables.items() if k != "optics"]
        with_names = [v for v in others if "rlnImageName" in v.columns]
        if len(others) == 1:
            parts = others[0]
        elif with_names:
            parts = with_names[0]
        else:
            raise file_error(p, "no particle table (expected a data_particles loop with rlnImageName)")
    if len(parts) == 0:
        raise file_error(p, "the particle table is empty")
    if optics is not None and (len(optics) == 0 or "rlnOpticsGroup" not in optics.columns):
        raise file_error(p, "data_optics table has no rlnOpticsGroup column")
    return parts.reset_index(drop=True), None if optics is None else optics.reset_index(drop=True)


def parse_image_names(names: pd.Series, source: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Split ``NNN@path`` names: (0-based index (N,), path code (N,), unique path strings).

    A name without ``@`` is a single-image file (index 0).
    """
    s = names.astype(str).str.strip()
    parts = s.str.partition("@")
    has_at = parts[1] == "@"
    idx_str = parts[0].where(has_at, "1")
    path_str = parts[2].where(has_at, parts[0])
    idx = pd.to_numeric(idx_str, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(idx) | (idx != np.round(idx))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise file_error(source, f"rlnImageName '{s.iloc[row]}' (row {row + 1}) is not of the form NNN@stack.mrcs")
    if (idx < 1).any():
        row = int(np.flatnonzero(idx < 1)[0])
        raise file_error(
            source, f"rlnImageName '{s.iloc[row]}' (row {row + 1}) has index {int(idx[row])}; RELION indices start at 1"
        )
    empty = (path_str.str.len() == 0).to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise file_error(source, f"rlnImageName '{s.iloc[row]}' (row {row + 1}) names no stack file")
    codes, uniques = pd.factorize(path_str, sort=False)
    return idx.astype(np.int64) - 1, codes.astype(np.int64), [str(u) for u in uniques]


def quote_strings(col: pd.Series) -> pd.Series:
    """Strings with whitespace (or empty) in double quotes, as STAR requires."""
    text = col.astype(str)
    needs = text.str.contains(r"\s", regex=True) | (text == "")
    return text.where(~needs, '"' + text + '"') if needs.any() else text


def float32_text(values: np.ndarray) -> np.ndarray | None:
    """The shortest decimal text of each value when every value of the column is a float32
    (values read from a cryoSPARC ``.cs`` or a float32 array): ``2.7`` rather than the
    ``2.700000048`` that ``%.10g`` prints for ``float64(float32(2.7))``. None when some value
    is not a float32 (it is then printed at full precision)."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    with np.errstate(over="ignore"):
        v32 = v.astype(np.float32)
    if not np.array_equal(v32[finite].astype(np.float64), v[finite]):
        return None
    return v32.astype(str)


def write_loop(fh, name: str, df: pd.DataFrame, float_format: str | None = STAR_FLOAT_FORMAT) -> None:
    """One ``data_<name>`` loop in the layout ``starfile`` writes (and reads back).

    Written with pandas' CSV writer (fast for 10^6 rows); floats use ``float_format``
    (None: the shortest text that reads back as the same float64); strings with spaces
    are quoted.
    """
    fh.write(f"# version 30001\n\ndata_{name}\n\nloop_\n")
    for i, col in enumerate(df.columns, 1):
        fh.write(f"_{col} #{i}\n")
    body = df.copy(deep=False)
    for col in body.columns:
        if not pd.api.types.is_numeric_dtype(body[col]) or pd.api.types.is_bool_dtype(body[col]):
            body[col] = quote_strings(body[col])
        elif pd.api.types.is_float_dtype(body[col]) and float_format is not None:
            short = float32_text(body[col].to_numpy())
            if short is not None:
                body[col] = short
    body.to_csv(fh, sep="\t", header=False, index=False, float_format=float_format, quoting=csv.QUOTE_NONE)
    fh.write("\n\n")
