"""Fourier bands: which frequencies of a ``D x D`` image a comparison or a render uses.

A :class:`FourierBand` is a rectangular grid of frequencies ``ky (Ny,) x kx (Nx,)`` of the
image's centred DFT (:func:`cryohet.imaging.fft.fft2_centered`: zero frequency at index
``D // 2``), with a weight per pixel. Frequencies are held twice, in cycles per pixel
(``*_per_px``) and in 1/Å (``*_per_A``, the same integers divided by ``D * apix``). Every
representation answers its central slices on a band
(:meth:`cryohet.representations.base.SliceSource.slices`), and every likelihood sums
over one (:mod:`.likelihood`), so a search, a training step and a reconstruction that
share a band cannot disagree about which frequencies count.

Images are real, so their DFT is Hermitian (``Y(-k) = conj Y(k)``) and the half plane
``kx >= 0`` holds everything. Two weightings of that half plane are in use, chosen by
name (``hermitian``):

* ``"parseval"`` (:meth:`FourierBand.disc`, CryoSPIRE's data term): weight 2 for
  ``kx > 0`` and 1 on the ``kx = 0`` column, so ``sum w |R|^2 / D^2`` is the real-space sum
  of squared residuals of the band-limited images (Parseval);
* ``"independent"`` (:meth:`FourierBand.up_to_shell`, the EM baselines' likelihood): weight 1
  on one pixel of each Hermitian pair (``kx > 0``, or ``kx = 0`` and ``ky > 0``), i.e. each
  independent complex value once, as in RELION's likelihood.

Bands for synthesising images carry weight 1 everywhere (:meth:`FourierBand.full_plane`,
:meth:`FourierBand.half_plane`); :meth:`FourierBand.to_images` inverts them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch

from .ctf import compute_ctf_grid, ctf_params_tensor
from .fft import fft2_centered, ifft2_centered
from .shifts import phase_ramp

__all__ = ["FourierBand", "Hermitian"]

Hermitian = Literal["parseval", "independent", "none"]


def _index_freqs(idx: torch.Tensor, box: int, apix: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer frequency indices -> (cycles/px, 1/Å), computed as ``i / D`` and ``i / (D apix)``."""
    f = idx.to(torch.float32)
    return f / box, f / (box * apix)


@dataclass(frozen=True)
class FourierBand:
    """Frequencies ``ky x kx`` of ``D x D`` images at ``apix`` Å/px and their weights.

    Attributes:
        box, apix: image side ``D`` (pixels) and pixel size (Å).
        kx_idx, ky_idx: int64 ``(Nx,)``, ``(Ny,)`` frequency indices (Fourier pixels,
            ``k = idx / D`` cycles/px); ``-D/2 <= idx <= D/2``.
        kx_per_px, ky_per_px, kx_per_A, ky_per_A: the same frequencies as float32.
        weights: float32 ``(Ny, Nx)``: the Hermitian weight of each pixel in the band, 0
            outside it.
        shells: int64 ``(Ny, Nx)``: rounded radius in Fourier pixels (for per-shell noise).
        hermitian: the weighting (module docstring).
        norm_box: the ``D`` of the full image this band was cut from (``lowpass`` keeps it).
    """

    box: int
    apix: float
    kx_idx: torch.Tensor
    ky_idx: torch.Tensor
    kx_per_px: torch.Tensor
    ky_per_px: torch.Tensor
    kx_per_A: torch.Tensor
    ky_per_A: torch.Tensor
    weights: torch.Tensor
    shells: torch.Tensor
    hermitian: Hermitian

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_indices(
        cls,
        box: int,
        apix: float,
        kx_idx: torch.Tensor,
        ky_idx: torch.Tensor,
        weights: torch.Tensor,
        hermitian: Hermitian,
    ) -> FourierBand:
        kxp, kxa = _index_freqs(kx_idx, box, apix)
        kyp, kya = _index_freqs(ky_idx, box, apix)
        r = torch.sqrt((kx_idx[None, :] ** 2 + ky_idx[:, None] ** 2).to(torch.float32))
        shells = torch.round(r).to(torch.int64)
        return cls(
            int(box), float(apix), kx_idx, ky_idx, kxp, kyp, kxa, kya, weights.to(torch.float32), shells, hermitian
        )

    @classmethod
    def full_plane(cls, box: int, apix: float, device=None) -> FourierBand:
        """Every frequency of the centred ``D x D`` DFT, weight 1 (for rendering images)."""
        idx = torch.arange(box, device=device) - box // 2
        return cls.from_indices(box, apix, idx, idx, torch.ones(box, box, device=device), "none")

    @classmethod
    def half_plane(cls, box: int, apix: float, device=None) -> FourierBand:
        """``kx = 0 .. D//2`` (the ``rfft`` columns, +Nyquist included), all rows centred;
        weight 1 (for rendering real images with :meth:`to_images`)."""
        ky = torch.arange(box, device=device) - box // 2
        kx = torch.arange(box // 2 + 1, device=device)
        return cls.from_indices(box, apix, kx, ky, torch.ones(box, box // 2 + 1, device=device), "none")

    @classmethod
    def disc(cls, box: int, apix: float, max_radius_px: float | None = None, device=None) -> FourierBand:
        """The half plane ``kx >= 0`` (without the +Nyquist column) inside the disc
        ``|k| < max_radius_px`` (default ``D / 2``), without DC; ``"parseval"`` weights."""
        ky = torch.arange(box, device=device) - box // 2
        kx = ky[box // 2 :]
        r_px = torch.sqrt((kx[None, :] ** 2 + ky[:, None] ** 2).to(torch.float32))
        limit = box / 2 if max_radius_px is None else max_radius_px
        w = torch.where(kx[None, :] > 0, 2.0, 1.0) * (r_px < limit)
        w[box // 2, 0] = 0.0  # DC
        return cls.from_indices(box, apix, kx, ky, w, "parseval")

    @classmethod
    def up_to_shell(cls, box: int, apix: float, max_shell: int, device=None) -> FourierBand:
        """Shells ``1 <= round(|k|) <= S`` (``S = min(max_shell, D//2 - 1)``) on the sub-grid
        ``kx = 0 .. S``, ``ky = -S .. S``; ``"independent"`` weights."""
        s = int(min(max_shell, box // 2 - 1))
        kx = torch.arange(0, s + 1, device=device)
        ky = torch.arange(-s, s + 1, device=device)
        r = torch.round(torch.sqrt((kx[None, :] ** 2 + ky[:, None] ** 2).to(torch.float32))).long()
        half = (kx[None, :] > 0) | ((kx[None, :] == 0) & (ky[:, None] > 0))  # one of each Hermitian pair
        w = (half & (r >= 1) & (r <= s)).to(torch.float32)
        return cls.from_indices(box, apix, kx, ky, w, "independent")

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int]:
        """``(Ny, Nx)``."""
        return int(self.ky_idx.numel()), int(self.kx_idx.numel())

    @property
    def device(self) -> torch.device:
        return self.weights.device

    @property
    def n_shells(self) -> int:
        """Shells ``0 .. max`` of the pixels in the band."""
        inside = self.shells[self.weights > 0]
        return int(inside.max()) + 1 if inside.numel() else 1

    def shell_counts(self) -> torch.Tensor:
        """Sum of the weights of each shell ``(n_shells,)`` float64 (pixel counts for 0/1 weights)."""
        return self.shell_sums(torch.ones(self.shape, device=self.device))

    def to(self, device: torch.device | str) -> FourierBand:
        return replace(
            self,
            **{
                f: getattr(self, f).to(device)
                for f in ("kx_idx", "ky_idx", "kx_per_px", "ky_per_px", "kx_per_A", "ky_per_A", "weights", "shells")
            },
        )

    # ------------------------------------------------------------------ sub-bands
    def lowpass(self, fraction: float) -> FourierBand:
        """The sub-band of the frequencies below ``fraction`` x Nyquist.

        Rows and columns outside the disc are dropped (not just given zero weight), so a
        comparison on it costs about ``fraction^2`` of the full one; ``box`` stays, so a
        data term keeps its normalisation (a Parseval partial sum, comparable between
        candidates and with a prior on the same scale).
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"band fraction must be in (0, 1], got {fraction}")
        if fraction >= 1:
            return self
        d = self.box
        radius_px = fraction * d / 2
        half_rows = min(d // 2, int(math.ceil(radius_px)))
        rows = (self.ky_idx >= -half_rows) & (self.ky_idx < half_rows)
        cols = self.kx_idx <= half_rows
        kx, ky = self.kx_idx[cols], self.ky_idx[rows]
        w = self.weights[rows][:, cols].clone()
        r_px = torch.sqrt((kx[None, :] ** 2 + ky[:, None] ** 2).to(torch.float32))
        return FourierBand.from_indices(d, self.apix, kx, ky, w * (r_px < radius_px), self.hermitian)

    def restrict(self, values: torch.Tensor, parent: FourierBand) -> torch.Tensor:
        """Values ``(..., Ny', Nx')`` on ``parent`` cut to this band's rows and columns
        (this band must be a sub-band of ``parent``, e.g. from :meth:`lowpass`)."""
        if parent is self or (
            parent.shape == self.shape
            and torch.equal(parent.kx_idx, self.kx_idx)
            and torch.equal(parent.ky_idx, self.ky_idx)
        ):
            return values
        rows = _positions(parent.ky_idx, self.ky_idx)
        cols = _positions(parent.kx_idx, self.kx_idx)
        values = values[..., rows, :] if isinstance(rows, slice) else values.index_select(-2, rows)
        return values[..., cols] if isinstance(cols, slice) else values.index_select(-1, cols)

    # ------------------------------------------------------------------ images
    def _grid_index(self, idx: torch.Tensor) -> torch.Tensor | slice:
        pos = torch.remainder(idx + self.box // 2, self.box)
        first = int(pos[0])
        if bool((pos == torch.arange(first, first + pos.numel(), device=pos.device)).all()):
            return slice(first, first + pos.numel())
        return pos

    def observed(self, images: torch.Tensor) -> torch.Tensor:
        """The band of the images' centred DFTs: complex ``(..., Ny, Nx)``."""
        if images.numel() == 0:  # e.g. a rank's empty share of a step (FFT libraries reject empty inputs)
            cdt = torch.complex128 if images.dtype == torch.float64 else torch.complex64
            return torch.zeros((*images.shape[:-2], *self.shape), dtype=cdt, device=images.device)
        F = fft2_centered(images)
        rows, cols = self._grid_index(self.ky_idx), self._grid_index(self.kx_idx)
        F = F[..., rows, :] if isinstance(rows, slice) else F.index_select(-2, rows)
        return F[..., cols] if isinstance(cols, slice) else F.index_select(-1, cols)

    def filters(self, ctf_params: torch.Tensor | None, shifts_A: torch.Tensor | None) -> torch.Tensor | None:
        """What turns a central slice into an image's DFT: ``CTF(k) * exp(+2 pi i k.o)``.

        ``ctf_params (B, 9)`` (:mod:`.ctf`), ``shifts_A (B, 2)`` RELION origins in Å; either
        may be None. Returns complex ``(B, Ny, Nx)`` (real without shifts), or None when
        both are None.
        """
        out = None
        if ctf_params is not None:
            params = ctf_params_tensor(ctf_params, ctf_params.device)
            out = compute_ctf_grid(self.kx_per_A.to(params.device), self.ky_per_A.to(params.device), params)
        if shifts_A is not None:
            ramp = phase_ramp(self.kx_per_A.to(shifts_A.device), self.ky_per_A.to(shifts_A.device), shifts_A)
            out = ramp if out is None else out * ramp
        return out

    def to_images(self, F: torch.Tensor, crop: int | None = None) -> torch.Tensor:
        """Real images from values on a :meth:`full_plane` or :meth:`half_plane` band.

        ``crop`` keeps the central ``crop x crop`` pixels (an oversampled band's image).
        """
        if self.kx_idx.numel() == self.box and int(self.kx_idx[0]) == -(self.box // 2):
            img = ifft2_centered(F).real
        elif self.kx_idx.numel() == self.box // 2 + 1 and int(self.kx_idx[0]) == 0:
            rows = torch.fft.ifftshift(F, dim=-2)  # centred rows -> fft order
            img = torch.fft.fftshift(torch.fft.irfft2(rows, s=(self.box, self.box), dim=(-2, -1)), dim=(-2, -1))
        else:
            raise ValueError("to_images needs a full_plane or half_plane band")
        if crop is not None and crop != self.box:
            b = self.box // 2 - crop // 2
            img = img[..., b : b + crop, b : b + crop]
        return img

    # ------------------------------------------------------------------ sums
    def shell_sums(self, power: torch.Tensor) -> torch.Tensor:
        """``sum weights * power`` per shell over images and pixels -> ``(n_shells,)`` float64."""
        p = (power.to(torch.float64) * self.weights.to(power.device, torch.float64)).reshape(-1, self.shells.numel())
        shells = self.shells.reshape(-1).to(p.device)
        keep = shells < self.n_shells
        out = torch.zeros(self.n_shells, dtype=torch.float64, device=p.device)
        return out.index_add_(0, shells[keep], p.sum(dim=0)[keep])


def _positions(parent_idx: torch.Tensor, child_idx: torch.Tensor) -> torch.Tensor | slice:
    """Positions of ``child_idx`` within ``parent_idx`` (both sorted, child a subset): a
    slice when they are contiguous."""
    pos = torch.searchsorted(parent_idx, child_idx)
    if not bool((parent_idx[pos.clamp_max(parent_idx.numel() - 1)] == child_idx).all()):
        raise ValueError("not a sub-band of the given band")
    first = int(pos[0]) if pos.numel() else 0
    if bool((pos == torch.arange(first, first + pos.numel(), device=pos.device)).all()):
        return slice(first, first + pos.numel())
    return pos
