"""Loading pickles without executing code.

cryoDRGN's ``poses.pkl``, ``ctf.pkl``, ``ind.pkl`` and ``z.pkl`` are pickles of numpy
arrays, tuples and lists. A pickle can name any importable callable, so an untrusted
one can run arbitrary code when loaded. :func:`load_pickle` uses an unpickler that
resolves *only* the handful of globals numpy needs to rebuild an ``ndarray`` and its
dtype; anything else is refused with a one-line :class:`~cryohet.errors.InputError`.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import file_error
from .outputs import atomic_write

__all__ = ["load_pickle", "save_pickle"]

# (module, name) pairs needed to reconstruct numpy arrays/scalars across numpy 1.x/2.x.
_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "tuple"),
        ("builtins", "list"),
        ("builtins", "bytearray"),
        ("_codecs", "encode"),  # numpy arrays pickled by Python 2 / protocol 2 store bytes this way
    }
)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load '{module}.{name}'")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids")


def _check_content(obj: Any) -> None:
    """Only arrays, numbers, tuples and lists of those are accepted."""
    if isinstance(obj, (tuple, list)):
        for item in obj:
            _check_content(item)
    elif isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise pickle.UnpicklingError("refusing an array of Python objects")
    elif not isinstance(obj, (int, float, np.generic)):
        raise pickle.UnpicklingError(f"refusing a {type(obj).__name__}")


def load_pickle(path: str | Path) -> Any:
    """Load a pickle holding numpy arrays, tuples and lists only; never runs code.

    Several consecutive pickles in one file (cryoDRGN's ``z.pkl`` stores mu then logvar)
    are returned as a tuple; a single pickle is returned as is.
    """
    p = Path(path)
    if not p.exists():
        raise file_error(p, "file not found")
    raw = p.read_bytes()
    buf = io.BytesIO(raw)
    objs: list[Any] = []
    try:
        while buf.tell() < len(raw):
            obj = _ArrayOnlyUnpickler(buf, encoding="latin1").load()
            _check_content(obj)
            objs.append(obj)
    except pickle.UnpicklingError as err:
        raise file_error(
            p, f"unsafe or unsupported pickle: {err} (only numpy arrays, tuples and lists are read)"
        ) from None
    except (EOFError, ValueError, TypeError, IndexError, AttributeError) as err:
        raise file_error(p, f"not a readable pickle ({type(err).__name__}: {err})") from None
    if not objs:
        raise file_error(p, "empty pickle file")
    return objs[0] if len(objs) == 1 else tuple(objs)


def save_pickle(path: str | Path, obj: Any) -> Path:
    """Write arrays/tuples with protocol 4 (readable by cryoDRGN and RECOVAR), atomically."""
    p = Path(path)
    with atomic_write(p, "wb") as fh:
        pickle.dump(obj, fh, protocol=4)
    return p
