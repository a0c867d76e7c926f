"""Fourier shell correlation: the CryoBench curve and AUC, and the conventional FSC.

Both take two maps of shape ``(D, D, D)`` (numpy arrays or torch tensors, any float
dtype, on any device; computed in float64 on the input's device) and an optional
real-space ``mask`` that multiplies **both** maps before the Fourier transform
(``mask=None`` is the unmasked score). Transforms are :func:`cryohet.imaging.fft.fft3_centered`
(zero frequency at index ``D // 2``); the integer Fourier coordinates are
``index - D // 2`` on every axis, i.e. ``-D/2 .. D/2 - 1`` for even ``D``.

**CryoBench** (:func:`fsc_cryobench`, METHODS.md §1.1, CryoBench ``get_fsc_curve``):

* ``r = sqrt(x^2 + y^2 + z^2)`` in Fourier voxels; for ``k = 1 .. D/2 - 1`` shell ``k``
  holds the voxels with ``k - 1 <= r < k`` (shell 1 is the DC voxel alone);
* ``FSC_k = Re<F1, F2> / sqrt(|F1|^2 |F2|^2)`` over the shell (1.0 where the
  denominator is 0, as CryoBench does), ``FSC_0 = 1``;
* abscissa ``pixres = k / D`` in cycles/pixel (divide by the pixel size for 1/Å);
* ``AUC`` = trapezoidal area under FSC over ``[0, (D/2 - 1) / D]``, *not* normalised
  (``(D/2 - 1) / D`` for identical maps: 0.4921875 at D=128, 0.484375 at D=64).

**AUC on the raw curve.** CryoBench's scripts save the raw FSC values (``np.savetxt`` /
``DataFrame.to_csv``; only the plots are drawn with ``ylim(0, 1)``) and compute
``sklearn.metrics.auc(pixres, fsc)`` on those saved values, so negative shells lower the
AUC. :attr:`FSCCurve.auc` does the same. METHODS.md's "saved curves are clipped to
[0, 1]" does not match that code; :meth:`FSCCurve.clipped` gives the clipped curve
(and its AUC) for plotting or comparison. The per-image variant uses ``|FSC|``
(:func:`auc`, ``absolute=True``).

**Conventional FSC** (:func:`fsc_standard`): shells by rounded radius
``round(r) = 0 .. D // 2`` (up to Nyquist), frequency ``k / D`` cycles/pixel; the
resolution at a threshold (0.5, 0.143) is the linearly interpolated first crossing
(:func:`resolution_A`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch

from ..imaging.fft import fft3_centered

__all__ = [
    "FSCCurve",
    "fsc_cryobench",
    "fsc_standard",
    "cryobench_shell_index",
    "standard_shell_index",
    "auc",
    "crossing_frequency",
    "resolution_A",
    "shell_resolution_A",
    "fsc_from_shells",
]


@dataclass(frozen=True)
class FSCCurve:
    """An FSC curve. ``freq_per_px`` in cycles/pixel (``freq_per_px / apix`` is 1/Å).

    ``fsc`` holds the raw correlations (not clipped); ``auc`` is the trapezoidal area
    under ``fsc`` against ``freq_per_px`` (CryoBench's number for :func:`fsc_cryobench`);
    ``n_voxels`` counts the Fourier voxels per shell (0 for the CryoBench point
    ``k = 0``, which is set to 1, not measured); ``box`` is ``D``.
    """

    freq_per_px: np.ndarray
    fsc: np.ndarray
    auc: float
    n_voxels: np.ndarray
    box: int

    def freq_per_A(self, apix: float) -> np.ndarray:
        """Shell frequencies in 1/Å for a pixel size ``apix`` (Å/px)."""
        return self.freq_per_px / float(apix)

    def clipped(self) -> FSCCurve:
        """The curve clipped to ``[0, 1]``, with the AUC of the clipped values."""
        fsc = np.clip(self.fsc, 0.0, 1.0)
        return replace(self, fsc=fsc, auc=auc(self.freq_per_px, fsc))


def _as_tensor(
    x: np.ndarray | torch.Tensor, device: torch.device | None = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    t = t.detach()
    if device is not None:
        t = t.to(device)
    return t.to(dtype)


def _both_float32(vol1: np.ndarray | torch.Tensor, vol2: np.ndarray | torch.Tensor) -> bool:
    return all(str(getattr(v, "dtype", "")).endswith("float32") for v in (vol1, vol2))


def _prepare(
    vol1: np.ndarray | torch.Tensor,
    vol2: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    a = _as_tensor(vol1, dtype=dtype)
    b = _as_tensor(vol2, a.device, dtype)
    if a.ndim != 3 or len(set(a.shape)) != 1:
        raise ValueError(f"FSC needs cubic (D, D, D) maps, got shape {tuple(a.shape)}")
    if b.shape != a.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if mask is not None:
        m = _as_tensor(mask, a.device, dtype)
        if m.shape != a.shape:
            raise ValueError(f"mask shape {tuple(m.shape)} differs from the maps' {tuple(a.shape)}")
        a, b = a * m, b * m
    return a, b


def _radius_sq(D: int, device: torch.device) -> torch.Tensor:
    c = torch.arange(D, device=device, dtype=torch.int64) - D // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    return x * x + y * y + z * z


def cryobench_shell_index(D: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(D, D, D) int64 CryoBench shell per Fourier voxel: ``k`` with ``k - 1 <= r < k``.

    ``k = floor(r) + 1``; voxels with ``r >= D/2 - 1`` (outside the last shell
    ``k = D/2 - 1``) get ``-1``. Computed from the exact integer ``r^2``. Cached: do not
    modify the returned tensor.
    """
    return _cryobench_shells(int(D), str(torch.device(device or "cpu")))


@lru_cache(maxsize=4)
def _cryobench_shells(D: int, device: str) -> torch.Tensor:
    r2 = _radius_sq(D, torch.device(device))
    k = torch.floor(torch.sqrt(r2.to(torch.float64))).to(torch.int64)
    # guard against sqrt rounding: enforce k^2 <= r2 < (k + 1)^2 exactly
    k = k - (k * k > r2).to(torch.int64) + ((k + 1) * (k + 1) <= r2).to(torch.int64)
    shell = k + 1
    return torch.where(shell <= D // 2 - 1, shell, torch.full_like(shell, -1))


def standard_shell_index(D: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(D, D, D) int64 shell ``round(r)`` for ``r <= D // 2`` (Nyquist), ``-1`` beyond (cached)."""
    return _standard_shells(int(D), str(torch.device(device or "cpu")))


@lru_cache(maxsize=4)
def _standard_shells(D: int, device: str) -> torch.Tensor:
    r2 = _radius_sq(D, torch.device(device))
    k = torch.round(torch.sqrt(r2.to(torch.float64))).to(torch.int64)
    return torch.where(k <= D // 2, k, torch.full_like(k, -1))


def fsc_from_shells(
    F1: torch.Tensor, F2: torch.Tensor, shells: torch.Tensor, n_shells: int, empty_value: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-shell ``Re<F1, F2> / sqrt(|F1|^2 |F2|^2)`` for shells ``0 .. n_shells - 1``.

    Voxels with a negative shell index are ignored. A shell with a zero denominator
    gets ``empty_value``. Returns ``(fsc, n_voxels)`` as float64 / int64 numpy arrays.
    """
    sel = shells.reshape(-1) >= 0
    idx = shells.reshape(-1)[sel]
    f1 = F1.reshape(-1)[sel]
    f2 = F2.reshape(-1)[sel]
    cross = torch.bincount(idx, weights=(f1 * f2.conj()).real, minlength=n_shells)[:n_shells]
    p1 = torch.bincount(idx, weights=f1.abs() ** 2, minlength=n_shells)[:n_shells]
    p2 = torch.bincount(idx, weights=f2.abs() ** 2, minlength=n_shells)[:n_shells]
    count = torch.bincount(idx, minlength=n_shells)[:n_shells]
    den = torch.sqrt(p1 * p2)
    safe = torch.where(den > 0, den, torch.ones_like(den))
    fsc = torch.where(den > 0, cross / safe, torch.full_like(den, empty_value))
    return fsc.cpu().numpy(), count.cpu().numpy()


def auc(freq: np.ndarray, fsc: np.ndarray, absolute: bool = False) -> float:
    """Trapezoidal area under ``fsc`` vs ``freq`` (``sklearn.metrics.auc``); ``|fsc|`` if ``absolute``."""
    f = np.asarray(freq, dtype=np.float64)
    y = np.abs(np.asarray(fsc, dtype=np.float64)) if absolute else np.asarray(fsc, dtype=np.float64)
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(f)))


def fsc_cryobench(
    vol1: np.ndarray | torch.Tensor,
    vol2: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
) -> FSCCurve:
    """CryoBench FSC curve and (unnormalised, raw-curve) AUC; see the module docstring.

    Returns ``D // 2`` points: ``freq_per_px = k / D`` and ``fsc[k]`` for ``k = 0 .. D/2 - 1``
    (``fsc[0] = 1``). ``D`` must be even, as in CryoBench.
    """
    a, b = _prepare(vol1, vol2, mask)
    D = a.shape[-1]
    if D % 2:
        raise ValueError(f"the CryoBench FSC is defined for even box sizes, got D={D}")
    n = D // 2
    shells = cryobench_shell_index(D, a.device)
    fsc, count = fsc_from_shells(fft3_centered(a), fft3_centered(b), shells, n, empty_value=1.0)
    fsc[0] = 1.0
    count[0] = 0
    freq = np.arange(n, dtype=np.float64) / D
    return FSCCurve(freq_per_px=freq, fsc=fsc, auc=auc(freq, fsc), n_voxels=count, box=D)


def _standard_sums(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Conventional-FSC shell sums on the half spectrum (memory ~ two ``D^2 (D/2 + 1)``
    complex arrays; shells computed plane by plane, no ``D^3`` index grids).

    Shell ``round(r)`` of the integer frequency ``(z, y, x)``; each ``x > 0`` column (but the
    self-mirrored Nyquist column of an even box) stands for itself and its Hermitian mirror,
    so the sums equal those over the full centred spectrum. Phases from the centring shift
    cancel in ``F1 F2*`` and ``|F|^2``.
    """
    D = a.shape[-1]
    n = D // 2 + 1
    F1 = torch.fft.rfftn(a, dim=(-3, -2, -1))
    F2 = torch.fft.rfftn(b, dim=(-3, -2, -1))
    i = torch.arange(D, device=a.device, dtype=torch.int64)
    f = torch.where(i <= D - 1 - D // 2, i, i - D)
    fx = torch.arange(D // 2 + 1, device=a.device, dtype=torch.int64)
    mult = torch.full((D // 2 + 1,), 2.0, device=a.device, dtype=torch.float64)
    mult[0] = 1.0
    if D % 2 == 0:
        mult[-1] = 1.0
    yx = f[:, None] ** 2 + fx[None, :] ** 2
    sums = torch.zeros(4, n, device=a.device, dtype=torch.float64)
    for z in range(D):
        k = torch.round(torch.sqrt((yx + f[z] ** 2).to(torch.float64))).to(torch.int64).reshape(-1)
        keep = k < n
        k = k[keep]
        m = mult.expand(D, -1).reshape(-1)[keep]
        f1, f2 = F1[z].reshape(-1)[keep], F2[z].reshape(-1)[keep]
        for row, vals in enumerate(((f1 * f2.conj()).real, f1.abs() ** 2, f2.abs() ** 2, torch.ones_like(m))):
            sums[row].index_add_(0, k, vals * m)
    cross, p1, p2, count = sums
    den = torch.sqrt(p1 * p2)
    safe = torch.where(den > 0, den, torch.ones_like(den))
    fsc = torch.where(den > 0, cross / safe, torch.zeros_like(den))
    return fsc.cpu().numpy(), count.round().to(torch.int64).cpu().numpy()


def fsc_standard(
    vol1: np.ndarray | torch.Tensor,
    vol2: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
) -> FSCCurve:
    """Conventional FSC: shells of rounded radius ``0 .. D // 2``, frequency ``k / D`` cycles/px.

    Shell 0 is the DC voxel (``+-1``); a shell where either map has no power gets 0.
    ``auc`` is the trapezoidal area over ``[0, (D // 2) / D]`` (not a CryoBench number).
    This is cryohet's one half-map FSC (``cryohet backproject``, ``train homogeneous``,
    ``cryohet fsc``); :func:`resolution_A` is its one resolution rule. Two float32 maps are
    transformed in float32 (sums in float64; ~1e-7 from the float64 result, and a quarter
    of the memory: large boxes), anything else in float64.
    """
    a, b = _prepare(vol1, vol2, mask, torch.float32 if _both_float32(vol1, vol2) else torch.float64)
    D = a.shape[-1]
    n = D // 2 + 1
    fsc, count = _standard_sums(a, b)
    freq = np.arange(n, dtype=np.float64) / D
    return FSCCurve(freq_per_px=freq, fsc=fsc, auc=auc(freq, fsc), n_voxels=count, box=D)


def crossing_frequency(curve: FSCCurve, threshold: float) -> float | None:
    """Frequency (cycles/px) where the FSC first falls below ``threshold``.

    Linear interpolation between the last shell at or above the threshold and the first
    below it; ``0.0`` if the first point is already below; ``None`` if the curve never
    falls below the threshold.
    """
    y = np.asarray(curve.fsc, dtype=np.float64)
    f = np.asarray(curve.freq_per_px, dtype=np.float64)
    below = np.flatnonzero(y < threshold)
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return 0.0
    y0, y1 = y[i - 1], y[i]
    w = (y0 - threshold) / (y0 - y1)
    return float(f[i - 1] + w * (f[i] - f[i - 1]))


def resolution_A(curve: FSCCurve, apix: float, threshold: float = 0.143) -> float:
    """Resolution in Å at which ``curve`` first crosses ``threshold`` (``apix`` in Å/px).

    ``1 / (crossing frequency / apix)``; ``inf`` if the curve starts below the
    threshold. If it never falls below, the resolution of the highest shell is returned
    (``2 * apix`` for :func:`fsc_standard`): the true value is at least that good.
    """
    f = crossing_frequency(curve, threshold)
    if f is None:
        f = float(curve.freq_per_px[-1])
    if f <= 0.0:
        return float("inf")
    return float(apix) / f


def shell_resolution_A(fsc: np.ndarray, box: int, apix: float, threshold: float = 0.143) -> float:
    """:func:`resolution_A` of a conventional FSC saved as values per shell ``0 .. D//2``
    (``fsc_standard(...).fsc``) for a box of ``box`` pixels at ``apix`` Å/px."""
    y = np.asarray(fsc, dtype=np.float64)
    freq = np.arange(y.size, dtype=np.float64) / int(box)
    curve = FSCCurve(freq_per_px=freq, fsc=y, auc=auc(freq, y), n_voxels=np.zeros(y.size, np.int64), box=int(box))
    return resolution_A(curve, apix, threshold)
