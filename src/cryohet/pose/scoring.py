"""Scores of many poses at once, with the training likelihood expanded into matrix products.

For a quadratic likelihood (:attr:`cryohet.imaging.likelihood.ImageLikelihood.pixel_weights`
``W``), the score of image ``y`` at rotation ``m`` and shift ``t`` is exactly the training
loss at that pose::

    s(t, m) = sum_k W |y - C e^{2 pi i k.t} S_m|^2
            = sum_k W |y|^2  +  sum_k W C^2 |S_m|^2  -  2 Re sum_k W conj(y) C e^{2 pi i k.t} S_m

with ``S_m`` the representation's central slice (the render seam), ``C`` the image's CTF
and ``t`` the RELION origin in Å (the model image is shifted, as in training). The last
sum is one real matrix product per image chunk, ``[Re A, -Im A] @ [Re S; Im S]`` with
``A_t = W conj(y) C e^{2 pi i k.t}``: ``T x 2P`` times ``2P x M`` for ``T`` shifts, ``M``
rotations and ``P`` band pixels; the middle sum is ``(W C^2) @ |S|^2``. Shifts therefore
cost no extra rendering, and the same likelihood ranks poses in the search and trains
the model (``tests/test_pose_search.py`` checks the equality).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..imaging.bands import FourierBand
from ..imaging.likelihood import ImageLikelihood

__all__ = ["ImageTerms", "image_terms", "score_shared", "score_each"]

_ELEMENTS_PER_CHUNK = 1 << 23  # floats of the (images x shifts x rotations) score block


@dataclass
class ImageTerms:
    """What the scores need of a batch of images on a band (pixels flattened to ``P``).

    Attributes:
        wyc: complex ``(B, P)``: ``W conj(y) C``.
        wcc: real ``(B, P)``: ``W C^2``.
        wyy: real ``(B,)``: ``sum W |y|^2``.
        kx_per_A, ky_per_A: ``(P,)`` frequencies of the flattened pixels (1/Å).
    """

    wyc: torch.Tensor
    wcc: torch.Tensor
    wyy: torch.Tensor
    kx_per_A: torch.Tensor
    ky_per_A: torch.Tensor

    def __len__(self) -> int:
        return int(self.wyc.shape[0])

    def rows(self, sel: torch.Tensor) -> ImageTerms:
        return ImageTerms(self.wyc[sel], self.wcc[sel], self.wyy[sel], self.kx_per_A, self.ky_per_A)


def image_terms(observed: torch.Tensor, ctf: torch.Tensor | None, likelihood: ImageLikelihood) -> ImageTerms:
    """The per-image terms of the scores: ``observed`` complex ``(B, Ny, Nx)`` and the real
    CTF ``(B, Ny, Nx)`` (None: 1) on ``likelihood.band``."""
    band: FourierBand = likelihood.band
    w = likelihood.pixel_weights.to(observed.device)
    c = torch.ones_like(observed.real) if ctf is None else ctf.real if ctf.is_complex() else ctf
    wyc = (w * observed.conj() * c).flatten(-2)
    wcc = (w * c * c).flatten(-2)
    wyy = (w * (observed.real**2 + observed.imag**2)).sum(dim=(-2, -1))
    ky, kx = torch.meshgrid(band.ky_per_A.to(observed.device), band.kx_per_A.to(observed.device), indexing="ij")
    return ImageTerms(wyc, wcc, wyy, kx.reshape(-1), ky.reshape(-1))


def _shift_phases(terms: ImageTerms, shifts_A: torch.Tensor) -> torch.Tensor:
    """``e^{2 pi i k.t}`` for shifts ``(..., T, 2)`` -> complex ``(..., T, P)``."""
    ph = 2.0 * math.pi * (shifts_A[..., 0:1] * terms.kx_per_A + shifts_A[..., 1:2] * terms.ky_per_A)
    return torch.complex(torch.cos(ph), torch.sin(ph))


def _as_real_rows(a: torch.Tensor) -> torch.Tensor:
    """Complex ``(..., P)`` -> real ``(..., 2P)`` ``[Re a, -Im a]`` (so that ``@ [Re S; Im S]`` is ``Re(a S)``)."""
    return torch.cat([a.real, -a.imag], dim=-1)


def _as_real_cols(s: torch.Tensor) -> torch.Tensor:
    """Complex slices ``(..., M, P)`` -> real ``(..., 2P, M)`` ``[Re S; Im S]``."""
    return torch.cat([s.real, s.imag], dim=-1).transpose(-1, -2)


def score_shared(terms: ImageTerms, slices: torch.Tensor, shifts_A: torch.Tensor) -> torch.Tensor:
    """Scores ``(B, T, M)`` of every image at every shift ``(T, 2)`` Å and every slice of one
    bank shared by the images (``slices`` complex ``(M, Ny, Nx)`` or ``(M, P)``)."""
    s = slices.flatten(-2) if slices.dim() == 3 else slices
    cols = _as_real_cols(s.to(terms.wyc.dtype))  # (2P, M)
    norm = terms.wcc @ (s.real**2 + s.imag**2).transpose(0, 1)  # (B, M)
    phases = _shift_phases(terms, shifts_A.to(terms.wcc))  # (T, P)
    n_img, n_t, n_m = len(terms), shifts_A.shape[0], s.shape[0]
    chunk = max(1, _ELEMENTS_PER_CHUNK // max(1, n_t * n_m))
    out = torch.empty((n_img, n_t, n_m), dtype=terms.wcc.dtype, device=terms.wcc.device)
    for i in range(0, n_img, chunk):
        a = terms.wyc[i : i + chunk, None, :] * phases[None]  # (b, T, P)
        cross = _as_real_rows(a).reshape(-1, cols.shape[0]) @ cols  # (b T, M)
        out[i : i + chunk] = (
            terms.wyy[i : i + chunk, None, None] + norm[i : i + chunk, None, :] - 2.0 * cross.reshape(-1, n_t, n_m)
        )
    return out


def score_each(terms: ImageTerms, slices: torch.Tensor, shifts_A: torch.Tensor) -> torch.Tensor:
    """Scores ``(B, T, M)`` of each image at its own shifts ``(B, T, 2)`` Å and its own slices
    (complex ``(B, M, Ny, Nx)`` or ``(B, M, P)``)."""
    s = slices.flatten(-2) if slices.dim() == 4 else slices
    norm = torch.einsum("bp,bmp->bm", terms.wcc, s.real**2 + s.imag**2)
    a = terms.wyc[:, None, :] * _shift_phases(terms, shifts_A.to(terms.wcc))  # (B, T, P)
    cross = torch.bmm(_as_real_rows(a), _as_real_cols(s.to(terms.wyc.dtype)))  # (B, T, M)
    return terms.wyy[:, None, None] + norm[:, None, :] - 2.0 * cross
