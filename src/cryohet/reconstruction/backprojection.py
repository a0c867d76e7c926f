"""Homogeneous reconstruction by CTF-weighted Fourier backprojection and a Wiener filter.

For images ``Y_j`` (centred DFTs, un-shifted by their origins), CTFs ``C_j`` and
rotations ``A_j``, the accumulator builds on a ``P = oversample * D`` grid

    N(q) = sum_j T_j^T [C_j Y_j](q)        W(q) = sum_j T_j^T [C_j^2](q)

where ``T_j^T`` is the trilinear scatter of the slice ``k3 = A_j^T (kx, ky, 0)`` (the
transpose of the projector's trilinear slice sampling, :mod:`cryohet.imaging.projection`).
The estimate is

    V(q) = N(q) / (W(q) + 1 / SNR(|q|))

(``SNR`` = per-image spectral signal-to-noise ratio at CTF 1; constant, per shell, or
derived from the half-map FSC), then the inverse FFT, a crop to ``D^3`` and the gridding
correction (division by ``sinc^2`` of the trilinear kernel, as the ratio of two
trilinear accumulations estimates the transform convolved with that kernel).

**Memory.** ``N`` and ``W`` of a real volume are Hermitian (``N(-q) = conj N(q)``), so only
the half space ``qx >= 0`` is stored: one real ``(P, P, P//2 + 1, 3)`` grid (Re N, Im N,
W; about ``12 * P^3 / 2`` bytes, 0.8 GB at D = 256). Every scattered point with ``qx < 0``
is folded to ``-q`` with its value conjugated; the plane ``qx = 0`` (and the Nyquist plane
``qx = P/2`` of an even grid), whose cells straddle the fold, is completed by its own
Hermitian mirror at :meth:`~BackprojectionAccumulator.finalize` time. This equals the
full-grid scatter plus its Hermitian mirror (``tests/test_reconstruction_backprojection.py``).
The grid's ``z`` and ``y`` axes are in FFT order (frequency ``f`` at index ``f mod P``,
``f`` in ``[-(P//2), P - 1 - P//2]``), so finalisation is a half-space inverse FFT done slab
by slab, keeping only the ``D`` output planes of each axis (:mod:`.finalize`).

Frequencies: ``q`` is in padded-grid units (``1/P`` cycles per voxel); output shell
``s = round(|q| D / P)`` is in Fourier pixels of the ``D^3`` map (``s / (D apix)`` 1/Å).
"""

from __future__ import annotations

import math

import torch

from ..imaging.ctf import compute_ctf, ctf_params_tensor
from ..imaging.fft import frequencies_1d
from ..training.distributed import all_reduce_sum_, get_dist
from . import finalize as fin

__all__ = ["BackprojectionAccumulator", "POINTS_PER_CHUNK"]

#: Slice samples scattered per chunk (bounds the per-chunk temporaries, ~100 B a point).
POINTS_PER_CHUNK = 1 << 20


class BackprojectionAccumulator:
    """Streams batches of images into the half-space numerator/weight grid; ``finalize`` gives a volume.

    Args:
        box: image and volume side ``D`` in pixels.
        apix: pixel size in Å (for shifts and CTF).
        oversample: Fourier padding factor ``P / D`` (default 2).
        device, dtype: of the accumulation grid (real ``(P, P, P//2 + 1, 3)``: Re N, Im N, W).
    """

    def __init__(self, box: int, apix: float, oversample: int = 2, device=None, dtype=torch.float32) -> None:
        self.box = int(box)
        self.apix = float(apix)
        self.padded = int(oversample) * self.box
        self.dtype = dtype
        p = self.padded
        self.grid = torch.zeros((p, p, p // 2 + 1, 3), dtype=dtype, device=device)
        self.n_images = 0
        self._plane = None  # cached slice-plane selection (rows, cols, kx, ky)

    @property
    def device(self) -> torch.device:
        return self.grid.device

    @property
    def oversample(self) -> int:
        return self.padded // self.box

    def _slice_plane(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows/columns of the padded image's half-plane DFT that can reach a kept voxel.

        A voxel is kept when its shell ``round(|q| D / P) <= D // 2``, i.e. ``|q| < P/2 + P/(2D)``
        grid units; a sample scatters to voxels within ``sqrt(3)`` of it. Samples farther
        out (the corners of the square image spectrum, ~20 % of them) are skipped: they
        would only reach voxels that :meth:`finalize` zeroes.
        """
        if self._plane is None:
            p, dev, dt = self.padded, self.device, self.dtype
            ky = frequencies_1d(p, 1.0, device=dev, dtype=dt)  # cycles/px, centred rows
            kx = torch.arange(p // 2 + 1, device=dev, dtype=dt) / p
            reach = (p / 2 + p / (2 * self.box) + math.sqrt(3.0)) / p
            keep = (kx[None, :] ** 2 + ky[:, None] ** 2) <= reach**2
            rows, cols = torch.nonzero(keep, as_tuple=True)
            self._plane = (rows, cols, kx[cols], ky[rows])
        return self._plane

    @torch.no_grad()
    def add(
        self,
        images: torch.Tensor,
        rotations: torch.Tensor,
        shifts_A: torch.Tensor | None = None,
        ctf_params: torch.Tensor | None = None,
    ) -> None:
        """Add real images ``(B, D, D)`` with RELION ``A`` ``(B, 3, 3)``, origins ``(B, 2)`` Å, CTF ``(B, 9)``.

        Images are zero-padded to ``P`` so that their transforms are sampled at the grid
        spacing (sampling at ``1/D`` would backproject ``D``-periodic copies that land
        inside the padded box). Only the half plane ``kx >= 0`` of each image is
        scattered (columns ``kx = 0`` and ``kx = P/2`` at half weight, being their own
        mirrors); the other half follows from Hermitian symmetry. Work is done in chunks
        of about :data:`POINTS_PER_CHUNK` samples, so memory does not grow with ``B``.
        """
        dev, dt = self.device, self.dtype
        imgs = torch.as_tensor(images)
        if imgs.shape[-2:] != (self.box, self.box):
            raise ValueError(f"images are {tuple(imgs.shape[-2:])}, accumulator box is {self.box}")
        rot = torch.as_tensor(rotations).to(device=dev, dtype=dt)
        shifts = None if shifts_A is None else torch.as_tensor(shifts_A).to(device=dev, dtype=dt)
        ctf = None if ctf_params is None else ctf_params_tensor(ctf_params, dev, dt)
        rows, cols, kx_s, ky_s = self._slice_plane()
        chunk = max(1, POINTS_PER_CHUNK // max(1, rows.numel()))
        for i in range(0, imgs.shape[0], chunk):
            sl = slice(i, i + chunk)
            values = self._sample_values(
                imgs[sl].to(device=dev, dtype=dt),
                None if shifts is None else shifts[sl],
                None if ctf is None else ctf[sl],
            )
            self._scatter(values, rot[sl], kx_s, ky_s)
        self.n_images += int(imgs.shape[0])

    def _sample_values(self, imgs: torch.Tensor, shifts: torch.Tensor | None, ctf: torch.Tensor | None) -> torch.Tensor:
        """``(b, M, 3)`` values (Re CY, Im CY, C^2) at the kept half-plane samples."""
        p, dt = self.padded, self.dtype
        before = p // 2 - self.box // 2
        padded = torch.nn.functional.pad(imgs, (before, p - self.box - before) * 2)
        # Centred DFT on the half plane: rows ky centred, columns kx = 0 .. P/2.
        F = torch.fft.fftshift(torch.fft.rfft2(torch.fft.ifftshift(padded, dim=(-2, -1))), dim=-2)
        del padded
        rows, cols, kx_s, ky_s = self._slice_plane()
        F = F[:, rows, cols]  # (b, M)
        if shifts is not None:
            ph = 2.0 * math.pi * (-shifts[:, :1] * kx_s[None] - shifts[:, 1:] * ky_s[None]) / self.apix
            F = F * torch.polar(torch.ones_like(ph), ph)
        # Columns kx = 0 and kx = P/2 are their own mirrors: count them half here.
        col = torch.where((cols == 0) | ((p % 2 == 0) & (cols == p // 2)), 0.5, 1.0).to(dt)
        if ctf is not None:
            c = compute_ctf(torch.stack([kx_s, ky_s], dim=-1) / self.apix, ctf)  # (b, M)
            F = F * (c * col)
            w = c * c * col
        else:
            w = col.expand(F.shape)
        return torch.stack([F.real, F.imag, w], dim=-1)

    def _scatter(self, values: torch.Tensor, rot: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor) -> None:
        """Trilinear scatter of ``values (b, M, 3)`` at ``k3 = A^T (kx, ky, 0)``, folded to ``qx >= 0``."""
        p = self.padded
        q = (kx[None, :, None] * rot[:, None, 0, :] + ky[None, :, None] * rot[:, None, 1, :]) * p  # (b, M, 3)
        sign = torch.where(q[..., 0] < 0, -1.0, 1.0).to(q.dtype)
        q = (q * sign[..., None]).reshape(-1, 3)
        v = values.reshape(-1, 3)
        v[:, 1] *= sign.reshape(-1)  # conjugate the folded samples
        del sign
        f = torch.floor(q)
        t = q - f
        i = f.to(torch.int64)
        del q, f
        lo, hi = -(p // 2), p - 1 - p // 2
        hx = p // 2 + 1
        axes = []  # per axis: (index, weight) of the lower and upper corner; invalid corners weigh 0
        for ax in range(3):
            i0, t_ax = i[:, ax], t[:, ax]
            pairs = []
            for d, w in ((0, 1.0 - t_ax), (1, t_ax)):
                j = i0 + d
                if ax == 0:
                    ok = j <= hx - 1
                    idx = j.clamp(max=hx - 1)
                else:
                    ok = (j >= lo) & (j <= hi)
                    idx = torch.remainder(j, p)
                pairs.append((idx, w * ok.to(w.dtype)))
            axes.append(pairs)
        del i, t
        flat = self.grid.view(-1, 3)
        (x0, x1), (y0, y1), (z0, z1) = axes
        for zi, wz in (z0, z1):
            for yi, wy in (y0, y1):
                zy = (zi * p + yi) * hx
                wzy = wz * wy
                for xi, wx in (x0, x1):
                    flat.index_add_(0, zy + xi, v * (wzy * wx)[:, None])

    def __iadd__(self, other: BackprojectionAccumulator) -> BackprojectionAccumulator:  # noqa: PYI034
        if (other.box, other.padded) != (self.box, self.padded):
            raise ValueError("cannot merge accumulators of different grids")
        self.grid += other.grid.to(self.device)
        self.n_images += other.n_images
        return self

    def all_reduce(self) -> BackprojectionAccumulator:
        """Sum the accumulations of every rank of a distributed run (each added its own
        images); no-op with one process. Returns self."""
        if get_dist().enabled:
            all_reduce_sum_(self.grid)
            count = all_reduce_sum_(torch.tensor([self.n_images], dtype=torch.int64))
            self.n_images = int(count[0])
        return self

    def merged(self, other: BackprojectionAccumulator) -> BackprojectionAccumulator:
        """A new accumulator holding both sets of images (a third grid: prefer
        ``finalize(others=[other])``, which sums slab by slab)."""
        out = BackprojectionAccumulator(self.box, self.apix, self.oversample, self.device, self.dtype)
        out += self
        out += other
        return out

    def mean_weight_per_shell(self, others: tuple[BackprojectionAccumulator, ...] = ()) -> torch.Tensor:
        """Average of the (Hermitian-completed) weights over the voxels of each shell ``0 .. D//2``
        (of this accumulator plus ``others``)."""
        return fin.mean_weight_per_shell([self, *others])

    def symmetrized(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Full centred ``(P, P, P)`` numerator and weight grids (for tests and inspection:
        ``P^3`` complex, do not call at large boxes). Index ``i`` is frequency ``i - P//2``."""
        return fin.full_grids(self)

    def shell_index(self) -> torch.Tensor:
        """``(P, P, P)`` centred shell of each grid point in output Fourier pixels,
        ``round(|q| D / P)`` (for tests, like :meth:`symmetrized`)."""
        c = (torch.arange(self.padded, device=self.device, dtype=self.dtype) - self.padded // 2) * (
            self.box / self.padded
        )
        z, y, x = torch.meshgrid(c, c, c, indexing="ij")
        return torch.round(torch.sqrt(x * x + y * y + z * z)).long()

    @torch.no_grad()
    def finalize(
        self,
        snr: float | torch.Tensor | None = None,
        min_weight: float = 1e-3,
        max_shell: int | None = None,
        others: tuple[BackprojectionAccumulator, ...] = (),
    ) -> torch.Tensor:
        """The reconstructed ``(D, D, D)`` volume (of this accumulator's images plus ``others``').

        Args:
            snr: per-image SNR for the Wiener term ``1/SNR``: a float, a per-shell tensor
                ``(D//2 + 1,)`` (shells beyond it take its last value), or None for no
                regularisation (plain ratio, for clean data).
            min_weight: floor of the denominator, relative to the mean weight of shell 1
                (guards grid points that no image reached).
            max_shell: Fourier components beyond this shell (output pixels) are set to
                zero; default ``D // 2`` (Nyquist sphere).
            others: accumulators of the same grid summed in (slab by slab: no third grid).
        """
        return fin.finalize_volume([self, *others], snr, min_weight, max_shell)
