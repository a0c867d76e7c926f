"""A simple shell FSC for the reconstruction regulariser.

The FSC itself is :func:`cryohet.metrics.fsc.fsc_standard` (one rule for the Wiener
filter, the reported half-map FSC and ``cryohet fsc``); this module gives it as a tensor.
Shells are ``round(|k|)`` in Fourier voxels (shell 0 is the DC term), up to ``D // 2``.
"""

from __future__ import annotations

import torch

from ..imaging.fft import radial_index_3d
from ..metrics.fsc import fsc_standard

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
    """FSC of two ``(D, D, D)`` volumes per shell ``0 .. D//2`` -> ``(D//2 + 1,)`` (volumes' dtype).

    cryohet's one conventional FSC, :func:`cryohet.metrics.fsc.fsc_standard` (rounded
    shells, computed in float64 on the half spectrum); ``mask`` multiplies both maps.
    """
    curve = fsc_standard(vol1, vol2, mask)
    return torch.as_tensor(curve.fsc, dtype=vol1.dtype, device=vol1.device)
