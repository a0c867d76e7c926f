"""Lazy, memory-mapped reads of images from many MRC stacks.

:class:`StackReader` maps each stack (:func:`cryohet.io.mrc.open_stack`) the first
time it is needed, in the process that needs it: after a ``fork`` (DataLoader workers)
the maps are re-opened, and pickling (``spawn`` workers) drops them, so every worker
holds its own. A batch is read with one numpy slice (contiguous indices) or one sorted
fancy index per stack, never one Python call per image.

After copying, the pages just read are released from this process's mapping
(``madvise(MADV_DONTNEED)`` on Linux; they stay in the kernel's page cache), so the
resident memory of a process streaming a 100 GB stack stays flat.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import file_error
from ..io.mrc import open_stack

__all__ = ["StackReader"]

_PAGE = mmap.PAGESIZE
_MADV_WILLNEED = 3
_MADV_DONTNEED = 4
_RELEASE_PAD = 2 << 20  # largest page-cache folio the kernel maps at once (PMD size)


def _load_libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.madvise.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


def _advise(arr: np.ndarray, lo: int, hi: int, advice: int, pad: int = _PAGE) -> None:
    """``madvise`` rows ``lo:hi`` of a (read-only, file-backed) memmap ``arr``.

    The byte range is widened to ``pad``-aligned boundaries but never beyond the pages
    of ``arr`` itself (so no other mapping is touched). Releasing with ``pad = 2 MiB``
    also drops the rest of any large page-cache folio the kernel mapped around a row.
    """
    if _LIBC is None or hi <= lo or arr.size == 0:
        return
    row = arr.strides[0]
    base = arr.ctypes.data
    first, end = base - base % _PAGE, base + arr.nbytes
    start, stop = base + lo * row, base + hi * row
    start = max(start - start % pad, first)
    stop = min(stop + (-stop) % pad, end)
    _LIBC.madvise(ctypes.c_void_p(start), ctypes.c_size_t(stop - start), advice)


class StackReader:
    """Reads images ``(file_index, image_index)`` from a list of MRC stacks as float32.

    Args:
        files: stack paths; ``file_index`` values index this list.
        release_pages: drop read pages from the process mapping after each read
            (keeps RSS flat on huge stacks; the page cache still serves re-reads).
        sparse_group: scattered (non-contiguous) rows are copied and released this
            many at a time.
    """

    def __init__(self, files: list[Path], release_pages: bool = True, sparse_group: int = 16) -> None:
        self.files = [Path(f) for f in files]
        self.release_pages = release_pages
        self.sparse_group = max(1, int(sparse_group))
        self._maps: dict[int, np.ndarray] = {}
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"] = {}  # never pickle a memmap (it would copy the whole stack)
        return state

    def stack(self, k: int) -> np.ndarray:
        """The ``(n, D, D)`` memmap of stack ``k``, opened in this process on first use."""
        if os.getpid() != self._pid:  # forked worker: open our own maps
            self._maps = {}
            self._pid = os.getpid()
        arr = self._maps.get(k)
        if arr is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # header oddities were reported when loading
                arr, _ = open_stack(self.files[k])
            self._maps[k] = arr
        return arr

    def close(self) -> None:
        """Forget the maps (they are unmapped once no array refers to them)."""
        self._maps = {}

    @staticmethod
    def _release(arr: np.ndarray, idx: np.ndarray) -> None:
        """Drop the pages of rows ``idx`` (sorted) from the mapping, one call per run."""
        breaks = np.flatnonzero(np.diff(idx) > 1) + 1
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(idx)]):
            _advise(arr, int(idx[a]), int(idx[b - 1]) + 1, _MADV_DONTNEED, _RELEASE_PAD)

    def read(self, file_index: np.ndarray, image_index: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Images in the given order, float32 ``(len, D, D)``.

        Reads are grouped per stack in sorted order: a contiguous range is one slice;
        scattered rows are taken ``sparse_group`` at a time (numpy ``take``, no Python
        call per image). An index beyond the stack is an InputError naming the stack.
        """
        fi = np.asarray(file_index, dtype=np.int64).reshape(-1)
        ii = np.asarray(image_index, dtype=np.int64).reshape(-1)
        n = len(fi)
        if n == 0:
            return np.empty((0, 0, 0), dtype=np.float32) if out is None else out
        order = np.lexsort((ii, fi))
        fs, is_ = fi[order], ii[order]
        first = self.stack(int(fs[0]))
        d = first.shape[-1]
        if out is None:
            out = np.empty((n, d, d), dtype=np.float32)
        identity = bool(np.all(order[1:] > order[:-1])) if n > 1 else True
        bounds = np.flatnonzero(np.diff(fs)) + 1
        for s, e in zip(np.r_[0, bounds], np.r_[bounds, n]):
            k = int(fs[s])
            arr = self.stack(k)
            idx = is_[s:e]
            if idx[0] < 0 or idx[-1] >= arr.shape[0]:
                raise file_error(
                    self.files[k], f"image {int(idx[-1]) + 1} requested but the stack holds {arr.shape[0]}"
                )
            lo, hi = int(idx[0]), int(idx[-1]) + 1
            if hi - lo == e - s and bool(np.all(np.diff(idx) == 1)):  # one contiguous range
                _advise(arr, lo, hi, _MADV_WILLNEED)  # one sequential read-ahead for the range
                if identity:
                    out[s:e] = arr[lo:hi]
                else:
                    out[order[s:e]] = arr[lo:hi]
                if self.release_pages:
                    _advise(arr, lo, hi, _MADV_DONTNEED, _RELEASE_PAD)
                continue
            # Scattered rows: a few at a time, so that the pages mapped meanwhile (the
            # kernel may map whole large folios, ~2 MB, per touched row) stay bounded.
            for g in range(s, e, self.sparse_group):
                h = min(g + self.sparse_group, e)
                sub = is_[g:h]
                if identity and arr.dtype == out.dtype:
                    np.take(arr, sub, axis=0, out=out[g:h], mode="clip")  # bounds checked above
                else:
                    out[order[g:h]] = arr[sub]
                if self.release_pages:
                    self._release(arr, sub)
        return out
