"""Writing outputs without destroying anything: the one place every writer command goes through.

The rules (``cryohet`` commands that write files follow all of them):

* :func:`check_output`, called before any long work: an output that IS one of the inputs
  (same path, a link to it, a hard link) is refused whatever the flags; an existing file or
  a non-empty folder is refused unless ``--overwrite`` is given; a folder output that holds
  an input (or is the folder of a run being read) is refused whatever the flags, because
  replacing the folder would delete it. Errors are one line naming the path (and the flag).
* Single files: :func:`atomic_write` (an open file) or :func:`atomic_path` (a temporary
  path, for writers that want a path) write beside the target and rename into place; after
  a failure the temporary file is removed (``try/finally``), the old file is untouched.
* Files that belong together (a map and its half maps): :func:`staged_files` renames them
  all at the end, or none when anything failed.
* Folders: :func:`staged_folder` writes into a hidden sibling ``.NAME.tmp-PID-XXXX`` and
  swaps it in as a whole (old folder renamed away, new one renamed in, old one removed),
  so a failure leaves either the old folder or the new one, never a mix, and no
  temporary folder.

Temporary names keep the target's suffix (``.map.tmp-123-ab12cd.mrc``): writers that pick
the format from the extension (matplotlib, ``np.save``) write the right thing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from ..errors import file_error

__all__ = [
    "OVERWRITE_FLAG",
    "same_file",
    "ensure_not_input",
    "check_output",
    "run_dir_inputs",
    "temporary_sibling",
    "atomic_path",
    "atomic_write",
    "staged_files",
    "staged_folder",
]

#: The command-line flag that allows replacing an existing output.
OVERWRITE_FLAG = "--overwrite"


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
            what = "folder" if Path(inp).is_dir() else "file"
            raise file_error(out, f"output would overwrite the input {what} {inp}; choose another output path")
    return out


def _exists(p: Path) -> bool:
    return p.exists() or p.is_symlink()


def _inside(inner: Path, folder: Path) -> bool:
    """``inner`` is ``folder`` or lies below it (after resolving symlinks)."""
    a, b = inner.resolve(), folder.resolve()
    return a == b or b in a.parents


def check_output(
    path: str | Path, inputs: Iterable[str | Path | None] = (), *, overwrite: bool = False, folder: bool = False
) -> Path:
    """Refuse (one-line :class:`~cryohet.errors.InputError`) an output that would destroy something.

    ``folder=False``: ``path`` is a file; refused when it is one of ``inputs`` (always),
    an existing folder (always) or an existing file (unless ``overwrite``).
    ``folder=True``: ``path`` is a folder that will be replaced as a whole; refused when it
    is, or holds, one of ``inputs`` (always; ``inputs`` may name folders, e.g. a run
    directory), when it is a file (always), or when it is not empty (unless ``overwrite``).
    An empty existing folder is fine. Returns ``Path(path)``.
    """
    out = Path(path)
    given = [Path(p) for p in inputs if p is not None]
    ensure_not_input(out, given)
    if folder:
        for inp in given:
            if _inside(inp, out):
                raise file_error(
                    out, f"holds the input {inp}; replacing the folder would overwrite it; choose another output folder"
                )
        if _exists(out):
            if not out.is_dir():
                raise file_error(out, "exists and is not a folder; choose another output folder")
            if any(out.iterdir()) and not overwrite:
                raise file_error(out, f"folder exists and is not empty; pass {OVERWRITE_FLAG} to replace it")
    else:
        if out.is_dir():
            raise file_error(out, "is a folder; give an output file name")
        if _exists(out) and not overwrite:
            raise file_error(out, f"exists; pass {OVERWRITE_FLAG} to replace it")
    return out


def run_dir_inputs(run: str | Path) -> list[Path]:
    """What an output must never replace when a command reads the run directory ``run``:
    the directory itself, its top-level files and the folders training writes
    (``checkpoints/``, ``extras/``, ``epochs/``). Its other subfolders (``analyze/``, ``eval/``) are outputs."""
    r = Path(run)
    if not r.is_dir():
        return [r]
    return [r, *sorted(f for f in r.iterdir() if f.is_file()), r / "checkpoints", r / "extras", r / "epochs"]


def temporary_sibling(path: str | Path, kind: str = "tmp") -> Path:
    """A fresh hidden name beside ``path``: ``dir/.STEM.KIND-PID-XXXXXX.SUFFIX`` (suffix kept)."""
    p = Path(path)
    suffix = p.suffix if p.suffix and p.stem else ""
    stem = p.name[: len(p.name) - len(suffix)] if suffix else p.name
    return p.parent / f".{stem}.{kind}-{os.getpid()}-{secrets.token_hex(3)}{suffix}"


def _make_parent(p: Path) -> None:
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise file_error(p.parent, f"cannot create the output folder ({err.strerror})") from None


def _remove(p: Path) -> None:
    """Delete a file, link or folder tree; never raises."""
    try:
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    except OSError:
        pass


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; the file written there replaces ``path`` when
    the block succeeds. On any failure (exception, full disk, interrupt) the temporary file
    is removed and ``path`` is untouched."""
    out = Path(path)
    _make_parent(out)
    tmp = temporary_sibling(out)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; it replaces ``path`` only if the block
    succeeds (readers never see a half-written file). Permissions follow the umask."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as fh:
        yield fh


@contextlib.contextmanager
def staged_files(paths: Iterable[str | Path]) -> Iterator[list[Path]]:
    """Temporary paths for files that belong together, renamed onto ``paths`` at the end of
    the block, all of them, or none when the block fails (the temporaries are removed)."""
    outs = [Path(p) for p in paths]
    for p in outs:
        _make_parent(p)
    tmps = [temporary_sibling(p) for p in outs]
    try:
        yield tmps
        missing = [str(o) for o, t in zip(outs, tmps) if not t.exists()]
        if missing:
            raise RuntimeError(f"staged_files: nothing was written for {', '.join(missing)}")
        for t, o in zip(tmps, outs):
            os.replace(t, o)
    finally:
        for t in tmps:
            _remove(t)


def _swap_in(work: Path, out: Path, overwrite: bool) -> None:
    """Put the finished folder ``work`` at ``out``; the old ``out`` is renamed away first and
    removed last, and put back if the new one cannot be renamed in."""
    if not _exists(out):
        os.rename(work, out)
        return
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        out.rmdir()
        os.rename(work, out)
        return
    if not overwrite:  # appeared while this command ran
        raise file_error(out, f"folder exists and is not empty; pass {OVERWRITE_FLAG} to replace it")
    old = temporary_sibling(out, "old")
    os.rename(out, old)
    try:
        os.rename(work, out)
    except BaseException:
        os.rename(old, out)
        raise
    _remove(old)


@contextlib.contextmanager
def staged_folder(
    path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()
) -> Iterator[Path]:
    """Yield a fresh hidden folder beside ``path`` to write the whole output into; at the end
    of the block it replaces ``path`` as a whole (see the module doc). When the block fails,
    the temporary folder is removed and ``path`` keeps its old content.

    The checks of :func:`check_output` (``folder=True``) run first.
    """
    out = check_output(path, inputs, overwrite=overwrite, folder=True)
    _make_parent(out)
    work = temporary_sibling(out)
    try:
        work.mkdir()
    except OSError as err:
        raise file_error(out.parent, f"cannot write here ({err.strerror})") from None
    try:
        yield work
        _swap_in(work, out, overwrite)
    finally:
        _remove(work)
