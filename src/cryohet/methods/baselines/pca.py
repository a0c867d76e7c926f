"""Linear-subspace baseline (3DVA-flavoured probabilistic PCA by EM), fixed poses and CTF.

Model (Punjani & Fleet's 3D variability analysis, as probabilistic PCA in image space):

    Y_i = CTF_i * shift_i * slice_i( mu + sum_j z_ij V_j ) + noise,   z_i ~ N(0, I_k)

with ``mu`` the consensus map (:func:`reconstruct_particles`, fixed), ``V_j`` the k
component maps (free scale), noise Gaussian with a per-shell variance (:mod:`.fourier`),
everything restricted to a low-pass band (shells up to the consensus half-map
FSC = 0.143 plus 2, or ``max_resolution_A``) and to a real-space mask (``mask``, or the
consensus thresholded at ``mask_threshold`` of its maximum, dilated 2 px, 3 px soft edge).

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

Components start as seeded random noise in the band and mask. After the last iteration a
final E-step gives the latents: each image's posterior-mean coordinates ``z_i`` (the
ridge-regularised least-squares fit of its residual by the CTF-projected components),
``(N, k)``. ``volume(z) = mu + sum_j z_j V_j`` (components sorted by norm, largest first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...console import get_logger
from ...errors import InputError, RunDirError, file_error
from ...imaging.bands import FourierBand
from ...imaging.fft import fft3_centered, ifft3_centered, radial_index_3d
from ...imaging.likelihood import ShellGaussian
from ...imaging.masks import threshold_mask
from ...imaging.projection import volume_to_fourier
from ...io.mrc import read_volume
from ...reconstruction.backprojection import BackprojectionAccumulator
from ...reconstruction.from_particles import reconstruct_particles
from ...reconstruction.half_maps import HalfMapResult
from ...representations.render import model_images, render
from ...representations.voxel import resample_volume
from ...training.distributed import all_reduce_sum_
from ...training.per_image import gather_rows_into
from ..base import TrainedModel, register_method
from .common import (
    BaselineData,
    BaselineOutputs,
    BaselineTrainer,
    iter_batches,
    load_resolved,
    load_state,
    run_baseline,
)
from .config import PCAConfig
from .fourier import band_shell_from_fsc, shell_of_resolution

__all__ = ["PCAConfig", "PCAModel", "train_pca", "fit_pca_latents"]

log = get_logger("baselines.pca")


def _lowpass(vol: torch.Tensor, shell: int) -> torch.Tensor:
    """Zero the Fourier components of ``vol`` beyond ``shell`` (voxels), real output."""
    keep = radial_index_3d(vol.shape[-1], device=vol.device) <= shell
    return ifft3_centered(fft3_centered(vol) * keep).real.to(vol.dtype)


def _mask(cfg: PCAConfig, consensus: torch.Tensor, box: int) -> torch.Tensor:
    if cfg.mask is not None:
        m, _ = read_volume(cfg.mask)
        if m.shape != (box,) * 3:
            raise file_error(cfg.mask, f"mask is {m.shape[0]}^3 but the working box is {box}")
        return torch.from_numpy(m).to(consensus)
    try:
        return threshold_mask(consensus, cfg.mask_threshold * float(consensus.max()), dilate_px=2.0, soft_edge_px=3.0)
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


class _PCAEM:
    """State and passes of the EM (consensus, mask, band, components, noise)."""

    def __init__(self, cfg: PCAConfig, data: BaselineData, consensus: HalfMapResult | None = None) -> None:
        self.cfg, self.data = cfg, data
        dev = data.device
        cons = consensus or reconstruct_particles(
            data.dataset, batch_size=cfg.batch_size, device=dev, seed=cfg.seed, show_progress=False
        )
        self.mean = cons.full.to(dev)
        self.snr = cons.snr.to(dev)
        self.shell = (
            shell_of_resolution(cfg.max_resolution_A, data.box, data.apix)
            if cfg.max_resolution_A
            else band_shell_from_fsc(cons.fsc, data.box)
        )
        self.band = FourierBand.up_to_shell(data.box, data.apix, self.shell, dev)
        self.mask = _mask(cfg, self.mean, data.box).to(dev)
        self.mean_ft = volume_to_fourier(self.mean)
        self.sigma2 = torch.ones(self.band.n_shells, dtype=torch.float64, device=dev)
        gen = torch.Generator().manual_seed(cfg.seed)
        V = torch.randn((cfg.components,) + (data.box,) * 3, generator=gen).to(dev)
        V = torch.stack([_lowpass(v, self.shell) * self.mask for v in V])
        scale = float(self.mean.norm()) * 0.1 / float(V[0].norm().clamp_min(1e-30))
        self.V = _orthogonalise(V * scale)

    def _prepare(self) -> list:
        return [volume_to_fourier(v) for v in self.V]

    @torch.no_grad()
    def pass_(self, update: bool) -> tuple[np.ndarray, float]:
        """One pass: E-step latents ``(N, k)``; with ``update`` also the M-step and noise update.

        Returns the latents and the mean squared residual per band pixel (for the log).
        """
        d, cfg, band = self.data, self.cfg, self.band
        k = cfg.components
        vfts = self._prepare()
        inv = ShellGaussian(band, self.sigma2).pixel_weights
        eye = torch.eye(k, dtype=torch.float64, device=d.device)
        accs = [BackprojectionAccumulator(d.box, d.apix, device=d.device) for _ in range(k)] if update else []
        S = torch.zeros(k, k, dtype=torch.float64, device=d.device)
        noise = torch.zeros(band.n_shells, dtype=torch.float64, device=d.device)
        z_all = np.zeros((d.n, k), dtype=np.float32)
        mine = np.zeros(0, dtype=np.int64)
        for rows, batch in iter_batches(d, cfg.batch_size, d.device):
            filt = band.filters(batch.ctf_params, batch.shifts_A)
            R = (band.observed(batch.images) - model_images(self.mean_ft, batch.rotations, band, filt)).flatten(-2)
            Bm = torch.stack([model_images(v, batch.rotations, band, filt) for v in vfts], dim=1).flatten(-2)
            Bw = Bm * inv.flatten()  # (B, k, P) over the band's sub-grid pixels P
            M = torch.einsum("bjp,blp->bjl", Bw.conj(), Bm).real.to(torch.float64)
            b = torch.einsum("bjp,bp->bj", Bw.conj(), R).real.to(torch.float64)
            Sigma = torch.linalg.inv(M + eye)
            z = (Sigma @ b[:, :, None])[:, :, 0]
            z_all[rows] = z.cpu().numpy()
            mine = np.concatenate([mine, rows])
            fit = R - torch.einsum("bj,bjp->bp", z.to(Bm.real.dtype).to(Bm.dtype), Bm)
            noise += band.shell_sums((fit.abs() ** 2).unflatten(-1, band.shape))
            if update:
                S += (Sigma + z[:, :, None] * z[:, None, :]).sum(dim=0)
                resid = batch.images - render(
                    self.mean_ft, batch.rotations, batch.shifts_A, batch.ctf_params, d.box, d.apix, output="real"
                )
                zf = z.to(resid.dtype)
                for j in range(k):
                    accs[j].add(resid * zf[:, j, None, None], batch.rotations, batch.shifts_A, batch.ctf_params)
        gather_rows_into(z_all, mine)  # every rank's share of the images
        all_reduce_sum_(noise)
        msr = float(noise.sum() / (d.n * float(band.weights.sum())))
        if update:
            all_reduce_sum_(S)
            self.sigma2 = ShellGaussian.estimate_sigma2(band, noise, d.n)
            G = torch.stack([a.all_reduce().finalize(self.snr) for a in accs]).to(torch.float64)  # (k, D, D, D)
            mix = torch.linalg.solve(S / d.n, G.reshape(k, -1))
            V = mix.reshape(G.shape).to(self.V.dtype)
            V = torch.stack([_lowpass(v, self.shell) * self.mask for v in V])
            self.V = _orthogonalise(V)
        return z_all, msr

    def initial_noise(self) -> None:
        """Noise spectrum from the residuals against the mean alone."""
        d, band = self.data, self.band
        noise = torch.zeros(band.n_shells, dtype=torch.float64, device=d.device)
        for _, batch in iter_batches(d, self.cfg.batch_size, d.device):
            filt = band.filters(batch.ctf_params, batch.shifts_A)
            model = model_images(self.mean_ft, batch.rotations, band, filt)
            noise += band.shell_sums((band.observed(batch.images) - model).abs() ** 2)
        self.sigma2 = ShellGaussian.estimate_sigma2(band, all_reduce_sum_(noise), d.n)


def fit_pca_latents(cfg: PCAConfig, data: BaselineData, consensus: HalfMapResult | None = None) -> np.ndarray:
    """Latents ``(N, k)`` of ``cfg.iterations`` EM iterations (no run directory; e.g. to seed classify3d)."""
    em = _PCAEM(cfg, data, consensus)
    em.initial_noise()
    for _ in range(cfg.iterations):
        em.pass_(update=True)
    return em.pass_(update=False)[0]


class PCATrainer(BaselineTrainer):
    """Set-up (consensus, band, mask, initial noise) when built; one EM iteration per epoch;
    the final E-step in :meth:`outputs`."""

    def __init__(self, cfg: PCAConfig, data: BaselineData) -> None:
        super().__init__(cfg, data)
        self.em = _PCAEM(cfg, data)
        log.info(
            "%d components, %d particles, band to shell %d (%.1f Å)",
            cfg.components,
            data.n,
            self.em.shell,
            data.box * data.apix / self.em.shell,
        )
        self.em.initial_noise()

    @property
    def n_epochs(self) -> int:
        return self.cfg.iterations

    def train_epoch(self, epoch: int) -> dict:
        _, msr = self.em.pass_(update=True)
        norms = [float(v.norm()) for v in self.em.V]
        return {"n_images": self.data.n, "mean_sq_residual": msr, "component_norms": norms}

    def get_state(self) -> dict:
        return {"components": self.em.V.cpu(), "sigma2": self.em.sigma2.cpu()}

    def set_state(self, state: dict) -> None:
        dev = self.data.device
        self.em.V = state["components"].to(dev)
        self.em.sigma2 = state["sigma2"].to(dev)

    def outputs(self) -> BaselineOutputs:
        em, k = self.em, self.cfg.components
        z, _ = em.pass_(update=False)
        comps = em.V.cpu()
        norms = comps.reshape(k, -1).norm(dim=1)
        maps: dict[str, Any] = {"mean": em.mean.cpu().numpy(), "mask": em.mask.cpu().numpy()}
        maps.update({f"component_{j:03d}": comps[j].numpy() for j in range(k)})
        return BaselineOutputs(
            state={"mean": em.mean.cpu(), "components": comps},
            latents=z,
            maps=maps,
            extras={
                "pca": {
                    "component_norms": norms.numpy(),
                    "latent_std": z.std(axis=0),
                    "band_shell": np.array(em.shell),
                    "mask": em.mask.cpu().numpy(),
                }
            },
            resolved={"band_shell": em.shell, "component_norms": norms.tolist()},
        )


def train_pca(cfg: PCAConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Fit k components of heterogeneity into ``cfg.out``; returns the run directory."""
    return run_baseline(cfg, PCATrainer, resume=resume, overwrite=overwrite)


@register_method
class PCAModel(TrainedModel):
    """``volume(z) = mean + sum_j z_j component_j``."""

    method = "pca"
    version = 1

    def __init__(self, run, mean: np.ndarray, components: np.ndarray, box: int, apix: float) -> None:
        super().__init__(run, box, apix)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.components = np.asarray(components, dtype=np.float32)
        cube = (self.box,) * 3
        if self.mean.shape != cube or self.components.ndim != 4 or self.components.shape[1:] != cube:
            raise RunDirError(
                f"{run.model}: mean {self.mean.shape} and components {self.components.shape} do not match "
                f"the box {self.box}"
            )

    def expected_zdim(self) -> int:
        return len(self.components)

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> PCAModel:
        run, cfg, resolved = load_resolved(run_dir, PCAConfig)
        state = load_state(run, ("mean", "components"))
        if len(state["components"]) != cfg.components:
            raise RunDirError(
                f"{run.model}: {len(state['components'])} components but {run.config} says {cfg.components}"
            )
        return cls(run, state["mean"].numpy(), state["components"].numpy(), resolved["box"], resolved["apix"])

    def volume(self, z: np.ndarray, box: int | None = None, apix: float | None = None) -> np.ndarray:
        zz = np.asarray(z, dtype=np.float32).reshape(-1)
        if zz.size != len(self.components):
            raise InputError(f"latent has {zz.size} values but the pca run has {len(self.components)} components")
        vol = self.mean + np.tensordot(zz, self.components, axes=1)
        b = self.box if box is None else int(box)
        a = self.apix if apix is None else float(apix)
        if b == self.box and abs(a - self.apix) < 1e-9 * self.apix:
            return vol.astype(np.float32)
        return resample_volume(torch.from_numpy(np.ascontiguousarray(vol)), self.apix, b, a).numpy().astype(np.float32)
