"""Finalisation of half-space backprojection grids, slab by slab in bounded memory.

A :class:`~cryohet.reconstruction.backprojection.BackprojectionAccumulator` holds a real
``(P, P, H, 3)`` grid, ``H = P//2 + 1`` (channels Re N, Im N, W), indexed ``(z, y, x)``
with ``z``, ``y`` in FFT order (frequency ``f`` at index ``f mod P``) and ``x = 0 .. P//2``.
Frequencies here are in padded-grid units ``1/P`` cycles/voxel; shells are output Fourier
pixels ``round(|q| D / P)`` (``s / (D apix)`` in 1/Å).

The map is ``V = N / max(W + 1/SNR(shell), floor)`` inside the sphere ``shell <= max_shell``,
inverse-transformed and divided by the trilinear gridding kernel. The inverse transform
runs axis by axis on ``y`` slabs (along ``z``), then on ``z`` slabs (``y``, then the real
``x`` transform), keeping only the ``D`` output planes of each axis as soon as that axis
is done. Besides the accumulators themselves, memory is one complex ``(D, P, H)`` array
(an eighth of a ``P^3`` complex grid at ``P = 2D``) and slab temporaries. Several
accumulators (half sets) are summed slab by slab, never into a third grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .backprojection import BackprojectionAccumulator

__all__ = ["finalize_volume", "full_grids", "mean_weight_per_shell", "soft_sphere_", "SLAB_ELEMENTS"]

#: Grid voxels per slab (bounds the finalisation temporaries: ~60 bytes each).
SLAB_ELEMENTS = 1 << 22


def _check(accs: Sequence[BackprojectionAccumulator]) -> tuple[int, int, torch.device, torch.dtype]:
    a = accs[0]
    for b in accs[1:]:
        if (b.box, b.padded) != (a.box, a.padded):
            raise ValueError("cannot combine accumulators of different grids")
    return a.box, a.padded, a.device, a.dtype


def _fft_freqs(p: int, device, dtype) -> torch.Tensor:
    """Integer frequencies of FFT-order indices ``0 .. P-1``: ``-(P//2) .. P-1-P//2``."""
    i = torch.arange(p, device=device)
    return torch.where(i <= p - 1 - p // 2, i, i - p).to(dtype)


def _mirror_planes(accs: Sequence[BackprojectionAccumulator]) -> dict[int, torch.Tensor]:
    """The ``x = 0`` (and even-``P`` ``x = P/2``) planes, summed and Hermitian-completed.

    Samples folded onto ``qx >= 0`` that sit in ``0 <= qx < 1`` also reach ``qx = 0`` from
    the mirror side: ``H(0, y, z) = H'(0, y, z) + conj H'(0, -y, -z)`` (likewise at the
    Nyquist plane, its own mirror on an even grid). Returns ``{x index: (P, P, 3)}``.
    """
    p = accs[0].padded
    neg = (-torch.arange(p, device=accs[0].device)) % p
    out = {}
    for x in (0, p // 2) if p % 2 == 0 else (0,):
        g = sum(a.grid[:, :, x].to(accs[0].device) for a in accs)
        m = g[neg][:, neg]
        g = g + m
        g[..., 1] -= 2.0 * m[..., 1]  # Im: im(q) - im(-q)
        out[x] = g
    return out


def _slabs(p: int, h: int) -> Iterator[slice]:
    step = max(1, SLAB_ELEMENTS // (p * h))
    for y0 in range(0, p, step):
        yield slice(y0, min(p, y0 + step))


def _summed(accs: Sequence[BackprojectionAccumulator], ys: slice, planes: dict[int, torch.Tensor]) -> torch.Tensor:
    """``(P, ny, H, 3)`` sum of the accumulators' ``y`` slab, mirror planes completed."""
    dev = accs[0].device
    g = accs[0].grid[:, ys].clone()
    for a in accs[1:]:
        g += a.grid[:, ys].to(dev)
    for x, plane in planes.items():
        g[:, :, x] = plane[:, ys]
    return g


def _shells(box: int, p: int, ys: slice, device, dtype) -> torch.Tensor:
    """``(P, ny, H)`` output shell ``round(|q| D / P)`` of a ``y`` slab."""
    f = _fft_freqs(p, device, dtype) * (box / p)
    fx = torch.arange(p // 2 + 1, device=device, dtype=dtype) * (box / p)
    r2 = f[:, None, None] ** 2 + f[None, ys, None] ** 2 + fx[None, None, :] ** 2
    return torch.round(torch.sqrt(r2)).long()


def _multiplicity(p: int, device, dtype) -> torch.Tensor:
    """``(H,)`` voxels of the full grid each half-space column stands for (1 on self-mirror planes)."""
    m = torch.full((p // 2 + 1,), 2.0, device=device, dtype=dtype)
    m[0] = 1.0
    if p % 2 == 0:
        m[-1] = 1.0
    return m


def mean_weight_per_shell(accs: Sequence[BackprojectionAccumulator], n_shells: int | None = None) -> torch.Tensor:
    """Mean Hermitian-completed weight ``W`` over the full grid's voxels of each shell ``0 .. D//2``
    (or of shells ``0 .. n_shells - 1``, read from the low-frequency corner of the grid only)."""
    box, p, dev, dt = _check(accs)
    n = box // 2 + 1 if n_shells is None else int(n_shells)
    planes = _mirror_planes(accs)
    mult = _multiplicity(p, dev, torch.float64)
    tot = torch.zeros(n + 1, device=dev, dtype=torch.float64)
    cnt = torch.zeros(n + 1, device=dev, dtype=torch.float64)
    if n_shells is None:
        slabs = list(_slabs(p, p // 2 + 1))
        xs = slice(None)
    else:  # shells < n lie within |q| < (n + 1/2) P / D grid units
        reach = min(p // 2, int(math.ceil((n + 0.5) * p / box)) + 1)
        slabs = [slice(0, reach + 1), slice(p - reach, p)]
        xs = slice(0, reach + 1)
    for ys in slabs:
        g = _summed(accs, ys, planes)[:, :, xs, 2]
        r = _shells(box, p, ys, dev, dt)[:, :, xs]
        if n_shells is not None:  # the z rows of the corner (FFT order: both ends)
            zi = torch.cat([torch.arange(0, reach + 1), torch.arange(p - reach, p)]).to(dev)
            g, r = g[zi], r[zi]
        r = r.clamp(max=n).reshape(-1)
        m = mult[xs].expand(g.shape).reshape(-1)
        tot += torch.bincount(r, weights=g.reshape(-1).to(torch.float64) * m, minlength=n + 1)
        cnt += torch.bincount(r, weights=m, minlength=n + 1)
    return (tot[:n] / cnt[:n].clamp_min(1)).to(dt)


def finalize_volume(
    accs: Sequence[BackprojectionAccumulator],
    snr: float | torch.Tensor | None = None,
    min_weight: float = 1e-3,
    max_shell: int | None = None,
) -> torch.Tensor:
    """The ``(D, D, D)`` map of the summed accumulators (see the module docstring).

    ``snr``: per-image SNR for the Wiener term ``1/SNR``: a float, a per-shell tensor
    ``(D//2 + 1,)`` (shells beyond take its last value) or None (plain ratio).
    ``min_weight``: denominator floor relative to the mean weight of shell 1.
    ``max_shell``: output shells beyond it are zeroed (default ``D // 2``).
    """
    box, p, dev, dt = _check(accs)
    h = p // 2 + 1
    floor = min_weight * float(mean_weight_per_shell(accs, n_shells=2)[min(1, box // 2)])
    floor = max(floor, 1e-30)
    inv = None
    if snr is not None:
        s = torch.as_tensor(snr, device=dev, dtype=dt).clamp_min(1e-12)
        inv = 1.0 / s.reshape(-1)
    rmax = box // 2 if max_shell is None else int(max_shell)
    keep = (torch.arange(box, device=dev) - box // 2) % p  # FFT-order indices of the D output planes
    planes = _mirror_planes(accs)
    cdt = torch.complex128 if dt == torch.float64 else torch.complex64
    zx = torch.empty((box, p, h), device=dev, dtype=cdt)  # after the z transform: output z planes only
    for ys in _slabs(p, h):
        g = _summed(accs, ys, planes)
        shells = _shells(box, p, ys, dev, dt)
        den = g[..., 2]
        if inv is not None:
            den = den + inv[shells.clamp(max=inv.numel() - 1)]
        vol = torch.complex(g[..., 0], g[..., 1]) / den.clamp_min(floor)
        del g, den
        vol = vol * (shells <= rmax)
        del shells
        zx[:, ys] = torch.fft.ifft(vol, dim=0)[keep]
        del vol
    out = torch.empty((box, box, box), device=dev, dtype=dt)
    step = max(1, SLAB_ELEMENTS // (p * h))
    for z0 in range(0, box, step):
        zs = slice(z0, min(box, z0 + step))
        t = torch.fft.ifft(zx[zs], dim=1)[:, keep]  # (nz, D, H)
        out[zs] = torch.fft.irfft(t, n=p, dim=2)[..., keep]
    del zx
    # Gridding correction, in place and separably: sinc^2(x/P) sinc^2(y/P) sinc^2(z/P).
    s = torch.sinc((torch.arange(box, device=dev, dtype=dt) - box // 2) / p) ** 2
    return out.div_(s[:, None, None]).div_(s[None, :, None]).div_(s[None, None, :])


def full_grids(acc: BackprojectionAccumulator) -> tuple[torch.Tensor, torch.Tensor]:
    """Full centred ``(P, P, P)`` numerator (complex) and weights of one accumulator.

    Index ``i`` is frequency ``i - P//2``; the half space is completed by ``N(-q) = conj N(q)``.
    ``P^3`` memory: for tests and inspection at small boxes only.
    """
    p = acc.padded
    h = p // 2 + 1
    planes = _mirror_planes([acc])
    g = _summed([acc], slice(0, p), planes)
    half = torch.complex(g[..., 0], g[..., 1])
    w_half = g[..., 2]
    neg = (-torch.arange(p, device=acc.device)) % p
    num = torch.zeros((p, p, p), dtype=half.dtype, device=acc.device)
    w = torch.zeros((p, p, p), dtype=w_half.dtype, device=acc.device)
    num[..., :h] = half
    w[..., :h] = w_half
    j = torch.arange(h, p, device=acc.device)  # negative x frequencies j - P
    num[..., j] = half[neg][:, neg][..., p - j].conj()
    w[..., j] = w_half[neg][:, neg][..., p - j]
    dims = (0, 1, 2)
    return torch.fft.fftshift(num, dim=dims), torch.fft.fftshift(w, dim=dims)


def soft_sphere_(volume: torch.Tensor, radius_px: float, width_px: float) -> torch.Tensor:
    """Multiply ``volume (D, D, D)`` in place by a soft spherical mask; returns it.

    1 within ``radius_px`` of the centre ``D // 2`` (voxels), a raised cosine down to 0 at
    ``radius_px + width_px`` (as :func:`cryohet.imaging.masks.spherical_mask`), built plane
    by plane (no ``D^3`` coordinate grids).
    """
    from ..imaging.masks import cosine_edge

    box = volume.shape[-1]
    c = torch.arange(box, device=volume.device, dtype=volume.dtype) - box // 2
    yx = c[:, None] ** 2 + c[None, :] ** 2
    for z in range(box):
        volume[z] *= cosine_edge(torch.sqrt(yx + c[z] ** 2), radius_px, width_px)
    return volume
