"""A simple shell FSC for the reconstruction regulariser.

The CryoBench-protocol FSC used for reporting lives in :mod:`cryohet.metrics`; this one
only feeds the Wiener filter. Shells are ``round(|k|)`` in Fourier voxels (shell 0 is
the DC term), up to ``D // 2``.
"""

from __future__ import annotations

import torch

from ..imaging.fft import fft3_centered, radial_index_3d

__all__ = ["shell_average", "shell_fsc"]


def shell_average(values: torch.Tensor, box: int, n_shells: int | None = None) -> torch.Tensor:
    """Mean of a ``(D, D, D)`` real array over integer shells ``0 .. D//2`` (centred layout)."""
    n = box // 2 + 1 if n_shells is None else n_shells
    r = radial_index_3d(box, device=values.device).reshape(-1)
    keep = r < n
    tot = torch.zeros(n, device=values.device, dtype=values.dtype).index_add_(0, r[keep], values.reshape(-1)[keep])
    cnt = torch.bincount(r[keep], minlength=n).to(values.dtype)
    return tot / cnt.clamp_min(1)


def shell_fsc(vol1: torch.Tensor, vol2: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """FSC of two ``(D, D, D)`` volumes per shell ``0 .. D//2`` -> ``(D//2 + 1,)``."""
    if mask is not None:
        vol1, vol2 = vol1 * mask, vol2 * mask
    box = vol1.shape[-1]
    f1, f2 = fft3_centered(vol1), fft3_centered(vol2)
    n = box // 2 + 1
    r = radial_index_3d(box, device=vol1.device).reshape(-1)
    keep = r < n
    idx = r[keep]

    def acc(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n, device=x.device, dtype=x.dtype).index_add_(0, idx, x.reshape(-1)[keep])

    num = acc((f1 * f2.conj()).real)
    den = torch.sqrt(acc(f1.abs() ** 2) * acc(f2.abs() ** 2))
    return num / den.clamp_min(torch.finfo(den.dtype).tiny)
