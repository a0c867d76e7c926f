"""A linear subspace of heterogeneity by EM (probabilistic PCA in image space), at given poses.

Model (Punjani & Fleet's 3D variability analysis, as probabilistic PCA in image space):

    Y_i = CTF_i * shift_i * slice_i( mu + sum_j z_ij V_j ) + noise,   z_i ~ N(0, I_k)

with ``mu`` the consensus map (:func:`reconstruct_particles`, fixed), ``V_j`` the k
component maps (free scale), noise Gaussian with a per-shell variance
(:class:`~cryohet.imaging.likelihood.ShellGaussian`), everything restricted to a low-pass
band (shells up to the consensus half-map FSC = 0.143 plus 2, or ``max_resolution_A``;
:mod:`.band_limits`) and to a real-space mask (``mask``, or the consensus thresholded at
``mask_threshold`` of its maximum, dilated 2 px, 3 px soft edge).

EM, one pass over the particles per iteration:

* **E-step** (per image, k x k): with ``B_ij`` the band pixels of the rendered component
  images and ``R_i = Y_i - render(mu)``, ``M_i = Re(B_i^H W B_i)``, ``b_i = Re(B_i^H W R_i)``
  (``W = 1/sigma2(shell)``); posterior ``Sigma_i = (M_i + I)^-1``, ``z_i = Sigma_i b_i``.
* **M-step**: backproject each residual image weighted by ``z_ij``
  (:class:`BackprojectionAccumulator`, the same CTF-weighted gridding and Wiener term as
  the consensus) giving ``G_j ~ sum_i z_ij C_i R_i / sum_i C_i^2``; then
  ``V = S^-1 G`` with ``S = mean_i (Sigma_i + z_i z_i^T)``. This takes the CTF^2 weights
  as uncorrelated with z (true in expectation: z does not depend on pose or defocus), so
  the per-voxel k x k systems of exact 3DVA become one k x k mix.
* The components are low-passed to the band, masked, and orthogonalised by an SVD
  (rotating the basis is free for an isotropic prior); the noise spectrum is updated
  from the residuals ``R_i - sum_j z_ij B_ij``.

Components start as seeded random noise in the band and mask. A final E-step gives the
latents: each image's posterior-mean coordinates ``z_i`` (the ridge-regularised
least-squares fit of its residual by the CTF-projected components), ``(N, k)``.

Two users: the ``pca`` baseline (one EM iteration per epoch, the components as its model)
the latent seed of DRGN-AI and HetACUMN (:func:`seed_latents_at_poses`, at the searched or
given poses), and classify3d's initial classes through the baseline. Poses are the dataset's: RELION ``A``
matrices (acting on the map's coordinates) and shifts in Å.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..console import get_logger
from ..data.dataset import ParticleDataset
from ..errors import InputError, file_error
from ..imaging.bands import FourierBand
from ..imaging.fft import fft3_centered, ifft3_centered, radial_index_3d
from ..imaging.likelihood import ShellGaussian
from ..imaging.masks import threshold_mask
from ..imaging.projection import slice_coordinates, slice_coordinates_at, trilinear_gather, volume_to_fourier
from ..io.mrc import read_volume
from ..representations.render import model_images, render
from ..training.distributed import all_reduce_sum_
from ..training.per_image import gather_rows_into, my_rows
from .backprojection import BackprojectionAccumulator
from .band_limits import band_shell_from_fsc, shell_of_resolution
from .from_particles import dataset_pixel_size, reconstruct_particles
from .half_maps import HalfMapResult

__all__ = [
    "SEED_LATENT_STD", "SubspaceSettings", "SubspaceReadout", "LinearSubspaceEM", "fit_subspace",
    "fit_subspace_latents", "seed_subspace_at_poses", "seed_latents_at_poses",
]  # fmt: skip

log = get_logger("reconstruction.linear_subspace")

#: Overall std of seeded latents (:func:`seed_latents_at_poses`): about what DRGN-AI's
#: auto-decoded latents reach in its search (0.49 after 10 search epochs on igg-1d at D=64).
SEED_LATENT_STD = 0.5


@dataclass(frozen=True)
class SubspaceSettings:
    """What defines the subspace fit (the ``pca`` baseline's config fields of the same names).

    Attributes:
        components: number of components k (the latent dimension).
        max_resolution_A: low-pass limit in Å; None: consensus FSC 0.143 + 2 shells.
        mask: real-space mask (.mrc) at the working box; None: from the consensus.
        mask_threshold: consensus mask threshold, a fraction of the consensus maximum.
        mask_lowpass_A: consensus mask: the consensus is low-passed to this resolution (Å)
            before the threshold (where its Nyquist is finer; None: as it is). On a noisy
            consensus the threshold otherwise keeps noise around the particle, where the
            components then fit noise: simulated igg-1d at D=64 (6 Å/px, SNR 0.05, 1 000
            particles at their true poses, k=8) gave a k-means ARI (k=20) of 0.015 (mask 34 %
            of the box; without a mask 0.005) and 0.294 with the 20 Å low-pass (3.8 %).
        batch_size: images per batch (reading, projection, backprojection).
        seed: seeds the initial components and the consensus half sets.
    """

    components: int = 3
    max_resolution_A: float | None = None
    mask: Path | None = None
    mask_threshold: float = 0.05
    mask_lowpass_A: float | None = 20.0
    batch_size: int = 256
    seed: int = 0


def _lowpass(vol: torch.Tensor, shell: int) -> torch.Tensor:
    """Zero the Fourier components of ``vol`` beyond ``shell`` (voxels), real output."""
    keep = radial_index_3d(vol.shape[-1], device=vol.device) <= shell
    return ifft3_centered(fft3_centered(vol) * keep).real.to(vol.dtype)


def _mask(settings: SubspaceSettings, consensus: torch.Tensor, box: int, apix: float) -> torch.Tensor:
    if settings.mask is not None:
        m, _ = read_volume(settings.mask)
        if m.shape != (box,) * 3:
            raise file_error(settings.mask, f"mask is {m.shape[0]}^3 but the working box is {box}")
        return torch.from_numpy(m).to(consensus)
    if settings.mask_lowpass_A:
        shell = int(np.floor(box * apix / settings.mask_lowpass_A))
        consensus = _lowpass(consensus, shell) if shell < box // 2 else consensus
    try:
        return threshold_mask(
            consensus, settings.mask_threshold * float(consensus.max()), dilate_px=2.0, soft_edge_px=3.0
        )
    except ValueError:
        raise InputError("the consensus map is empty; cannot build a mask (give --mask)") from None


def _orthogonalise(V: torch.Tensor) -> torch.Tensor:
    """Rows of ``V (k, D, D, D)`` made orthogonal by an SVD, sorted by norm (sign: largest
    voxel positive, so the result is deterministic)."""
    k = V.shape[0]
    flat = V.reshape(k, -1).to(torch.float64)
    U, s, Wt = torch.linalg.svd(flat, full_matrices=False)
    out = s[:, None] * Wt
    sign = torch.sign(out.gather(1, out.abs().argmax(dim=1, keepdim=True)))
    return (out * sign).reshape(V.shape).to(V.dtype)


class SubspaceReadout:
    """Images' coordinates in a fitted linear subspace at given poses: the EM's E-step
    (module doc), which :class:`LinearSubspaceEM` runs and a method can keep to read the
    coordinates of images it never fitted (HetACUMN's encoder, :mod:`cryohet.methods.hetacumn`).

    ``mean (D, D, D)`` and ``components (k, D, D, D)`` are real maps (the EM's scale),
    ``band`` the subspace's low-pass band (:meth:`FourierBand.up_to_shell`), ``sigma2`` its
    per-shell noise variance (of the images' band DFTs); coordinates are multiplied by
    ``scale`` (a seed's :data:`SEED_LATENT_STD` normalisation). Images are real ``(B, D, D)``
    in the units the subspace was fitted in, CTF parameters ``(B, 9)`` (or None), rotations
    ``(B, 3, 3)`` RELION ``A`` (acting on the map's coordinates), origins ``(B, 2)`` Å."""

    def __init__(self, mean: torch.Tensor, components: torch.Tensor, band: FourierBand, sigma2: torch.Tensor,
                 scale: float = 1.0) -> None:  # fmt: skip
        self.mean, self.components, self.band = mean, components, band
        self.sigma2, self.scale = sigma2, float(scale)
        self.pixel_weights = ShellGaussian(band, sigma2).pixel_weights
        # the mean's and the components' oversampled DFTs as one real multi-channel grid, cropped
        # to the band's reach (every band pixel, corners included): one interpolation for all
        fts = [volume_to_fourier(mean)] + [volume_to_fourier(v) for v in components]
        padded, box = fts[0].padded, mean.shape[-1]
        reach = int(np.ceil(np.sqrt(2.0) * (int(band.kx_idx.max()) + 1) * padded / box)) + 2
        self._lo = max(0, padded // 2 - reach)
        hi = min(padded, padded // 2 + reach + 1)
        crop = slice(self._lo, hi)
        self._padded = padded
        # channels: the 1 + k real parts, then the 1 + k imaginary parts
        parts = [f.data[crop, crop, crop] for f in fts]
        self._grid = torch.stack([p.real for p in parts] + [p.imag for p in parts], dim=-1).contiguous()
        # the band's pixels of non-zero weight (flat indices into ``(Ny, Nx)``): all a reading needs
        flat_weights = self.pixel_weights.flatten()
        self._pixels = torch.nonzero(flat_weights > 0)[:, 0]
        self._pixel_weights = flat_weights[self._pixels]
        kx, ky = band.kx_per_px.to(mean.device), band.ky_per_px.to(mean.device)
        pixel_k = torch.stack(torch.broadcast_tensors(kx[None, :], ky[:, None]), dim=-1).reshape(-1, 2)
        self._pixel_k = pixel_k[self._pixels.to(mean.device)].to(self._grid.dtype)  # (P', 2) cycles/px

    @torch.no_grad()
    def model_slices(self, rotations: torch.Tensor, filters: torch.Tensor | None) -> torch.Tensor:
        """The mean's and the components' slices on the band at ``rotations`` (times
        ``filters``): complex ``(B, 1 + k, Ny, Nx)``, the mean first."""
        band = self.band
        coords = slice_coordinates(rotations.to(self._grid.dtype), band.kx_per_px.to(self._grid.device),
                                   band.ky_per_px.to(self._grid.device), self._padded) - self._lo  # fmt: skip
        values = trilinear_gather(self._grid, coords).unflatten(-1, (2, -1))  # (B, Ny, Nx, 2, 1 + k)
        slices = torch.complex(values[..., 0, :], values[..., 1, :]).permute(0, 3, 1, 2)
        return slices if filters is None else slices * filters[:, None]

    @property
    def dim(self) -> int:
        """The number of coordinates k."""
        return int(self.components.shape[0])

    @torch.no_grad()
    def solve(self, images, ctf_params, rotations, shifts_A):
        """``(R, B, Sigma, z)``: the residual band DFTs ``(B, P)`` against the mean's slices, the
        components' CTF-projected band DFTs ``(B, k, P)``, the posterior covariances
        ``(B, k, k)`` and the posterior means ``(B, k)`` float64 (unscaled)."""
        band = self.band
        slices = self.model_slices(rotations, band.filters(ctf_params, shifts_A))
        R = (band.observed(images) - slices[:, 0]).flatten(-2)
        Bm = slices[:, 1:].flatten(-2)
        Bw = Bm * self.pixel_weights.flatten()  # (B, k, P) over the band's sub-grid pixels P
        M = torch.einsum("bjp,blp->bjl", Bw.conj(), Bm).real.to(torch.float64)
        b = torch.einsum("bjp,bp->bj", Bw.conj(), R).real.to(torch.float64)
        eye = torch.eye(self.dim, dtype=torch.float64, device=M.device)
        Sigma = torch.linalg.inv(M + eye)
        return R, Bm, Sigma, (Sigma @ b[:, :, None])[:, :, 0]

    @torch.no_grad()
    def __call__(self, images, ctf_params, rotations, shifts_A) -> torch.Tensor:
        """The images' coordinates ``(B, k)`` float32, times ``scale`` (no gradients): the
        posterior means of :meth:`solve`, from its normal equations written so that no filtered
        slice is formed. With ``f`` the filter (CTF times the shift's phase), ``w`` the pixel
        weights, ``V_0`` the mean's and ``V_j`` the components' slices and ``Y`` an image's DFT:
        ``M_jl = sum w |f|^2 Re(conj(V_j) V_l)`` (the phase cancels) and
        ``b_j = sum w Re(conj(V_j) conj(f) Y) - sum w |f|^2 Re(conj(V_j) V_0)``, both over the
        band's pixels of non-zero weight only; the slices' real and imaginary parts are the
        grid's channel halves, so one batched product gives every sum."""
        band, pixels = self.band, self._pixels
        rotations = rotations.detach().to(self._grid.dtype)
        coords = slice_coordinates_at(rotations, self._pixel_k, self._padded) - self._lo
        G = trilinear_gather(self._grid, coords)  # (B, P', 2 (1 + k)): re | im
        weights = self._pixel_weights
        filters = band.filters(ctf_params, None if shifts_A is None else shifts_A.detach())
        observed = band.observed(images).flatten(1)[:, pixels]
        if filters is None:
            power, unfiltered = weights.expand(observed.shape), observed
        else:
            f = filters.flatten(1)[:, pixels]
            power = weights * (f.real**2 + f.imag**2 if f.is_complex() else f**2)
            unfiltered = f.conj() * observed
        Gs = G.reshape(G.shape[0], -1, self.dim + 1)  # (B, 2 P', 1 + k): each pixel's real row, then imaginary
        gram = torch.bmm(Gs.transpose(1, 2), Gs * power.repeat_interleave(2, dim=1)[:, :, None]).to(torch.float64)
        Ys = (torch.view_as_real(unfiltered) * weights[:, None]).flatten(1).to(Gs.dtype)  # (B, 2 P')
        rhs = torch.bmm(Gs.transpose(1, 2), Ys[:, :, None])[:, :, 0].to(torch.float64)
        M, b = gram[:, 1:, 1:], rhs[:, 1:] - gram[:, 1:, 0]
        eye = torch.eye(self.dim, dtype=torch.float64, device=M.device)
        z = torch.linalg.solve(M + eye, b)
        return (z * self.scale).to(torch.float32)

    def state_dict(self) -> dict:
        """Tensors and numbers only (a checkpoint loads it without executing code)."""
        return {"mean": self.mean.detach().cpu(), "components": self.components.detach().cpu(),
                "sigma2": self.sigma2.detach().cpu(), "scale": torch.tensor(self.scale, dtype=torch.float64),
                "shell": torch.tensor(int(self.band.kx_idx.max())), "apix": torch.tensor(self.band.apix)}  # fmt: skip

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device | str = "cpu") -> SubspaceReadout:
        mean = state["mean"].to(device)
        band = FourierBand.up_to_shell(mean.shape[-1], float(state["apix"]), int(state["shell"]), device)
        return cls(mean, state["components"].to(device), band, state["sigma2"].to(device), float(state["scale"]))


class LinearSubspaceEM:
    """State and passes of the EM (consensus, mask, band, components, noise) on ``dataset``
    (which must have poses and CTF), on ``device``; distributed: each rank passes over its
    share of the images and the sums are reduced."""

    def __init__(
        self,
        dataset: ParticleDataset,
        settings: SubspaceSettings,
        device: torch.device | str = "cpu",
        consensus: HalfMapResult | None = None,
    ) -> None:
        self.dataset, self.settings = dataset, settings
        self.device = dev = torch.device(device)
        self.box, self.apix, self.n = dataset.box, dataset_pixel_size(dataset), len(dataset)
        cons = consensus or reconstruct_particles(
            dataset, batch_size=settings.batch_size, device=dev, seed=settings.seed, show_progress=False
        )
        self.mean = cons.full.to(dev)
        self.snr = cons.snr.to(dev)
        self.shell = (
            shell_of_resolution(settings.max_resolution_A, self.box, self.apix)
            if settings.max_resolution_A
            else band_shell_from_fsc(cons.fsc, self.box)
        )
        self.band = FourierBand.up_to_shell(self.box, self.apix, self.shell, dev)
        self.mask = _mask(settings, self.mean, self.box, self.apix).to(dev)
        self.mean_ft = volume_to_fourier(self.mean)
        self.sigma2 = torch.ones(self.band.n_shells, dtype=torch.float64, device=dev)
        gen = torch.Generator().manual_seed(settings.seed)
        V = torch.randn((settings.components,) + (self.box,) * 3, generator=gen).to(dev)
        V = torch.stack([_lowpass(v, self.shell) * self.mask for v in V])
        scale = float(self.mean.norm()) * 0.1 / float(V[0].norm().clamp_min(1e-30))
        self.V = _orthogonalise(V * scale)

    @property
    def resolution_A(self) -> float:
        """Resolution (Å) of the band's last shell."""
        return self.box * self.apix / self.shell

    def batches(self):
        """``(rows, batch)`` over this rank's share of the images in order, on the device."""
        mine = my_rows(self.n)
        for start in range(0, len(mine), self.settings.batch_size):
            rows = mine[start : start + self.settings.batch_size]
            yield rows, self.dataset.get_batch(rows).to(self.device)

    def readout(self, scale: float = 1.0) -> SubspaceReadout:
        """The E-step of the subspace as it is now (its mean, components, band and noise)."""
        return SubspaceReadout(self.mean, self.V, self.band, self.sigma2, scale)

    @torch.no_grad()
    def pass_(self, update: bool) -> tuple[np.ndarray, float]:
        """One pass: E-step latents ``(N, k)``; with ``update`` also the M-step and noise update.

        Returns the latents and the mean squared residual per band pixel (for the log).
        """
        band, k, dev = self.band, self.settings.components, self.device
        estep = self.readout()
        accs = [BackprojectionAccumulator(self.box, self.apix, device=dev) for _ in range(k)] if update else []
        S = torch.zeros(k, k, dtype=torch.float64, device=dev)
        noise = torch.zeros(band.n_shells, dtype=torch.float64, device=dev)
        z_all = np.zeros((self.n, k), dtype=np.float32)
        mine = np.zeros(0, dtype=np.int64)
        for rows, batch in self.batches():
            R, Bm, Sigma, z = estep.solve(batch.images, batch.ctf_params, batch.rotations, batch.shifts_A)
            z_all[rows] = z.cpu().numpy()
            mine = np.concatenate([mine, rows])
            fit = R - torch.einsum("bj,bjp->bp", z.to(Bm.real.dtype).to(Bm.dtype), Bm)
            noise += band.shell_sums((fit.abs() ** 2).unflatten(-1, band.shape))
            if update:
                S += (Sigma + z[:, :, None] * z[:, None, :]).sum(dim=0)
                resid = batch.images - render(
                    self.mean_ft, batch.rotations, batch.shifts_A, batch.ctf_params, self.box, self.apix, output="real"
                )
                zf = z.to(resid.dtype)
                for j in range(k):
                    accs[j].add(resid * zf[:, j, None, None], batch.rotations, batch.shifts_A, batch.ctf_params)
        gather_rows_into(z_all, mine)  # every rank's share of the images
        all_reduce_sum_(noise)
        msr = float(noise.sum() / (self.n * float(band.weights.sum())))
        if update:
            all_reduce_sum_(S)
            self.sigma2 = ShellGaussian.estimate_sigma2(band, noise, self.n)
            G = torch.stack([a.all_reduce().finalize(self.snr) for a in accs]).to(torch.float64)  # (k, D, D, D)
            mix = torch.linalg.solve(S / self.n, G.reshape(k, -1))
            V = mix.reshape(G.shape).to(self.V.dtype)
            V = torch.stack([_lowpass(v, self.shell) * self.mask for v in V])
            self.V = _orthogonalise(V)
        return z_all, msr

    @torch.no_grad()
    def initial_noise(self) -> None:
        """Noise spectrum from the residuals against the mean alone."""
        band = self.band
        noise = torch.zeros(band.n_shells, dtype=torch.float64, device=self.device)
        for _, batch in self.batches():
            filt = band.filters(batch.ctf_params, batch.shifts_A)
            model = model_images(self.mean_ft, batch.rotations, band, filt)
            noise += band.shell_sums((band.observed(batch.images) - model).abs() ** 2)
        self.sigma2 = ShellGaussian.estimate_sigma2(band, all_reduce_sum_(noise), self.n)


def fit_subspace(
    dataset: ParticleDataset,
    settings: SubspaceSettings,
    iterations: int,
    device: torch.device | str = "cpu",
    consensus: HalfMapResult | None = None,
) -> LinearSubspaceEM:
    """The EM after ``iterations`` iterations (no run directory)."""
    em = LinearSubspaceEM(dataset, settings, device, consensus)
    em.initial_noise()
    for _ in range(iterations):
        em.pass_(update=True)
    return em


def fit_subspace_latents(
    dataset: ParticleDataset,
    settings: SubspaceSettings,
    iterations: int,
    device: torch.device | str = "cpu",
    consensus: HalfMapResult | None = None,
) -> np.ndarray:
    """Latents ``(N, k)`` after ``iterations`` EM iterations (no run directory): each image's
    posterior-mean coordinates in the fitted subspace, rows in the dataset's order."""
    return fit_subspace(dataset, settings, iterations, device, consensus).pass_(update=False)[0]


def seed_subspace_at_poses(
    dataset: ParticleDataset,
    rotations: np.ndarray,
    shifts_A: np.ndarray,
    settings: SubspaceSettings,
    iterations: int,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, SubspaceReadout]:
    """Latents ``(N, settings.components)`` float32 for a method's per-image latents: each
    image's coordinates in a linear subspace of the heterogeneity fitted at the poses
    ``rotations (N, 3, 3)`` (RELION ``A``, acting on the map's coordinates) and origins
    ``shifts_A (N, 2)`` in Å (:func:`fit_subspace_latents`), scaled to an overall std of
    :data:`SEED_LATENT_STD`; and the readout that gives any image's coordinates on that
    scale. Every rank computes the same latents (the EM reduces over ranks)."""
    posed = dataset.with_poses(np.asarray(rotations, np.float64), np.asarray(shifts_A, np.float64))
    em = fit_subspace(posed, settings, iterations, device)
    z = em.pass_(update=False)[0]
    scale = SEED_LATENT_STD / max(float(z.std()), 1e-12)
    return (z * scale).astype(np.float32, copy=False), em.readout(scale)


def seed_latents_at_poses(
    dataset: ParticleDataset,
    rotations: np.ndarray,
    shifts_A: np.ndarray,
    settings: SubspaceSettings,
    iterations: int,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """The latents of :func:`seed_subspace_at_poses` alone."""
    return seed_subspace_at_poses(dataset, rotations, shifts_A, settings, iterations, device)[0]
