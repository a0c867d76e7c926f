"""CryoBench per-conformation FSC protocols (METHODS.md §1.1), method-agnostic.

Everything a method contributes comes in as arguments: per-image latents ``(N, zdim)``,
ground-truth state labels ``(N,)`` and a callable ``volume(z) -> (D, D, D)`` that
decodes one latent vector ``(zdim,)``. Ground-truth maps are a sequence indexed by the
label, a mapping ``label -> map``, or a callable ``label -> map`` (lazy loading). An
optional ``align(volume, gt) -> volume`` (e.g. :func:`cryohet.metrics.alignment.align_maps`
for ab initio methods) runs before the FSC; ``mask`` multiplies both maps.

* :func:`per_conformation_fsc` (the published numbers): for every state, the image
  latent nearest (Euclidean) to the mean latent of the state's images is decoded and
  compared with the state's map; AUC of the raw CryoBench FSC; mean, std (population,
  ``np.std``) and median over states.
* :func:`per_image_fsc` (CryoBench ``cdrgn_per_img_fsc.py``): ``n`` images at stride
  ``N // n``, each decoded at its own latent, AUC of ``|FSC|`` against its state's map;
  mean per class, and the overall mean/std over all sampled images (CryoBench's
  "Overall"), plus the mean of the class means. As in CryoBench the indices are
  ``arange(0, N, N // n)``, which gives slightly more than ``n`` images when ``n`` does
  not divide ``N``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .fsc import FSCCurve, auc, fsc_cryobench

__all__ = [
    "PerConformationResult",
    "PerImageResult",
    "nearest_to_mean",
    "per_conformation_fsc",
    "per_image_fsc",
]

#: Decoder: one latent vector (zdim,) -> map (D, D, D), numpy or torch.
VolumeFn = Callable[[np.ndarray], np.ndarray | torch.Tensor]
#: Ground-truth maps by state label: a sequence indexed by label, a mapping, or a callable.
GTVolumes = Sequence[np.ndarray] | Mapping[int, np.ndarray] | Callable[[int], np.ndarray]
#: Optional alignment of a decoded map onto its ground truth: (volume, gt) -> aligned volume.
AlignFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PerConformationResult:
    """Per state (sorted labels): chosen image index, AUC and curve; summary statistics."""

    states: np.ndarray
    image_index: np.ndarray
    auc: np.ndarray
    curves: list[FSCCurve] = field(repr=False)

    @property
    def mean(self) -> float:
        return float(np.nanmean(self.auc))

    @property
    def std(self) -> float:
        return float(np.nanstd(self.auc))

    @property
    def median(self) -> float:
        return float(np.nanmedian(self.auc))

    def summary(self) -> dict[str, float]:
        return {
            "auc_mean": self.mean,
            "auc_std": self.std,
            "auc_median": self.median,
            "n_states": float(len(self.states)),
        }


@dataclass(frozen=True)
class PerImageResult:
    """Sampled image indices, their labels and AUC of |FSC|; per-class means; overall stats."""

    image_index: np.ndarray
    labels: np.ndarray
    auc: np.ndarray
    class_auc: dict[int, float]

    @property
    def overall_mean(self) -> float:
        return float(np.mean(self.auc))

    @property
    def overall_std(self) -> float:
        return float(np.std(self.auc))

    @property
    def class_mean(self) -> float:
        return float(np.mean(list(self.class_auc.values())))

    def summary(self) -> dict[str, float]:
        return {
            "auc_overall_mean": self.overall_mean,
            "auc_overall_std": self.overall_std,
            "auc_class_mean": self.class_mean,
            "n_images": float(len(self.image_index)),
        }


def _gt_getter(gt_volumes: GTVolumes) -> Callable[[int], np.ndarray]:
    if callable(gt_volumes) and not isinstance(gt_volumes, (np.ndarray, torch.Tensor)):
        return gt_volumes
    if isinstance(gt_volumes, Mapping):
        return lambda s: gt_volumes[s]
    return lambda s: gt_volumes[int(s)]


def _to_numpy(v) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return np.asarray(v)


def _check(latents: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(latents)
    if z.ndim == 1:
        z = z[:, None]
    y = np.asarray(labels)
    if z.ndim != 2 or y.shape != (len(z),):
        raise ValueError(f"need latents (N, zdim) and labels (N,), got {z.shape} and {y.shape}")
    return z, y


def nearest_to_mean(latents: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """For each state, the index of the image latent nearest to the state's mean latent."""
    z, y = _check(latents, labels)
    out = {}
    for s in np.unique(y):
        idx = np.flatnonzero(y == s)
        zs = z[idx].astype(np.float64)
        d = np.sum((zs - zs.mean(axis=0)) ** 2, axis=1)
        out[int(s)] = int(idx[int(np.argmin(d))])
    return out


def _score(
    volume_fn: VolumeFn,
    z: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | torch.Tensor | None,
    align: AlignFn | None,
) -> FSCCurve:
    vol = _to_numpy(volume_fn(z))
    gt_np = _to_numpy(gt)
    if vol.shape != gt_np.shape:
        raise ValueError(f"decoded volume {vol.shape} and ground-truth map {gt_np.shape} differ in shape")
    if align is not None:
        vol = _to_numpy(align(vol, gt_np))
    return fsc_cryobench(gt_np, vol, mask)


def per_conformation_fsc(
    latents: np.ndarray,
    labels: np.ndarray,
    volume: VolumeFn,
    gt_volumes: GTVolumes,
    mask: np.ndarray | torch.Tensor | None = None,
    align: AlignFn | None = None,
) -> PerConformationResult:
    """CryoBench per-conformation FSC AUC: one decoded map per state (see module docstring)."""
    chosen = nearest_to_mean(latents, labels)
    z, _ = _check(latents, labels)
    get_gt = _gt_getter(gt_volumes)
    states = np.array(sorted(chosen), dtype=np.int64)
    curves = [_score(volume, z[chosen[int(s)]], get_gt(int(s)), mask, align) for s in states]
    return PerConformationResult(
        states=states,
        image_index=np.array([chosen[int(s)] for s in states], dtype=np.int64),
        auc=np.array([c.auc for c in curves]),
        curves=curves,
    )


def per_image_fsc(
    latents: np.ndarray,
    labels: np.ndarray,
    volume: VolumeFn,
    gt_volumes: GTVolumes,
    n: int,
    mask: np.ndarray | torch.Tensor | None = None,
    align: AlignFn | None = None,
) -> PerImageResult:
    """CryoBench per-image FSC: ``n`` images at stride ``N // n``, AUC of ``|FSC|`` each."""
    z, y = _check(latents, labels)
    N = len(z)
    if not 1 <= n <= N:
        raise ValueError(f"n must be in 1..{N}, got {n}")
    idx = np.arange(0, N, N // n)
    get_gt = _gt_getter(gt_volumes)
    aucs = []
    for i in idx:
        c = _score(volume, z[i], get_gt(int(y[i])), mask, align)
        aucs.append(auc(c.freq_per_px, c.fsc, absolute=True))
    aucs_np = np.array(aucs)
    lab = y[idx]
    class_auc = {int(c): float(np.mean(aucs_np[lab == c])) for c in np.unique(lab)}
    return PerImageResult(image_index=idx, labels=lab, auc=aucs_np, class_auc=class_auc)
