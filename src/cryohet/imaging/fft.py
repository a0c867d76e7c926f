"""Centred Fourier/Hartley transforms, frequency grids, cropping/padding, radial shells.

Conventions (shared by every module that touches Fourier space):

* Transforms are *centred*: the zero frequency of a D-sample axis sits at index ``D // 2``
  (``fftshift`` layout), for even and odd D. The real-space centre is also index ``D // 2``.
* Forward transforms are unnormalised sums ``F(k) = sum_x f(x) exp(-2 pi i k x)``; inverse
  transforms divide by the number of samples (numpy/torch ``norm="backward"``).
* Frequencies are in cycles/pixel by default (``(i - D//2) / D``); divide by the pixel
  size in Å to get 1/Å.
* Arrays are torch tensors with the transformed axes last: images ``(..., y, x)``,
  volumes ``(..., z, y, x)``.
"""

from __future__ import annotations

import torch

__all__ = [
    "fft2_centered",
    "ifft2_centered",
    "fft3_centered",
    "ifft3_centered",
    "hartley2",
    "ihartley2",
    "frequencies_1d",
    "frequency_grid_2d",
    "frequency_grid_3d",
    "radial_index_2d",
    "radial_index_3d",
    "fourier_crop_2d",
    "fourier_pad_2d",
    "fourier_downsample_images",
]


def _dims(n: int) -> tuple[int, ...]:
    return tuple(range(-n, 0))


def fft2_centered(x: torch.Tensor) -> torch.Tensor:
    """Centred 2D FFT over the last two axes (real or complex input -> complex)."""
    d = _dims(2)
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=d), dim=d), dim=d)


def ifft2_centered(X: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2_centered` (complex output; take ``.real`` for real images)."""
    d = _dims(2)
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(X, dim=d), dim=d), dim=d)


def fft3_centered(x: torch.Tensor) -> torch.Tensor:
    """Centred 3D FFT over the last three axes."""
    d = _dims(3)
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=d), dim=d), dim=d)


def ifft3_centered(X: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft3_centered`."""
    d = _dims(3)
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(X, dim=d), dim=d), dim=d)


def hartley2(x: torch.Tensor) -> torch.Tensor:
    """Centred 2D Hartley transform ``Re F - Im F`` of real images (its own inverse up to 1/N)."""
    F = fft2_centered(x)
    return F.real - F.imag


def ihartley2(H: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hartley2`."""
    n = H.shape[-1] * H.shape[-2]
    return hartley2(H) / n


def frequencies_1d(n: int, apix: float = 1.0, device=None, dtype=torch.float32) -> torch.Tensor:
    """Centred frequencies ``(i - n//2) / (n * apix)``: cycles/pixel if apix=1, else 1/Å."""
    return (torch.arange(n, device=device, dtype=dtype) - n // 2) / (n * apix)


def frequency_grid_2d(n: int, apix: float = 1.0, device=None, dtype=torch.float32) -> torch.Tensor:
    """(n, n, 2) grid of centred frequencies ``(kx, ky)``, last axis x then y."""
    f = frequencies_1d(n, apix, device, dtype)
    ky, kx = torch.meshgrid(f, f, indexing="ij")
    return torch.stack([kx, ky], dim=-1)


def frequency_grid_3d(n: int, apix: float = 1.0, device=None, dtype=torch.float32) -> torch.Tensor:
    """(n, n, n, 3) grid of centred frequencies ``(kx, ky, kz)`` indexed ``[z, y, x]``."""
    f = frequencies_1d(n, apix, device, dtype)
    kz, ky, kx = torch.meshgrid(f, f, f, indexing="ij")
    return torch.stack([kx, ky, kz], dim=-1)


def radial_index_2d(n: int, device=None) -> torch.Tensor:
    """(n, n) integer radius ``round(|k|)`` in Fourier pixels from the centre ``n//2``."""
    c = torch.arange(n, device=device, dtype=torch.float32) - n // 2
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.round(torch.sqrt(x * x + y * y)).long()


def radial_index_3d(n: int, device=None) -> torch.Tensor:
    """(n, n, n) integer radius ``round(|k|)`` in Fourier voxels from the centre."""
    c = torch.arange(n, device=device, dtype=torch.float32) - n // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    return torch.round(torch.sqrt(x * x + y * y + z * z)).long()


def fourier_crop_2d(X: torch.Tensor, new_size: int) -> torch.Tensor:
    """Keep the central ``new_size``² of a centred 2D spectrum (last two axes)."""
    n = X.shape[-1]
    if new_size > n:
        raise ValueError(f"cannot crop {n} to a larger size {new_size}")
    start = n // 2 - new_size // 2
    return X[..., start : start + new_size, start : start + new_size]


def fourier_pad_2d(X: torch.Tensor, new_size: int) -> torch.Tensor:
    """Zero-pad a centred 2D spectrum to ``new_size``² (centre stays at ``new_size//2``)."""
    n = X.shape[-1]
    if new_size < n:
        raise ValueError(f"cannot pad {n} to a smaller size {new_size}")
    out = X.new_zeros(*X.shape[:-2], new_size, new_size)
    start = new_size // 2 - n // 2
    out[..., start : start + n, start : start + n] = X
    return out


def fourier_downsample_images(images: torch.Tensor, new_size: int) -> torch.Tensor:
    """Resample real images (..., D, D) to (..., new_size, new_size) by Fourier cropping.

    The pixel size grows by ``D / new_size``; pixel values are rescaled by
    ``(new_size / D)^2`` so that the image *mean* (and the DC term per area) is kept,
    as RELION and cryoDRGN do. For ``new_size > D`` the images are Fourier-padded.
    """
    n = images.shape[-1]
    if new_size == n:
        return images
    X = fft2_centered(images)
    X = fourier_crop_2d(X, new_size) if new_size < n else fourier_pad_2d(X, new_size)
    # For even sizes the cropped Nyquist row/column has no Hermitian partner; taking
    # the real part drops its imaginary residue, as every cropping downsampler does.
    out = ifft2_centered(X).real * (new_size / n) ** 2
    return out.to(images.dtype)
