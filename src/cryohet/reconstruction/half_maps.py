"""Half-set reconstruction with an FSC-derived Wiener regulariser (RELION-style).

Two accumulators receive disjoint halves of the particles. Unregularised half maps give
the half-map FSC; from it the per-image spectral SNR of shell ``s`` is estimated as

    SNR_img(s) = [FSC(s) / (1 - FSC(s))] / mean W_half(s)

(the SNR of a half map divided by its mean CTF^2 weight in that shell), and every map is
re-finalised with the Wiener term ``1 / SNR_img(s)`` (times ``fudge``; RELION's ``tau2_fudge``
is its inverse).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from .backprojection import BackprojectionAccumulator
from .fsc import shell_fsc

__all__ = ["HalfMapResult", "HalfSetReconstructor", "reconstruct", "snr_from_fsc"]


@dataclass
class HalfMapResult:
    """Half maps, full map (all particles), half-map FSC per shell and the SNR used."""

    half1: torch.Tensor
    half2: torch.Tensor
    full: torch.Tensor
    fsc: torch.Tensor
    snr: torch.Tensor


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
        """Half maps and full map; ``snr="fsc"`` derives the Wiener term from the half maps."""
        a, b = self.halves
        full_acc = a.merged(b)
        raw1, raw2 = a.finalize(None), b.finalize(None)
        fsc = shell_fsc(raw1, raw2)
        if isinstance(snr, str):
            if snr != "fsc":
                raise ValueError(f"unknown snr mode {snr!r}")
            mean_w = 0.5 * (a.mean_weight_per_shell() + b.mean_weight_per_shell())
            s = snr_from_fsc(fsc, mean_w) / fudge
        elif snr is None:
            s = None
        else:
            s = torch.as_tensor(snr, dtype=a.dtype, device=a.device)
        if s is None:
            return HalfMapResult(raw1, raw2, full_acc.finalize(None), fsc, torch.full_like(fsc, float("inf")))
        return HalfMapResult(a.finalize(s), b.finalize(s), full_acc.finalize(s), fsc, s * torch.ones_like(fsc))


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
