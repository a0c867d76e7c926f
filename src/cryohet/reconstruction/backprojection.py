"""Homogeneous reconstruction by CTF-weighted Fourier backprojection and a Wiener filter.

For images ``Y_j`` (centred DFTs, un-shifted by their origins), CTFs ``C_j`` and
rotations ``A_j``, the accumulator builds on a ``P = oversample * D`` grid

    N(q) = sum_j T_j^T [C_j Y_j](q)        W(q) = sum_j T_j^T [C_j^2](q)

where ``T_j^T`` is the trilinear scatter of the slice ``k3 = A_j^T (kx, ky, 0)``
(:func:`cryohet.imaging.projection.backproject_slices`, the exact transpose of the
projector's slice sampling). The estimate is

    V(q) = N(q) / (W(q) + 1 / SNR(|q|))

(``SNR`` = per-image spectral signal-to-noise ratio at CTF 1; constant, per shell, or
derived from the half-map FSC), then the centred inverse FFT, a crop to ``D^3`` and the
gridding correction (division by ``sinc^2`` of the trilinear kernel, as the ratio of two
trilinear accumulations estimates the transform convolved with that kernel).
"""

from __future__ import annotations

import torch

from ..imaging.ctf import compute_ctf_grid, ctf_params_tensor
from ..imaging.fft import frequencies_1d
from ..imaging.projection import backproject_slices, fourier_to_volume, gridding_kernel
from ..imaging.shifts import phase_ramp
from ..training.distributed import all_reduce_sum_, get_dist

__all__ = ["BackprojectionAccumulator"]


class BackprojectionAccumulator:
    """Streams batches of images into the numerator/weight grids; ``finalize`` gives a volume.

    Args:
        box: image and volume side ``D`` in pixels.
        apix: pixel size in Å (for shifts and CTF).
        oversample: Fourier padding factor ``P / D`` (default 2).
        device, dtype: of the accumulation grid (real ``(P, P, P, 3)``: Re N, Im N, W).
    """

    def __init__(self, box: int, apix: float, oversample: int = 2, device=None, dtype=torch.float32) -> None:
        self.box = int(box)
        self.apix = float(apix)
        self.padded = int(oversample) * self.box
        self.dtype = dtype
        # One real grid with channels (Re N, Im N, W): a single trilinear scatter per batch.
        self.grid = torch.zeros((self.padded,) * 3 + (3,), dtype=dtype, device=device)
        self.n_images = 0

    @property
    def device(self) -> torch.device:
        return self.grid.device

    @property
    def numerator(self) -> torch.Tensor:
        """Complex ``(P, P, P)`` half-plane numerator ``sum C Y`` (a copy)."""
        return torch.complex(self.grid[..., 0], self.grid[..., 1])

    @property
    def weights(self) -> torch.Tensor:
        """Real ``(P, P, P)`` half-plane weights ``sum C^2`` (a view)."""
        return self.grid[..., 2]

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
        inside the padded box). Only the half plane ``kx >= 0`` is scattered; the other
        half follows from Hermitian symmetry in :meth:`finalize`.
        """
        dev, dt = self.device, self.dtype
        imgs = torch.as_tensor(images).to(device=dev, dtype=dt)
        if imgs.shape[-2:] != (self.box, self.box):
            raise ValueError(f"images are {tuple(imgs.shape[-2:])}, accumulator box is {self.box}")
        rot = torch.as_tensor(rotations).to(device=dev, dtype=dt)
        p = self.padded
        before = p // 2 - self.box // 2
        padded = torch.nn.functional.pad(imgs, (before, p - self.box - before) * 2)
        # Centred DFT on the half plane: rows ky centred, columns kx = 0 .. P/2.
        F = torch.fft.rfft2(torch.fft.ifftshift(padded, dim=(-2, -1)), dim=(-2, -1))
        F = torch.fft.fftshift(F, dim=-2)
        ky_per_px = frequencies_1d(p, 1.0, device=dev, dtype=dt)
        kx_per_px = torch.arange(p // 2 + 1, device=dev, dtype=dt) / p
        kx_per_A, ky_per_A = kx_per_px / self.apix, ky_per_px / self.apix
        if shifts_A is not None:
            F = F * phase_ramp(kx_per_A, ky_per_A, -torch.as_tensor(shifts_A).to(device=dev, dtype=dt))
        # Columns kx = 0 and kx = P/2 are their own mirrors: count them half here.
        col = torch.ones(p // 2 + 1, device=dev, dtype=dt)
        col[0] = 0.5
        if p % 2 == 0:
            col[-1] = 0.5
        if ctf_params is not None:
            ctf = compute_ctf_grid(kx_per_A, ky_per_A, ctf_params_tensor(ctf_params, dev, dt))
            F = F * (ctf * col)
            w = ctf * ctf * col
        else:
            F = F * col
            w = col.expand(F.shape)
        values = torch.stack([F.real, F.imag, w], dim=-1)  # (B, P, P//2 + 1, 3)
        backproject_slices(values, rot, p, kx_per_px, ky_per_px, out=self.grid)
        self.n_images += int(imgs.shape[0])

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
        """A new accumulator holding both sets of images."""
        out = BackprojectionAccumulator(self.box, self.apix, self.padded // self.box, self.device, self.dtype)
        out += self
        out += other
        return out

    def shell_index(self) -> torch.Tensor:
        """``(P, P, P)`` shell of each grid point in output Fourier pixels, ``round(|q| D / P)``."""
        c = (torch.arange(self.padded, device=self.device, dtype=self.dtype) - self.padded // 2) * (
            self.box / self.padded
        )
        z, y, x = torch.meshgrid(c, c, c, indexing="ij")
        return torch.round(torch.sqrt(x * x + y * y + z * z)).long()

    def symmetrized(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Full numerator and weight grids: half-plane sums plus their Hermitian mirrors.

        Grid index ``i`` (frequency ``i - P//2``) mirrors to ``(P - i) mod P`` for even
        ``P`` and to ``P - 1 - i`` for odd ``P``.
        """
        r = 1 if self.padded % 2 == 0 else 0

        def mirror(x: torch.Tensor) -> torch.Tensor:
            return torch.roll(torch.flip(x, dims=(0, 1, 2)), shifts=(r, r, r), dims=(0, 1, 2))

        num, w = self.numerator, self.weights
        return num + mirror(num).conj(), w + mirror(w)

    def mean_weight_per_shell(self) -> torch.Tensor:
        """Average of the (symmetrised) weights over the grid points of each shell ``0 .. D//2``."""
        n = self.box // 2 + 1
        r = self.shell_index().reshape(-1)
        keep = r < n
        weights = self.symmetrized()[1]
        tot = torch.zeros(n, device=self.device, dtype=self.dtype).index_add_(0, r[keep], weights.reshape(-1)[keep])
        return tot / torch.bincount(r[keep], minlength=n).to(self.dtype).clamp_min(1)

    @torch.no_grad()
    def finalize(
        self,
        snr: float | torch.Tensor | None = None,
        min_weight: float = 1e-3,
        max_shell: int | None = None,
    ) -> torch.Tensor:
        """The reconstructed ``(D, D, D)`` volume.

        Args:
            snr: per-image SNR for the Wiener term ``1/SNR``: a float, a per-shell tensor
                ``(D//2 + 1,)`` (shells beyond it take its last value), or None for no
                regularisation (plain ratio, for clean data).
            min_weight: floor of the denominator, relative to the mean weight of shell 1
                (guards grid points that no image reached).
            max_shell: Fourier components beyond this shell (output pixels) are set to
                zero; default ``D // 2`` (Nyquist sphere).
        """
        shells = self.shell_index()
        num, den = self.symmetrized()
        if snr is not None:
            s = torch.as_tensor(snr, device=self.device, dtype=self.dtype)
            if s.ndim == 0:
                den += 1.0 / s.clamp_min(1e-12)
            else:
                den += 1.0 / s[shells.clamp(max=s.numel() - 1)].clamp_min(1e-12)
        floor = min_weight * float(self.mean_weight_per_shell()[min(1, self.box // 2)])
        vol_ft = num / den.clamp_min(max(floor, 1e-30))
        rmax = self.box // 2 if max_shell is None else max_shell
        vol_ft = vol_ft * (shells <= rmax)
        vol = fourier_to_volume(vol_ft, self.box)
        return vol / gridding_kernel(self.box, self.padded, self.device, self.dtype)
