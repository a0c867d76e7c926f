"""Where particle files are, and where outputs may go.

* :func:`resolve_data_path` finds a stack named inside a metadata file (STAR
  ``rlnImageName``, cryoSPARC ``blob/path``), trying candidates in a fixed order and
  returning the first that exists (or the first candidate, so errors name a real guess).
* :func:`ensure_not_input` refuses an output path that is one of the inputs (after
  resolving symlinks): every writer the CLI calls goes through it.
* :func:`path_for_metadata` writes a stack path relative to an output file's folder
  when the stack lies inside it, absolute otherwise.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from ..errors import file_error

__all__ = [
    "candidate_paths",
    "resolve_data_path",
    "ensure_not_input",
    "path_for_metadata",
    "same_file",
    "atomic_write",
]


def candidate_paths(name: str, base_dir: Path, datadir: Path | None, layout: str = "star") -> list[Path]:
    """Places to look for a stack named ``name`` in a metadata file in ``base_dir``.

    ``layout="star"`` (cryoDRGN's order): ``base_dir/name``, ``datadir/name``,
    ``datadir/basename``. ``layout="cs"`` (cryoSPARC project layouts, where ``name``
    is relative to the project folder one level above the job folder):
    ``datadir/name``, ``datadir/basename``, ``base_dir/name``, ``base_dir/../name``,
    ``base_dir/basename``. Absolute names are tried as given first.
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


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` are the same file (symlinks and hard links resolved)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def ensure_not_input(output_path: str | Path, input_paths: Iterable[str | Path | None]) -> Path:
    """Raise :class:`~cryohet.errors.InputError` when ``output_path`` is one of the inputs.

    Paths are compared after resolving symlinks (and by inode when both exist), so a
    link to an input or ``./x/../input.star`` is caught too. Returns ``output_path``.
    """
    out = Path(output_path)
    for inp in input_paths:
        if inp is None:
            continue
        if same_file(out, inp):
            raise file_error(out, f"output would overwrite the input file {inp}; choose another output path")
    return out


def path_for_metadata(target: str | Path, out_dir: str | Path) -> str:
    """``target`` relative to ``out_dir`` when it lies inside it, else absolute."""
    t = Path(os.path.abspath(target))
    d = Path(os.path.abspath(out_dir))
    try:
        return t.relative_to(d).as_posix()
    except ValueError:
        return t.as_posix()


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; it replaces ``path`` only if the block
    succeeds (readers never see a half-written file). Permissions follow the umask."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
