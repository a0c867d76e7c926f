"""Where particle files are, and where outputs may go.

* :func:`resolve_data_path` finds a stack named inside a metadata file (STAR
  ``rlnImageName``, cryoSPARC ``blob/path``), trying candidates in a fixed order and
  returning the first that exists (or the first candidate, so errors name a real guess).
* :func:`ensure_not_input` refuses an output path that is one of the inputs (after
  resolving symlinks); it and the other output rules live in :mod:`.outputs` and are
  re-exported here.
* :func:`path_for_metadata` writes a stack path relative to an output file's folder
  when the stack lies inside it, absolute otherwise.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .outputs import atomic_write, ensure_not_input, same_file

__all__ = [
    "candidate_paths",
    "resolve_data_path",
    "ensure_not_input",
    "path_for_metadata",
    "relative_to_output",
    "same_file",
    "atomic_write",
]


def candidate_paths(name: str, base_dir: Path, datadir: Path | None, layout: str = "star") -> list[Path]:
    """Places to look for a stack named ``name`` in a metadata file in ``base_dir``.

    ``layout="star"`` (cryoDRGN's order): ``base_dir/name``, ``datadir/name``,
    ``datadir/basename``. ``layout="cs"`` (cryoSPARC project layouts, where ``name``
    is relative to the project folder one level above the job folder):
    ``datadir/name``, ``datadir/basename``, then the project ``base_dir/../name`` before
    ``base_dir/name`` when ``base_dir`` is a job folder (``J123``; the other way round
    otherwise), then ``base_dir/basename``. Absolute names are tried as given first.
    """
    p = Path(name)
    out: list[Path] = []
    if p.is_absolute():
        out.append(p)
    base = p.name
    if layout == "star":
        out.append(base_dir / p)
        if datadir is not None:
            out += [datadir / p, datadir / base]
    elif layout == "cs":
        if datadir is not None:
            out += [datadir / p, datadir / base]
        if re.fullmatch(r"J\d+", base_dir.name):  # a job folder: names are relative to the project above it
            out += [base_dir.parent / p, base_dir / p, base_dir / base]
        else:
            out += [base_dir / p, base_dir.parent / p, base_dir / base]
    else:
        raise ValueError(f"unknown layout {layout!r}")
    seen: set[Path] = set()
    unique = []
    for c in out:
        if c not in seen:
            seen.add(c)
            unique.append(c)
    return unique


def resolve_data_path(name: str, base_dir: Path, datadir: str | Path | None = None, layout: str = "star") -> Path:
    """First existing candidate of :func:`candidate_paths` (absolute), else the first
    candidate (so a "not found" error names the most likely place)."""
    dd = None if datadir is None else Path(datadir).expanduser()
    cands = candidate_paths(name, Path(base_dir), dd, layout)
    for c in cands:
        if c.is_file():
            return Path(os.path.abspath(c))
    return Path(os.path.abspath(cands[0]))


def relative_to_output(target: str | Path, out_dir: str | Path) -> str:
    """``target`` relative to ``out_dir`` (``../stacks/a.mrcs`` too), as RELION writes paths:
    the output and its stacks can move together. Absolute only when no relative path
    exists (another drive)."""
    try:
        return Path(os.path.relpath(os.path.abspath(target), os.path.abspath(out_dir))).as_posix()
    except ValueError:
        return Path(os.path.abspath(target)).as_posix()


def path_for_metadata(target: str | Path, out_dir: str | Path) -> str:
    """``target`` relative to ``out_dir`` when it lies inside it, else absolute."""
    t = Path(os.path.abspath(target))
    d = Path(os.path.abspath(out_dir))
    try:
        return t.relative_to(d).as_posix()
    except ValueError:
        return t.as_posix()
