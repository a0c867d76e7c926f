"""Half-set reconstruction with an FSC-derived Wiener regulariser (RELION-style).

Two accumulators receive disjoint halves of the particles. Unregularised half maps give
the half-map FSC; from it the per-image spectral SNR of shell ``s`` is estimated as

    SNR_img(s) = [FSC(s) / (1 - FSC(s))] / mean W_half(s)

(the SNR of a half map divided by its mean CTF^2 weight in that shell), and every map is
re-finalised with the Wiener term ``1 / SNR_img(s)`` (times ``fudge``; RELION's ``tau2_fudge``
is its inverse), **capped** at the shell-averaged mean weight ``mean_s W(s)``. Uncapped,
shells where the FSC has fallen to noise get a Wiener term thousands of times their
weight: the map there is shrunk towards zero, the filter falls steeply, and a masked
comparison (the mask mixes neighbouring shells) loses the signal the shells still carry.
The cap is cryoDRGN ``backproject_voxel``'s regulariser (``reg_weight`` 1 times the mean
weight), which the FSC-derived term replaces wherever it is smaller, keeping the low
shells' amplitudes (a constant term alone halves the map's DC where CTF^2 is small).
Measured on simulated IgG sets (``benchmarks/consensus_quality.py``): masked CryoBench AUC
against the ground truth 0.4016 -> 0.4074 at D=64, SNR 0.01.

All maps (the raw half maps whose FSC sets the filter, and the written ones) are
multiplied by a soft sphere (1 within ``0.4 D``, cosine to 0 at ``0.5 D``): the corners of
the box hold only noise. The reported half-map FSC is the conventional FSC
(:func:`cryohet.metrics.fsc.fsc_standard`) of the two written half maps, so
``cryohet fsc half1 half2`` reproduces it; its 0.143 resolution
(:func:`cryohet.metrics.fsc.resolution_A`) is the one every command reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ..metrics.fsc import shell_resolution_A
from .backprojection import BackprojectionAccumulator
from .finalize import soft_sphere_
from .fsc import shell_fsc

__all__ = ["HalfMapResult", "HalfSetReconstructor", "reconstruct", "snr_from_fsc", "SPHERE_RADIUS", "SPHERE_EDGE"]

#: Soft sphere on every half-set map, as fractions of the box: 1 within ``SPHERE_RADIUS * D``,
#: raised cosine over ``SPHERE_EDGE * D`` (0 at the box edge).
SPHERE_RADIUS, SPHERE_EDGE = 0.4, 0.1


@dataclass
class HalfMapResult:
    """Half maps, full map (all particles), half-map FSC per shell ``0 .. D//2`` (conventional
    FSC of ``half1`` and ``half2``) and the per-image SNR used by the Wiener term."""

    half1: torch.Tensor
    half2: torch.Tensor
    full: torch.Tensor
    fsc: torch.Tensor
    snr: torch.Tensor

    def resolution_A(self, apix: float, threshold: float = 0.143) -> float:
        """Resolution (Å) where :attr:`fsc` crosses ``threshold`` (``apix`` in Å/px)."""
        return shell_resolution_A(self.fsc.cpu().numpy(), self.full.shape[-1], apix, threshold)


def snr_from_fsc(fsc: torch.Tensor, mean_weight: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """Per-image spectral SNR per shell from a half-map FSC and the half maps' mean weights."""
    f = fsc.clamp(floor, 1.0 - 1e-4)
    return f / (1.0 - f) / mean_weight.clamp_min(1e-12)


class HalfSetReconstructor:
    """Two :class:`BackprojectionAccumulator` s fed by a per-particle half assignment."""

    def __init__(self, box: int, apix: float, oversample: int = 2, device=None, dtype=torch.float32) -> None:
        self.halves = (
            BackprojectionAccumulator(box, apix, oversample, device, dtype),
            BackprojectionAccumulator(box, apix, oversample, device, dtype),
        )

    def add(
        self,
        images: torch.Tensor,
        rotations: torch.Tensor,
        shifts_A: torch.Tensor | None,
        ctf_params: torch.Tensor | None,
        half: torch.Tensor | np.ndarray,
    ) -> None:
        """Add a batch; ``half (B,)`` is 0/1 (RELION's ``rlnRandomSubset`` minus 1)."""
        h = torch.as_tensor(np.asarray(half) if not isinstance(half, torch.Tensor) else half).to(torch.long).cpu()
        if set(torch.unique(h).tolist()) - {0, 1}:
            raise ValueError("half-set labels must be 0 or 1")

        def pick(x, sel: torch.Tensor):
            if x is None:
                return None
            t = torch.as_tensor(x)
            return t[sel.to(t.device)]

        for which in (0, 1):
            sel = torch.nonzero(h == which).reshape(-1)
            if sel.numel() == 0:
                continue
            batch = (
                pick(images, sel),
                pick(rotations, sel),
                pick(shifts_A, sel),
                pick(ctf_params, sel),
            )
            self.halves[which].add(*batch)

    def all_reduce(self) -> HalfSetReconstructor:
        """Sum both halves over the ranks of a distributed run (no-op with one process)."""
        for acc in self.halves:
            acc.all_reduce()
        return self

    def finalize(self, snr: float | torch.Tensor | str | None = "fsc", fudge: float = 1.0) -> HalfMapResult:
        """Half maps and full map; ``snr="fsc"`` derives the (capped) Wiener term from the half maps.

        The full map sums both halves slab by slab (no third grid); see the module docstring.
        """
        a, b = self.halves
        box = a.box

        def sphere(v: torch.Tensor) -> torch.Tensor:
            return soft_sphere_(v, SPHERE_RADIUS * box, SPHERE_EDGE * box)

        if isinstance(snr, str):
            if snr != "fsc":
                raise ValueError(f"unknown snr mode {snr!r}")
            fsc_raw = shell_fsc(sphere(a.finalize(None)), sphere(b.finalize(None)))
            mean_w = 0.5 * (a.mean_weight_per_shell() + b.mean_weight_per_shell())
            cap = 1.0 / float(mean_w.mean().clamp_min(1e-30))
            s = torch.clamp_min(snr_from_fsc(fsc_raw, mean_w) / fudge, cap)
        elif snr is None:
            s = None
        else:
            s = torch.as_tensor(snr, dtype=a.dtype, device=a.device)
        half1, half2 = sphere(a.finalize(s)), sphere(b.finalize(s))
        full = sphere(a.finalize(s, others=(b,)))
        fsc = shell_fsc(half1, half2)
        s_out = torch.full_like(fsc, float("inf")) if s is None else s * torch.ones_like(fsc)
        return HalfMapResult(half1, half2, full, fsc, s_out)


def reconstruct(
    batches: Iterable[tuple],
    box: int,
    apix: float,
    half_sets: bool = True,
    snr: float | torch.Tensor | str | None = "fsc",
    oversample: int = 2,
    device=None,
) -> HalfMapResult | torch.Tensor:
    """Reconstruct from an iterable of batches.

    Each batch is ``(images, rotations, shifts_A, ctf_params)`` — plus ``half (B,)`` when
    ``half_sets`` — as :meth:`BackprojectionAccumulator.add` takes them. Returns a
    :class:`HalfMapResult` for half sets, else the volume (with ``snr`` a float or None).
    """
    if half_sets:
        rec = HalfSetReconstructor(box, apix, oversample, device)
        for batch in batches:
            rec.add(*batch)
        return rec.finalize(snr)
    if isinstance(snr, str):
        raise ValueError("snr='fsc' needs half sets (half_sets=True)")  # noqa: TRY004 - a bad value
    acc = BackprojectionAccumulator(box, apix, oversample, device)
    for batch in batches:
        acc.add(*batch)
    return acc.finalize(snr)
