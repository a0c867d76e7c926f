"""Image-space Fourier likelihood pieces shared by the EM baselines (classify3d, pca).

An image's centred DFT ``Y`` (unnormalised, :func:`cryohet.imaging.fft.fft2_centered`) is
compared with a model image ``M = CTF * shift * slice(V)``: the forward model of
:func:`cryohet.imaging.render.render` (output ``"fourier"``) of a prepared
:class:`~cryohet.imaging.projection.FourierVolume`, on the band pixels only. Noise is Gaussian, independent per
Fourier pixel, with a variance ``sigma2(s)`` per shell ``s`` (coloured noise allowed,
as RELION's ``sigma2_noise``):

    log p(Y | V) = - sum_{k in band} |Y(k) - M(k)|^2 / sigma2(|k|)   (+ const)

over the independent half of the plane (a real image's DFT is Hermitian, so ``k`` and
``-k`` carry the same information; each complex pair is counted once) and the band
``1 <= round(|k|) <= max_shell`` (Fourier pixels; the DC term, which carries each
image's arbitrary offset, is left out).
"""

from __future__ import annotations

import numpy as np
import torch

from ...data.batch import ParticleBatch
from ...imaging.ctf import compute_ctf_grid, ctf_params_tensor
from ...imaging.fft import fft2_centered
from ...imaging.projection import FourierVolume, project_fourier
from ...imaging.shifts import phase_ramp

__all__ = ["ImageBand", "band_shell_from_fsc", "shell_of_resolution"]


def band_shell_from_fsc(fsc: np.ndarray | torch.Tensor, box: int, threshold: float = 0.143, margin: int = 2) -> int:
    """Last Fourier shell to use: the first shell where the half-map FSC (shells
    ``0 .. D//2``) drops below ``threshold``, plus ``margin`` shells, capped at ``D//2 - 1``."""
    f = np.asarray(fsc.cpu() if isinstance(fsc, torch.Tensor) else fsc, dtype=np.float64)
    below = np.flatnonzero(f[1:] < threshold)
    shell = (int(below[0]) + 1 if below.size else box // 2) + margin
    return int(min(max(shell, 2), box // 2 - 1))


def shell_of_resolution(resolution_A: float, box: int, apix: float) -> int:
    """Fourier shell (pixels) of a resolution in Å at box ``D`` and ``apix`` Å/px, capped at ``D//2 - 1``."""
    shell = int(np.floor(box * apix / float(resolution_A)))
    return int(min(max(shell, 2), box // 2 - 1))


class ImageBand:
    """The independent Fourier pixels of ``D x D`` images within ``max_shell``.

    The forward model is :func:`cryohet.imaging.render.render`'s (Fourier slice, shift
    phase ramp, CTF), evaluated only on the rectangular sub-grid ``kx = 0 .. S``,
    ``ky = -S .. S`` (Fourier pixels, ``S = max_shell``) that holds the band, and with
    the per-image CTF and shift factors computed once per batch (:meth:`filters`) and
    shared by every volume rendered for it.

    Attributes:
        index: flat indices (into ``D * D``, centred layout) of the selected pixels ``(P,)``.
        sub_index: the same pixels as flat indices into the ``(2S + 1, S + 1)`` sub-grid.
        shell: rounded radius of each selected pixel ``(P,)`` (int64, ``1 .. max_shell``).
        n_shells: ``max_shell + 1`` (shell 0 is empty).
    """

    def __init__(self, box: int, apix: float, max_shell: int, device: torch.device | str = "cpu") -> None:
        self.box = int(box)
        self.apix = float(apix)
        self.max_shell = S = int(min(max_shell, self.box // 2 - 1))
        self.n_shells = S + 1
        c = self.box // 2
        self.kx_px = torch.arange(0, S + 1, device=device, dtype=torch.float32) / self.box
        self.ky_px = torch.arange(-S, S + 1, device=device, dtype=torch.float32) / self.box
        ky, kx = torch.meshgrid(
            torch.arange(-S, S + 1, device=device), torch.arange(0, S + 1, device=device), indexing="ij"
        )
        r = torch.round(torch.sqrt((kx * kx + ky * ky).to(torch.float32))).long()
        half = (kx > 0) | ((kx == 0) & (ky > 0))  # one of each Hermitian pair
        keep = (half & (r >= 1) & (r <= S)).reshape(-1)
        self.sub_index = torch.nonzero(keep).reshape(-1)
        self.index = ((ky + c) * self.box + (kx + c)).reshape(-1)[self.sub_index]
        self.shell = r.reshape(-1)[self.sub_index]
        self.counts = torch.bincount(self.shell, minlength=self.n_shells).to(torch.float64)

    @property
    def n_pixels(self) -> int:
        return int(self.index.numel())

    def observed(self, images: torch.Tensor) -> torch.Tensor:
        """Band pixels of the images' centred DFTs: complex ``(B, P)``."""
        return fft2_centered(images).reshape(images.shape[0], -1)[:, self.index]

    def filters(self, batch: ParticleBatch) -> torch.Tensor:
        """``CTF * exp(2 pi i k.origin)`` at the band pixels of each image: complex ``(B, P)``."""
        params = ctf_params_tensor(batch.ctf_params, batch.ctf_params.device)
        kx_A, ky_A = self.kx_px / self.apix, self.ky_px / self.apix
        f = compute_ctf_grid(kx_A, ky_A, params) * phase_ramp(kx_A, ky_A, batch.shifts_A)
        return f.reshape(f.shape[0], -1)[:, self.sub_index]

    def slices(self, vol_ft: FourierVolume, rotations: torch.Tensor) -> torch.Tensor:
        """Band pixels of the central slices (no CTF, no shift): complex ``(B, P)``."""
        F = project_fourier(vol_ft, rotations, self.kx_px, self.ky_px)
        return F.reshape(F.shape[0], -1)[:, self.sub_index]

    def model(self, vol_ft: FourierVolume, batch: ParticleBatch, filters: torch.Tensor | None = None) -> torch.Tensor:
        """Band pixels of the model images (slice, shift, CTF): complex ``(B, P)``.

        Pass ``filters`` (from :meth:`filters`) when rendering several volumes for one batch.
        """
        filt = self.filters(batch) if filters is None else filters
        return self.slices(vol_ft, batch.rotations) * filt

    def shell_sums(self, power: torch.Tensor) -> torch.Tensor:
        """Sum of ``power (B, P)`` (or ``(P,)``) over images and the pixels of each shell -> ``(n_shells,)`` float64."""
        p = power.reshape(-1, self.n_pixels).to(torch.float64).sum(dim=0)
        return torch.zeros(self.n_shells, dtype=torch.float64, device=p.device).index_add_(0, self.shell, p)

    def inverse_noise(self, sigma2: torch.Tensor) -> torch.Tensor:
        """``1 / sigma2`` of each band pixel ``(P,)`` from a per-shell variance ``(n_shells,)``."""
        return (1.0 / sigma2.clamp_min(1e-30))[self.shell].to(torch.float32)
