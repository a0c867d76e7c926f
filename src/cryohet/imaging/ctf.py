"""Contrast transfer function, RELION's formula (``ctf.h``), batched torch.

Convention (cryohet's single CTF; see docs/CONVENTIONS.md)::

    CTF(k) = scale * exp(-B |k|^2 / 4) * -sin(K1 * df(k) * |k|^2 + K2 * |k|^4 - K5 - K3)

    K1 = pi * lambda                        lambda: relativistic wavelength in Å
    K2 = (pi / 2) * Cs * lambda^3           Cs in Å (input in mm)
    K3 = atan(w / sqrt(1 - w^2))            w: amplitude contrast
    K5 = phase shift in radians             (input in degrees)
    df(k) = -(dfU + dfV)/2 - (dfU - dfV)/2 * cos(2 (atan2(ky, kx) - azimuth))

Frequencies ``k = (kx, ky)`` are in 1/Å. ``CTF(0) = +w`` (for no phase shift):
RELION's particles are protein-bright, and this is the transfer function that maps a
projection of positive density onto them. cryoDRGN's CTF is the negative of this one.

CTF parameters travel as a float tensor ``(B, 9)`` whose columns follow
:meth:`cryohet.io.metadata.CTFParams.field_names`::

    0 dfU_A   1 dfV_A   2 dfang_deg   3 kV   4 cs_mm   5 w   6 phase_deg   7 bfactor_A2   8 scale
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "CTF_COLUMNS",
    "compute_ctf",
    "compute_ctf_grid",
    "ctf_params_tensor",
    "electron_wavelength_A",
]

#: Column names of the ``(B, 9)`` CTF parameter tensor (order of ``CTFParams.field_names``).
CTF_COLUMNS = (
    "dfU_A",
    "dfV_A",
    "dfang_deg",
    "kV",
    "cs_mm",
    "w",
    "phase_deg",
    "bfactor_A2",
    "scale",
)


def electron_wavelength_A(voltage_kV: torch.Tensor | float) -> torch.Tensor | float:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV.

    ``lambda = 12.2643247 / sqrt(V (1 + 0.978466e-6 V))`` with ``V`` in volts
    (0.019687 Å at 300 kV). Works on floats and tensors.
    """
    if isinstance(voltage_kV, torch.Tensor):
        v = voltage_kV * 1e3
        return 12.2643247 / torch.sqrt(v * (1.0 + 0.978466e-6 * v))
    v = float(voltage_kV) * 1e3
    return 12.2643247 / math.sqrt(v * (1.0 + 0.978466e-6 * v))


def ctf_params_tensor(ctf, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(B, 9)`` CTF tensor from a :class:`~cryohet.io.metadata.CTFParams`, an array or a tensor.

    An ``(B, 7)`` input (no B-factor and scale) is completed with ``B = 0``, ``scale = 1``.
    """
    if hasattr(ctf, "as_array"):
        arr = torch.as_tensor(np.asarray(ctf.as_array()), device=device, dtype=dtype)
    else:
        arr = torch.as_tensor(ctf, device=device, dtype=dtype)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (7, 9):
        raise ValueError(f"CTF parameters must be (B, 9) (or (B, 7)), got {tuple(arr.shape)}")
    if arr.shape[1] == 7:
        extra = arr.new_zeros(arr.shape[0], 2)
        extra[:, 1] = 1.0
        arr = torch.cat([arr, extra], dim=1)
    return arr


def _ctf_core(kx: torch.Tensor, ky: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """CTF at broadcastable ``kx``, ``ky`` (1/Å) for params ``(B, 9)``; batch axis first.

    ``kx`` and ``ky`` must broadcast against each other; the result has shape
    ``(B, *broadcast(kx, ky).shape)``.
    """
    if params.ndim != 2 or params.shape[1] != 9:
        raise ValueError(f"CTF parameters must be (B, 9), got {tuple(params.shape)}")
    p = params.to(kx.dtype)
    nd = torch.broadcast_shapes(kx.shape, ky.shape)
    view = (-1,) + (1,) * len(nd)
    dfu, dfv, ang, kv, cs, w, phase, bfac, scale = (p[:, i].reshape(view) for i in range(9))
    lam = electron_wavelength_A(kv)
    k1 = math.pi * lam
    k2 = (math.pi / 2.0) * (cs * 1e7) * lam**3
    k3 = torch.atan(w / torch.sqrt(1.0 - w * w))
    k5 = torch.deg2rad(phase)
    k2sq = kx * kx + ky * ky
    theta = torch.atan2(ky, kx)  # atan2(0, 0) = 0; harmless since k^2 = 0 there
    df = -0.5 * (dfu + dfv) - 0.5 * (dfu - dfv) * torch.cos(2.0 * (theta - torch.deg2rad(ang)))
    gamma = k1 * df * k2sq + k2 * k2sq * k2sq - k5 - k3
    ctf = -torch.sin(gamma)
    ctf = ctf * torch.exp(-0.25 * bfac * k2sq) * scale
    return ctf


def compute_ctf(freqs_per_A: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """CTF at arbitrary frequencies.

    Args:
        freqs_per_A: ``(..., 2)`` frequencies ``(kx, ky)`` in 1/Å, e.g. ``frequency_grid_2d(D, apix)``
            of shape ``(H, W, 2)``.
        params: ``(B, 9)`` CTF parameters (see the module docstring for the columns).

    Returns:
        ``(B, ...)`` real CTF values, dtype of ``freqs_per_A``; differentiable in both inputs.
    """
    return _ctf_core(freqs_per_A[..., 0], freqs_per_A[..., 1], params)


def compute_ctf_grid(kx_per_A: torch.Tensor, ky_per_A: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """CTF on the separable grid ``ky_per_A (Ny,) x kx_per_A (Nx,)`` -> ``(B, Ny, Nx)``.

    The grid may be any pair of 1D frequency vectors in 1/Å: the full centred plane
    (``frequencies_1d(D, apix)`` for both), a half plane (``kx >= 0``) or a cropped band.
    """
    return _ctf_core(kx_per_A[None, :], ky_per_A[:, None], params)
