"""3D classification baseline (the classic tool): EM over K class maps with given poses.

Model (RELION-style maximum likelihood, poses and CTF fixed): each image comes from one
of K maps ``V_k`` with prior ``pi_k``; its DFT is ``CTF * shift * slice_A(V_k)`` plus
Gaussian noise with a per-shell variance (:mod:`cryohet.reconstruction.band_limits`).

1. **Consensus** of all particles (:func:`reconstruct_particles`): its half-map FSC sets
   the E-step band (shells up to FSC = 0.143 plus 2, or ``max_resolution_A``) and its
   residuals the initial noise spectrum.
2. **Initialisation** (``init``): ``"pca"`` (default, ours) runs a few iterations of the
   :mod:`.pca` baseline (``min(K - 1, 4)`` components) and splits the particles by
   k-means (K, seeded) of its latents; ``"random"`` (RELION's) splits them at random into
   K equal subsets. Each subset is reconstructed. Measured on a 2-state assembly set
   (2 000 particles, D=32, SNR 0.05, 8 iterations): from a random split the classes
   freeze (every image prefers the map it helped build), ARI 0.004; from the PCA split,
   ARI 0.93 (0.71 after one iteration).
3. **E-step**: ``log p_ik = log pi_k - sum_band |Y_i - M_ik|^2 / sigma2(s)`` with ``M_ik``
   rendered from class k's full map (as RELION); posteriors by a softmax over k. The
   noise spectrum is re-estimated from the posterior-weighted residuals and ``pi_k``
   from the mean posteriors.

   Known limit, measured: an image's own noise is part of the map it is scored against
   (strongly at high frequency, where a Fourier voxel collects few images), and at
   SNR 0.05 this self-bias freezes the classes: on 1 000 igg-1d images (8 classes,
   D=32) no image changed class in any of 15 iterations after the PCA split, so the
   result is the initial split's per-class maps. Scoring against the half map an image
   did not contribute to removes the self-bias but, measured on the same set, about 70 %
   of the images change class every iteration and the largest class absorbs the others
   (sizes 113..163 -> 4..426 in 6 iterations), with per-class noise spectra too; so the
   full map stays.
4. **M-step**: each class map is a weighted reconstruction
   (:func:`reconstruct_particles` with ``weights = posteriors[:, k]``; weights below
   ``posterior_floor`` are dropped). Its half-map Wiener filter is the regulariser
   (RELION's tau2 from the class's own spectral SNR).
5. A class whose share falls below ``min_class_fraction`` is re-seeded from a random
   half of the largest class (so K stays K).

Iterate up to ``iterations`` times, stopping once at most ``stop_changed`` of the images
changed class in an iteration (and no class was re-seeded). Latents are the last
posteriors ``(N, K)`` (classes sorted by size, largest first); ``volume(z)`` is the map
of ``argmax(z)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...console import get_logger
from ...errors import InputError
from ...imaging.bands import FourierBand
from ...imaging.likelihood import ShellGaussian
from ...imaging.projection import volume_to_fourier
from ...reconstruction.band_limits import band_shell_from_fsc, shell_of_resolution
from ...reconstruction.from_particles import reconstruct_particles
from ...representations.render import model_images
from ...training.distributed import all_reduce_sum_, broadcast_object
from ...training.per_image import gather_rows_into
from ..base import register_method
from .common import (
    BaselineData,
    BaselineOutputs,
    BaselineTrainer,
    MapSetModel,
    iter_batches,
    run_baseline,
)
from .config import Classify3DConfig

__all__ = ["Classify3DConfig", "Classify3DModel", "train_classify3d"]

log = get_logger("baselines.classify3d")


def _reconstruct(
    data: BaselineData, cfg: Classify3DConfig, weights: np.ndarray | None = None, rows: np.ndarray | None = None
):
    return reconstruct_particles(
        data.dataset,
        rows=rows,
        weights=weights,
        batch_size=cfg.batch_size,
        device=data.device,
        seed=cfg.seed,
        show_progress=False,
    )


def _noise_from(data: BaselineData, cfg: Classify3DConfig, band: FourierBand, vol: torch.Tensor) -> torch.Tensor:
    """Per-shell noise variance ``(n_shells,)`` from the residuals against one map."""
    vft = volume_to_fourier(vol.to(data.device))
    acc = torch.zeros(band.n_shells, dtype=torch.float64, device=data.device)
    for _, batch in iter_batches(data, cfg.batch_size, data.device):
        model = model_images(vft, batch.rotations, band, band.filters(batch.ctf_params, batch.shifts_A))
        acc += band.shell_sums((band.observed(batch.images) - model).abs() ** 2)
    return ShellGaussian.estimate_sigma2(band, all_reduce_sum_(acc), data.n)


@torch.no_grad()
def e_step(
    data: BaselineData,
    cfg: Classify3DConfig,
    band: FourierBand,
    maps: list[torch.Tensor],
    sigma2: torch.Tensor,
    log_prior: np.ndarray,
) -> tuple[np.ndarray, torch.Tensor, float]:
    """Posteriors ``(N, K)``, the updated noise spectrum ``(n_shells,)`` and the total log-likelihood."""
    K = len(maps)
    dev = data.device
    vfts = [volume_to_fourier(m.to(dev)) for m in maps]
    inv = ShellGaussian(band, sigma2.to(dev)).pixel_weights
    post = np.zeros((data.n, K))
    mine = np.zeros(0, dtype=np.int64)
    noise = torch.zeros(band.n_shells, dtype=torch.float64, device=dev)
    total = 0.0
    lp = torch.as_tensor(log_prior, device=dev, dtype=torch.float64)
    for rows, batch in iter_batches(data, cfg.batch_size, dev):
        Y = band.observed(batch.images)
        filt = band.filters(batch.ctf_params, batch.shifts_A)
        power = torch.stack([(Y - model_images(v, batch.rotations, band, filt)).abs() ** 2 for v in vfts], dim=1)
        ll = -(power * inv).sum(dim=(-2, -1)).to(torch.float64) + lp  # (B, K)
        p = torch.softmax(ll, dim=1)
        total += float(torch.logsumexp(ll, dim=1).sum())
        noise += band.shell_sums((p[:, :, None, None].to(power.dtype) * power).sum(dim=1))
        post[rows] = p.cpu().numpy()
        mine = np.concatenate([mine, rows])
    gather_rows_into(post, mine)  # every rank's share of the images
    totals = all_reduce_sum_(torch.tensor([total], dtype=torch.float64))
    total = float(totals[0])
    sigma2_new = ShellGaussian.estimate_sigma2(band, all_reduce_sum_(noise), data.n)
    return post, sigma2_new, total


def _reseed(weights: np.ndarray, cfg: Classify3DConfig, rng: np.random.Generator) -> list[int]:
    """Give classes below ``min_class_fraction`` a random half of the largest class (in place)."""
    n, K = weights.shape
    reseeded = []
    for k in range(K):
        if weights[:, k].sum() >= max(cfg.min_class_fraction * n, 2.0):
            continue
        hard = weights.argmax(axis=1)
        big = int(np.argmax(np.bincount(hard, minlength=K)))
        members = np.flatnonzero(hard == big)
        moved = rng.permutation(members)[: len(members) // 2]
        weights[:, k] = 0.0
        weights[moved, k] = 1.0
        weights[moved, big] = 0.0
        reseeded.append(k)
    return reseeded


def _initial_split(data: BaselineData, cfg: Classify3DConfig, consensus, rng: np.random.Generator) -> np.ndarray:
    """Initial class of every particle (see ``Classify3DConfig.init``)."""
    K = cfg.classes
    if cfg.init == "random":
        return rng.permutation(data.n) % K
    from sklearn.cluster import KMeans

    from ...reconstruction.linear_subspace import SubspaceSettings, fit_subspace_latents

    settings = SubspaceSettings(
        components=min(K - 1, 4), max_resolution_A=cfg.max_resolution_A, batch_size=cfg.batch_size, seed=cfg.seed
    )
    z = fit_subspace_latents(data.dataset, settings, cfg.init_iterations, data.device, consensus)
    split = KMeans(n_clusters=K, n_init=10, random_state=cfg.seed).fit_predict(z)
    log.info(
        "initial split from %d PCA components: sizes %s", settings.components, np.bincount(split, minlength=K).tolist()
    )
    return split


class Classify3DTrainer(BaselineTrainer):
    """Epoch 0 sets up (consensus, band, noise, initial split) and runs the first EM
    iteration; every epoch is one iteration; ``done`` once the classes stop changing."""

    def __init__(self, cfg: Classify3DConfig, data: BaselineData) -> None:
        super().__init__(cfg, data)
        if data.n < 2 * cfg.classes:
            raise InputError(f"{cfg.data.path}: {data.n} particles are too few for {cfg.classes} classes")
        self.rng = np.random.default_rng(cfg.seed)
        self.shell: int | None = None

    @property
    def n_epochs(self) -> int:
        return self.cfg.iterations

    @property
    def band(self) -> FourierBand:
        return FourierBand.up_to_shell(self.data.box, self.data.apix, self.shell, self.data.device)

    def _setup(self) -> None:
        cfg, data, K = self.cfg, self.data, self.cfg.classes
        consensus = _reconstruct(data, cfg)
        self.shell = (
            shell_of_resolution(cfg.max_resolution_A, data.box, data.apix)
            if cfg.max_resolution_A
            else band_shell_from_fsc(consensus.fsc, data.box)
        )
        log.info(
            "%d classes, %d particles, E-step to shell %d (%.1f Å)",
            K,
            data.n,
            self.shell,
            data.box * data.apix / self.shell,
        )
        self.sigma2 = _noise_from(data, cfg, self.band, consensus.full)
        split = broadcast_object(_initial_split(data, cfg, consensus, self.rng))  # rank 0's k-means
        self.maps = [_reconstruct(data, cfg, rows=np.flatnonzero(split == k)).full for k in range(K)]
        self.log_prior = np.full(K, -np.log(K))
        self.hard_prev = split
        self.post = np.eye(K)[split]

    def train_epoch(self, epoch: int) -> dict:
        cfg, data, K = self.cfg, self.data, self.cfg.classes
        if self.shell is None:
            self._setup()
        post, self.sigma2, total = e_step(data, cfg, self.band, self.maps, self.sigma2, self.log_prior)
        hard = post.argmax(axis=1)
        changed = float(np.mean(hard != self.hard_prev))
        self.hard_prev, self.post = hard, post
        weights = np.where(post >= cfg.posterior_floor, post, 0.0)
        reseeded = _reseed(weights, cfg, self.rng)
        share = weights.sum(axis=0) / weights.sum()
        self.log_prior = np.log(np.clip(share, 1e-8, None))
        self.maps = [_reconstruct(data, cfg, weights=weights[:, k]).full for k in range(K)]
        sizes = np.bincount(hard, minlength=K)
        if changed <= cfg.stop_changed and not reseeded:
            log.info(
                "converged: %.2f%% of the images changed class (stop at %.2f%%)", 100 * changed, 100 * cfg.stop_changed
            )
            self.done = True
        return {
            "n_images": data.n,
            "log_likelihood": total,
            "changed": changed,
            "class_sizes": sizes.tolist(),
            "reseeded": reseeded,
        }

    def get_state(self) -> dict:
        return {
            "shell": int(self.shell),
            "maps": [m.cpu() for m in self.maps],
            "sigma2": self.sigma2.cpu(),
            "log_prior": torch.from_numpy(self.log_prior),
            "hard_prev": torch.from_numpy(np.asarray(self.hard_prev, np.int64)),
            "post": torch.from_numpy(self.post),
            "rng": self.rng.bit_generator.state,
            "done": self.done,
        }

    def set_state(self, state: dict) -> None:
        dev = self.data.device
        self.shell = int(state["shell"])
        self.maps = [m.to(dev) for m in state["maps"]]
        self.sigma2 = state["sigma2"].to(dev)
        self.log_prior = state["log_prior"].numpy()
        self.hard_prev = state["hard_prev"].numpy()
        self.post = state["post"].numpy()
        self.rng.bit_generator.state = state["rng"]
        self.done = bool(state["done"])

    def outputs(self) -> BaselineOutputs:
        K = self.cfg.classes
        order = np.argsort(-self.post.sum(axis=0), kind="stable")
        post = self.post[:, order]
        stack = np.stack([self.maps[k].cpu().numpy() for k in order])
        return BaselineOutputs(
            state={"maps": torch.from_numpy(stack)},
            latents=post.astype(np.float32),
            maps={f"class_{k:03d}": stack[k] for k in range(K)},
            extras={
                "classes": {
                    "posteriors": post.astype(np.float32),
                    "sigma2": self.sigma2.cpu().numpy(),
                    "band_shell": np.array(self.shell),
                }
            },
            resolved={"band_shell": self.shell, "class_sizes": np.bincount(post.argmax(axis=1), minlength=K).tolist()},
        )


def train_classify3d(cfg: Classify3DConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Run K-class 3D classification into ``cfg.out``; returns the run directory."""
    return run_baseline(cfg, Classify3DTrainer, resume=resume, overwrite=overwrite)


@register_method
class Classify3DModel(MapSetModel):
    """The map of class ``argmax(z)``."""

    method = "classify3d"
    version = 1
    config_cls = Classify3DConfig
