"""Particle images as a torch ``Dataset``: lazy, memory-mapped, optionally downsampled
and normalised, with CTF and poses alongside.

Batches (:meth:`ParticleDataset.get_batch`) and items (a batch of one) are
:class:`~cryohet.data.batch.ParticleBatch` objects: ``index`` (rows of *this* dataset),
``images`` ``(B, D, D)`` at the dataset's box, ``ctf_params`` ``(B, 9)``, ``rotations``
``(B, 3, 3)`` RELION ``A`` and ``shifts_A`` ``(B, 2)`` RELION origins in Å (None where the
data has no CTF or no poses).

Downsampling is Fourier cropping (:func:`cryohet.imaging.fft.fourier_downsample_images`):
the pixel size becomes ``apix * D0 / D`` (``dataset.apix``, per particle); shifts in Å
are unchanged. Normalisation subtracts each image's mean and divides by one std for the
whole dataset, estimated from a random sample of at most ``std_sample`` images.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import file_error
from ..imaging.fft import fourier_downsample_images
from ..io.metadata import ParticleMetadata
from .batch import ParticleBatch
from .reader import StackReader

__all__ = ["ParticleDataset"]

_FFT_PIECE = 128  # images per FFT call: bounds the complex temporaries of big chunks


def _downsample_in_pieces(t: torch.Tensor, box: int) -> torch.Tensor:
    """:func:`fourier_downsample_images` over at most ``_FFT_PIECE`` images at a time."""
    if len(t) <= _FFT_PIECE:
        return fourier_downsample_images(t, box)
    out = t.new_empty((len(t), box, box))
    for s in range(0, len(t), _FFT_PIECE):
        out[s : s + _FFT_PIECE] = fourier_downsample_images(t[s : s + _FFT_PIECE], box)
    return out


class ParticleDataset(Dataset):
    """Images of a :class:`ParticleMetadata` set, read lazily from memory-mapped stacks.

    Args:
        meta: the particle set (stacks must exist; see ``load_particles``).
        box: output box in pixels (Fourier-cropped when smaller than ``meta.box``).
        indices: rows of ``meta`` to keep (``original_index`` is kept).
        normalize: subtract per-image means and divide by the dataset-wide std.
        invert: multiply images by -1 (applied before normalising).
        std: the std to divide by (skip the estimate, e.g. to share one between splits).
        std_sample: at most this many random images estimate the std.
        seed: for the std sample.
        check_finite: raise on NaN/Inf pixels in every image read.
    """

    def __init__(
        self,
        meta: ParticleMetadata,
        *,
        box: int | None = None,
        indices: np.ndarray | list[int] | None = None,
        normalize: bool = False,
        invert: bool = False,
        std: float | None = None,
        std_sample: int = 1000,
        seed: int = 0,
        check_finite: bool = True,
    ) -> None:
        if indices is not None:
            meta = meta.subset(np.asarray(indices, dtype=np.int64))
        if len(meta) == 0:
            raise file_error(meta.source or "particles", "no particles to read")
        if meta.box <= 0:
            raise file_error(meta.source or "particles", "box size unknown (stacks not checked or not found)")
        self.meta = meta
        self.raw_box = int(meta.box)
        self.box = int(box) if box is not None else self.raw_box
        if self.box > self.raw_box or self.box < 2:
            raise file_error(
                meta.source or "particles",
                f"cannot downsample {self.raw_box}-pixel images to a box of {self.box} "
                f"(-D/--box takes 2 to {self.raw_box})",
            )
        self.apix = meta.apix * self.raw_box / self.box  # Å/px after Fourier cropping
        self.invert = invert
        self.normalize = normalize
        self.check_finite = check_finite
        self.reader = StackReader(meta.image_files)
        self._ctf = None if meta.ctf is None else torch.from_numpy(meta.ctf.as_array().astype(np.float32))
        self._rot = None if meta.rotations is None else torch.from_numpy(meta.rotations.astype(np.float32))
        self._shift = None
        if meta.rotations is not None:
            sh = meta.shifts_A if meta.shifts_A is not None else np.zeros((len(meta), 2))
            self._shift = torch.from_numpy(sh.astype(np.float32))
        self.std = 1.0
        if normalize:
            self.std = float(std) if std is not None else self.estimate_std(std_sample, seed)
            if not np.isfinite(self.std) or self.std <= 0:
                raise file_error(
                    meta.source or "particles", f"images have zero or undefined standard deviation ({self.std})"
                )

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.meta)

    @property
    def has_poses(self) -> bool:
        return self._rot is not None

    @property
    def has_ctf(self) -> bool:
        return self._ctf is not None

    def subset(self, rows: np.ndarray | list[int]) -> ParticleDataset:
        """A dataset of rows ``rows`` sharing this one's box, flags and std."""
        return ParticleDataset(
            self.meta,
            box=self.box,
            indices=rows,
            normalize=self.normalize,
            invert=self.invert,
            std=self.std if self.normalize else None,
            check_finite=self.check_finite,
        )

    def with_poses(self, rotations: np.ndarray, shifts_A: np.ndarray) -> ParticleDataset:
        """This dataset (same rows, box, flags and std) with other poses, e.g. those a run
        estimated: ``rotations (N, 3, 3)`` RELION ``A`` matrices (acting on the map's
        coordinates), ``shifts_A (N, 2)`` RELION origins in Å."""
        meta = replace(self.meta, rotations=np.asarray(rotations), shifts_A=np.asarray(shifts_A))
        return ParticleDataset(
            meta,
            box=self.box,
            normalize=self.normalize,
            invert=self.invert,
            std=self.std if self.normalize else None,
            check_finite=self.check_finite,
        )

    def storage_order(self) -> np.ndarray:
        """Rows sorted by (stack, image): reading in this order is sequential."""
        return np.lexsort((self.meta.image_index, self.meta.file_index))

    # ------------------------------------------------------------------ reading
    def read_raw(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """Unprocessed float32 images ``(B, D0, D0)`` of ``rows``, in that order."""
        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        if r.size and (r.min() < 0 or r.max() >= len(self)):
            raise IndexError(f"rows out of range 0..{len(self) - 1}")
        imgs = self.reader.read(self.meta.file_index[r], self.meta.image_index[r])
        if self.check_finite:
            self._check_finite(imgs, r)
        return imgs

    def _check_finite(self, imgs: np.ndarray, rows: np.ndarray) -> None:
        bad = ~np.isfinite(imgs)
        if not bad.any():
            return
        per_image = bad.reshape(len(imgs), -1).sum(axis=1)
        first = int(np.flatnonzero(per_image)[0])
        row = int(rows[first])
        stack = self.meta.image_files[self.meta.file_index[row]]
        raise file_error(
            stack,
            f"{int(per_image.sum())} NaN/Inf pixels in {int((per_image > 0).sum())} image(s) "
            f"(first: image {int(self.meta.image_index[row]) + 1}, 1-based)",
        )

    def process(self, imgs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw images -> the dataset's images: downsample, invert, normalise (float32)."""
        t = torch.as_tensor(imgs, dtype=torch.float32)
        if self.box != self.raw_box:
            t = _downsample_in_pieces(t, self.box)
        if self.invert:
            t = -t
        if self.normalize:
            t = (t - t.mean(dim=(-2, -1), keepdim=True)) / self.std
        return t.contiguous()

    def get_batch(self, rows: np.ndarray | list[int]) -> ParticleBatch:
        """The particles ``rows``, in that order (see the module docstring)."""
        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        rt = torch.from_numpy(r)
        return ParticleBatch(
            index=torch.from_numpy(r.copy()),
            images=self.process(self.read_raw(r)),
            ctf_params=None if self._ctf is None else self._ctf[rt],
            rotations=None if self._rot is None else self._rot[rt],
            shifts_A=None if self._rot is None else self._shift[rt],
        )

    def __getitem__(self, i: int) -> ParticleBatch:
        """Particle ``i`` as a batch of one."""
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} particles")
        return self.get_batch([i])

    # ------------------------------------------------------------------ statistics
    def estimate_std(self, n_sample: int = 1000, seed: int = 0) -> float:
        """Std of mean-subtracted (downsampled, inverted) images from a random sample."""
        rng = np.random.default_rng(seed)
        n = min(n_sample, len(self))
        rows = np.sort(rng.choice(len(self), size=n, replace=False))
        acc, count = 0.0, 0
        for s in range(0, n, 256):
            t = torch.as_tensor(self.read_raw(rows[s : s + 256]))
            if self.box != self.raw_box:
                t = _downsample_in_pieces(t, self.box)
            t = t - t.mean(dim=(-2, -1), keepdim=True)
            acc += float((t.double() ** 2).sum())
            count += t.numel()
        return float(np.sqrt(acc / max(count, 1)))

    def validate(self, chunk: int = 1024) -> int:
        """Read every image once, in storage order; raise listing the NaN/Inf pixels.

        Returns the number of images checked. Memory use is one chunk.
        """
        order = self.storage_order()
        bad_pixels = np.zeros(len(self.meta.image_files), dtype=np.int64)
        bad_images = np.zeros_like(bad_pixels)
        first_bad: dict[int, int] = {}
        for s in range(0, len(order), chunk):
            rows = order[s : s + chunk]
            imgs = self.reader.read(self.meta.file_index[rows], self.meta.image_index[rows])
            per_image = (~np.isfinite(imgs)).reshape(len(imgs), -1).sum(axis=1)
            for j in np.flatnonzero(per_image):
                k = int(self.meta.file_index[rows[j]])
                bad_pixels[k] += per_image[j]
                bad_images[k] += 1
                first_bad.setdefault(k, int(self.meta.image_index[rows[j]]) + 1)
        if bad_pixels.any():
            ks = np.flatnonzero(bad_pixels)
            k = int(ks[0])
            more = f"; {len(ks) - 1} more stacks have NaN/Inf pixels" if len(ks) > 1 else ""
            raise file_error(
                self.meta.image_files[k],
                f"{int(bad_pixels[k])} NaN/Inf pixels in {int(bad_images[k])} image(s) "
                f"(first: image {first_bad[k]}, 1-based){more}",
            )
        return len(order)
