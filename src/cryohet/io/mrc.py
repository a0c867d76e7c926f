"""MRC / MRCS files (MRC2014) through ``mrcfile``.

Arrays are numpy-ordered ``(z, y, x)`` for volumes and ``(n, y, x)`` for stacks, float32.
The voxel size is written to the header (``cella = shape * apix``) and read back from
it; the header ``origin`` is in Å. Stacks are written with ``ispg = 0`` and volumes with
``ispg = 1``. Files with non-standard headers (no map ID, zero machine stamp) are read
in permissive mode with a warning instead of failing.
"""

from __future__ import annotations

import errno
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
from mrcfile.utils import data_dtype_from_header

from ..errors import file_error
from .outputs import atomic_path, temporary_sibling

__all__ = [
    "MrcInfo",
    "read_mrc_header",
    "open_stack",
    "read_volume",
    "write_volume",
    "write_stack",
    "new_stack_mmap",
    "StackWriter",
]


@dataclass(frozen=True)
class MrcInfo:
    """What the header says. ``shape`` is numpy order; ``apix`` in Å/px (x axis)."""

    path: Path
    shape: tuple[int, ...]
    apix: float
    origin_A: tuple[float, float, float]
    is_stack: bool
    dtype: np.dtype


def _open(path: Path, mode: str = "mmap"):
    """Open with ``mrcfile``, falling back to permissive mode for odd headers."""
    if not path.exists():
        raise file_error(path, "file not found")
    if path.is_dir():
        raise file_error(path, "is a directory, expected an MRC file")
    opener = mrcfile.mmap if mode == "mmap" else mrcfile.open
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # header irregularities -> retry permissively
            return opener(path, mode="r")
    except Exception as strict_err:  # noqa: BLE001 - we re-raise as a clear error below
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                handle = opener(path, mode="r", permissive=True)
        except Exception as err:  # noqa: BLE001
            raise _unreadable(path, err) from None
        if handle.data is None:
            handle.close()
            raise _unreadable(path, strict_err) from None
        expected = _expected_bytes(handle)
        if expected is not None and path.stat().st_size < expected:
            handle.close()
            raise file_error(path, "truncated MRC file: fewer data bytes than the header declares") from None
        reasons = "; ".join(str(w.message) for w in caught) or str(strict_err)
        warnings.warn(f"{path}: non-standard MRC header, read permissively ({reasons})", stacklevel=3)
        return handle


def _unreadable(path: Path, err: Exception):
    """The error for a file mrcfile cannot open: "truncated" when it is shorter than
    its header declares, "out of memory" when the map could not be mapped, else "not a
    readable MRC file"."""
    if getattr(err, "errno", None) == errno.ENOMEM or isinstance(err, MemoryError):
        return file_error(path, "cannot be mapped into memory: out of memory (address space); raise the memory limit")
    declared = _declared_bytes(path)
    size = path.stat().st_size
    if declared is not None and size < declared:
        return file_error(path, f"truncated MRC file: {size} bytes, the header declares {declared}")
    return file_error(path, f"not a readable MRC file ({err})")


def _declared_bytes(path: Path) -> int | None:
    """File size the header promises (header + extended header + data), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", header_only=True, permissive=True) as h:
                hd = h.header
                itemsize = data_dtype_from_header(hd).itemsize
                return 1024 + int(hd.nsymbt) + int(hd.nx) * int(hd.ny) * int(hd.nz) * itemsize
    except Exception:  # noqa: BLE001
        return None


def _expected_bytes(handle) -> int | None:
    try:
        h = handle.header
        n = int(h.nx) * int(h.ny) * int(h.nz)
        return 1024 + int(h.nsymbt) + n * handle.data.dtype.itemsize
    except Exception:  # noqa: BLE001
        return None


def _info_from_handle(path: Path, handle) -> MrcInfo:
    h = handle.header
    data = handle.data
    shape = tuple(int(s) for s in data.shape)
    vx = float(handle.voxel_size.x)
    is_stack = bool(handle.is_image_stack()) or (
        int(h.ispg) == 0 and len(shape) == 3 and path.suffix.lower() == ".mrcs"
    )
    origin = (float(h.origin.x), float(h.origin.y), float(h.origin.z))
    return MrcInfo(path=path, shape=shape, apix=vx, origin_A=origin, is_stack=is_stack, dtype=data.dtype)


def read_mrc_header(path: str | Path) -> MrcInfo:
    """Shape, pixel size, origin and stack/volume flag, without reading the data."""
    p = Path(path)
    with _open(p, "mmap") as handle:
        return _info_from_handle(p, handle)


def open_stack(path: str | Path) -> tuple[np.ndarray, MrcInfo]:
    """Memory-map an image stack; returns a read-only ``(n, y, x)`` array and its header.

    A single 2D image is returned as a stack of one. The map stays valid as long as the
    returned array is referenced (``mrcfile`` keeps the file mapped).
    """
    p = Path(path)
    handle = _open(p, "mmap")
    info = _info_from_handle(p, handle)
    data = handle.data
    if data.ndim == 2:
        data = data[None]
    # A cube whose header says "volume" (ispg=1) is a map, not a stack of images.
    declared_volume = (
        data.ndim == 3
        and int(handle.header.ispg) == 1
        and data.shape[0] == data.shape[1] == data.shape[2]
        and p.suffix.lower() != ".mrcs"  # an explicit stack name wins over the header flag
    )
    if data.ndim != 3 or declared_volume:
        handle.close()
        what = (
            "a 3D volume (cubic, header ispg=1; name it .mrcs if it is a stack)"
            if declared_volume
            else f"an array of shape {data.shape}"
        )
        raise file_error(p, f"expected a 2D image stack, got {what}")
    if data.shape[1] != data.shape[2]:
        handle.close()
        raise file_error(p, f"images are not square ({data.shape[1]}x{data.shape[2]} pixels)")
    # The numpy memmap keeps the mapping alive after the file handle is closed.
    handle.close()
    return data, MrcInfo(info.path, tuple(data.shape), info.apix, info.origin_A, True, data.dtype)


def read_volume(path: str | Path) -> tuple[np.ndarray, MrcInfo]:
    """Read a 3D volume ``(z, y, x)`` as float32 into memory, with its header info."""
    p = Path(path)
    with _open(p, "open") as handle:
        info = _info_from_handle(p, handle)
        data = np.array(handle.data, dtype=np.float32)
    if data.ndim != 3:
        raise file_error(p, f"expected a 3D volume, got an array of shape {data.shape}")
    if not np.isfinite(data).all():
        raise file_error(p, f"volume holds {int((~np.isfinite(data)).sum())} NaN/Inf voxels")
    return data, info


def write_volume(
    path: str | Path,
    volume: np.ndarray,
    apix: float,
    origin_A: tuple[float, float, float] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a ``(z, y, x)`` float32 volume with voxel size ``apix`` Å (``ispg = 1``).

    ``origin_A`` defaults to (0, 0, 0) so the map sits where RELION, cryoDRGN and
    ChimeraX expect a box-centred reconstruction. The file is written atomically.
    """
    p = Path(path)
    vol = np.ascontiguousarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise ValueError(f"write_volume expects a 3D array, got shape {vol.shape}")
    if not overwrite and p.exists():
        raise file_error(p, "exists; refusing to overwrite")
    with atomic_path(p) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(vol)
        mrc.set_volume()
        mrc.voxel_size = float(apix)
        o = origin_A or (0.0, 0.0, 0.0)
        mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = o
        mrc.update_header_stats()
    return p


def write_stack(path: str | Path, images: np.ndarray, apix: float, overwrite: bool = True) -> Path:
    """Write an ``(n, y, x)`` float32 image stack (``.mrcs``, ``ispg = 0``) atomically."""
    p = Path(path)
    imgs = np.ascontiguousarray(images, dtype=np.float32)
    if imgs.ndim != 3:
        raise ValueError(f"write_stack expects (n, y, x), got shape {imgs.shape}")
    if not overwrite and p.exists():
        raise file_error(p, "exists; refusing to overwrite")
    with atomic_path(p) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(imgs)
        mrc.set_image_stack()
        mrc.voxel_size = float(apix)
        mrc.update_header_stats()
    return p


def new_stack_mmap(path: str | Path, n: int, box: int, apix: float):
    """Create an empty float32 stack on disk and return the open ``mrcfile`` handle.

    For writing stacks larger than memory: fill ``handle.data[i0:i1] = ...`` chunk by
    chunk, then call ``handle.update_header_stats()`` and ``handle.close()``.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    handle = mrcfile.new_mmap(p, shape=(n, box, box), mrc_mode=2, overwrite=True)
    handle.set_image_stack()
    handle.voxel_size = float(apix)
    return handle


class StackWriter:
    """Stream a float32 image stack to disk chunk by chunk with flat memory.

    The header (``ispg = 0``, voxel size ``apix``) is written first, the data with
    positioned writes (not through a memory map, so written pages never count toward
    the process's memory), and the header statistics (min, max, mean, rms) at
    :meth:`close`. The file appears at ``path`` only when complete (atomic rename)::

        with StackWriter(path, n, box, apix) as w:
            w.write(0, images[:100])
            w.write(100, images[100:])
    """

    def __init__(self, path: str | Path, n: int, box: int, apix: float) -> None:
        self.path = Path(path)
        self.n, self.box, self.apix = int(n), int(box), float(apix)
        if self.n <= 0 or self.box <= 0:
            raise ValueError(f"StackWriter needs n > 0 and box > 0, got n={n}, box={box}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_sibling(self.path)
        self._fd = -1
        try:
            handle = mrcfile.new_mmap(self._tmp, shape=(self.n, self.box, self.box), mrc_mode=2, overwrite=False)
            handle.set_image_stack()
            handle.voxel_size = self.apix
            self._offset = 1024 + int(handle.header.nsymbt)
            handle.close()
            self._fd = os.open(self._tmp, os.O_WRONLY)
        except BaseException:
            self.abort()
            raise
        self._written = 0
        self._min, self._max, self._sum, self._sumsq = np.inf, -np.inf, 0.0, 0.0

    def write(self, start: int, images: np.ndarray) -> None:
        """Write ``images`` (k, box, box) at slices ``start .. start + k - 1``."""
        imgs = np.ascontiguousarray(images, dtype=np.float32)
        if imgs.ndim != 3 or imgs.shape[1:] != (self.box, self.box):
            raise ValueError(f"expected (k, {self.box}, {self.box}) images, got {imgs.shape}")
        if start < 0 or start + len(imgs) > self.n:
            raise ValueError(f"slices {start}..{start + len(imgs) - 1} outside the stack of {self.n}")
        os.pwrite(self._fd, imgs.tobytes(), self._offset + start * self.box * self.box * 4)
        if imgs.size:
            self._min = min(self._min, float(imgs.min()))
            self._max = max(self._max, float(imgs.max()))
            self._sum += float(imgs.sum(dtype=np.float64))
            self._sumsq += float(np.square(imgs, dtype=np.float64).sum())
        self._written += len(imgs)

    def close(self) -> Path:
        """Finish the header statistics and move the file into place."""
        if self._fd < 0:
            return self.path
        os.close(self._fd)
        self._fd = -1
        count = self.n * self.box * self.box
        try:
            with mrcfile.mmap(self._tmp, mode="r+") as handle:
                mean = self._sum / count
                handle.header.dmin = self._min if np.isfinite(self._min) else 0.0
                handle.header.dmax = self._max if np.isfinite(self._max) else 0.0
                handle.header.dmean = mean
                handle.header.rms = float(np.sqrt(max(self._sumsq / count - mean * mean, 0.0)))
            os.replace(self._tmp, self.path)
        finally:
            Path(self._tmp).unlink(missing_ok=True)  # gone after the rename; removed after a failure
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> StackWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
