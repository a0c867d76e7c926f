"""Gaussian mixtures: analytic projection in Fourier space, and voxelisation.

Density (positions and widths in Å, ``a_i`` = value at the centre)::

    rho(p) = sum_i a_i exp(-|p - c_i|^2 / (2 sigma_i^2))

Projection (cryohet's convention, :mod:`cryohet.imaging.projection`): rotate by RELION
``A`` (``x_img = A @ x_vol``), sum the voxel values of the voxelised density along z
("pixel-sum units"), and shift by the RELION origin ``o`` (Å; particle centre at ``-o``).
Its centred image DFT (forward ``exp(-2 pi i k.x)``, k in 1/Å) is::

    F(k) = sum_i a_i (2 pi)^{3/2} (sigma_i / apix)^3 exp(-2 pi^2 sigma_i^2 |k|^2)
                 exp(-2 pi i k . ((A c_i)_xy - o))

which factorises over ``kx`` and ``ky``: ``F = sum_i Ey[i, ky] Ex[i, kx]``, one batched
complex matrix product ``(Ny, G) x (G, Nx)`` per image: ``8 G Nx Ny`` flops and
``O(G (Nx + Ny))`` factor elements, built in cache-sized blocks of images x Gaussians. No
``(B, G, Ny, Nx)`` tensor is formed. For evenly spaced frequencies the factors take
``O(sqrt N)`` sines/cosines per Gaussian (coarse x fine phase products). Measured on CPU:
building the factors, not the matmul, dominates; ``torch.polar`` is 3-5x slower than
``complex(cos, sin)``, and a real cos/sin-block formulation (one real matmul of
``(Ny, 2G) x (2G, 2Nx)``) was slower than complex ``bmm`` because of the block copies.
The result is exact (no interpolation) and band-limited by the frequencies asked for.
Anisotropic Gaussians use a non-separable path (:func:`gaussian_projection_ft_aniso`).
"""

from __future__ import annotations

import math

import torch

from .ctf import compute_ctf_grid, ctf_params_tensor

__all__ = [
    "gaussian_projection_ft",
    "gaussian_projection_ft_aniso",
    "project_gaussians",
    "voxelize_gaussians",
]

_TWO_PI = 2.0 * math.pi
_NORM3 = (2.0 * math.pi) ** 1.5
_ELEMENTS_PER_CHUNK = 1 << 18  # complex factor elements per (images x Gaussians) block, CPU
_GRAD_ELEMENTS_PER_CHUNK = 1 << 22  # per block of images on the gradient path, CPU (~32 MB)
# On a GPU small blocks leave it waiting on kernel launches (measured on an H200, D=128,
# 11 520 Gaussians: one image per block ran at 811 images/s with the GPU busy 16 % of the
# time): there the blocks are bounded by memory only. The saved factors of all blocks are
# alive until the backward pass anyway, so bigger blocks add only transient memory.
_CUDA_ELEMENTS_PER_CHUNK = 1 << 26  # 512 MB of complex64 factors per block
_CUDA_GRAD_ELEMENTS_PER_CHUNK = 1 << 28


def _element_budget(device: torch.device, grad: bool) -> int:
    """Complex factor elements per block of (images x Gaussians) on ``device``."""
    if device.type == "cuda":
        return _CUDA_GRAD_ELEMENTS_PER_CHUNK if grad else _CUDA_ELEMENTS_PER_CHUNK
    return _GRAD_ELEMENTS_PER_CHUNK if grad else _ELEMENTS_PER_CHUNK


def _batched(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Add a leading batch axis of 1 when ``x`` has ``ndim - 1`` dims."""
    return x[None] if x.ndim == ndim - 1 else x


def _weights(amplitudes: torch.Tensor, sigmas_A: torch.Tensor, apix: float) -> torch.Tensor:
    """``a (2 pi)^{3/2} (sigma/apix)^3``: a Gaussian's integral in voxel units (pixel-sum)."""
    return amplitudes * _NORM3 * (sigmas_A / apix) ** 3


def _cis(phase: torch.Tensor) -> torch.Tensor:
    """``exp(i phase)`` (``torch.polar`` is several times slower on CPU)."""
    return torch.complex(torch.cos(phase), torch.sin(phase))


def _is_uniform(k: torch.Tensor) -> bool:
    """True when ``k`` is an arithmetic progression (to float32 tolerance), length >= 16."""
    if k.numel() < 16:
        return False
    d = k[1:] - k[:-1]
    step = d[0]
    return bool(step != 0) and bool(((d - step).abs() <= 1e-5 * step.abs() + 1e-7 * k.abs().max()).all())


def _block_size(n: int) -> int:
    """Divisor of ``n`` nearest ``sqrt(n)`` (so coarse x fine tiles exactly), else ``isqrt(n)``."""
    root = math.sqrt(n)
    divisors = [d for d in range(2, n // 2 + 1) if n % d == 0]
    return min(divisors, key=lambda d: abs(d - root)) if divisors else max(2, math.isqrt(n))


class _AxisPlan:
    """How to build ``env * exp(-2 pi i pos k)`` on one frequency axis ``k (N,)``.

    For an evenly spaced ``k`` the exponentials come from ``O(sqrt N)`` sines/cosines per
    Gaussian: ``k_{aL+j} = k_0 + a L dk + j dk`` gives ``exp(-2 pi i pos k) = coarse[a] fine[j]``
    (one complex product per element); otherwise they are evaluated directly.
    """

    def __init__(self, k: torch.Tensor) -> None:
        self.k = k
        self.n = k.numel()
        self.uniform = _is_uniform(k)
        if self.uniform:
            block = _block_size(self.n)
            n_coarse = -(-self.n // block)
            step = k[1] - k[0]
            idx = torch.arange(max(n_coarse, block), device=k.device, dtype=k.dtype)
            self.k_coarse = -_TWO_PI * (k[0] + idx[:n_coarse] * (block * step))
            self.k_fine = -_TWO_PI * (idx[:block] * step)

    def factors(self, pos: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        """Complex ``(b, G, N)`` from ``pos (b, G)`` (Å) and real ``env (b|1, G, N)``."""
        if not self.uniform:
            return _cis((-_TWO_PI * pos)[..., None] * self.k) * env
        p = pos[..., None]
        coarse = _cis(p * self.k_coarse)  # (b, G, n_coarse)
        fine = _cis(p * self.k_fine)  # (b, G, block)
        z = (coarse[..., :, None] * fine[..., None, :]).reshape(*pos.shape, -1)
        if z.shape[-1] != self.n:
            return z[..., : self.n] * env
        # Real envelope applied in place on the real view: no complex promotion copy.
        torch.view_as_real(z).mul_(env[..., None])
        return z


class _SeparableProjection(torch.autograd.Function):
    """``F[b, y, x] = sum_g Ey[b, g, y] Ex[b, g, x]`` with an analytic backward.

    ``Ex = w exp(-s2 kx^2) exp(-2 pi i kx u)``, ``Ey = exp(-s2 ky^2) exp(-2 pi i ky v)``.
    Autograd through the complex factor construction costs several passes over the
    ``(B, G, N)`` factors and their temporaries; the closed-form gradients below need two
    batched matrix products and one pass (for a real loss L and ``gF = dL/dRe F + i dL/dIm F``):

        gEx = conj(Ey) @ gF,  gEy = conj(Ex) @ gF^T
        dL/du  = 2 pi sum_x kx Im(conj(gEx) Ex)     dL/dv = 2 pi sum_y ky Im(conj(gEy) Ey)
        dL/dw  = sum_x Re(conj(gEx) Ex) / w
        dL/ds2 = -sum_x kx^2 Re(conj(gEx) Ex) - sum_y ky^2 Re(conj(gEy) Ey)
    """

    @staticmethod
    def forward(ctx, u, v, w, s2, plan_x, plan_y):  # noqa: D401 - autograd signature
        kx, ky = plan_x.k, plan_y.k
        ex = plan_x.factors(u, w[..., None] * torch.exp(-s2[..., None] * kx * kx))
        ey = plan_y.factors(v, torch.exp(-s2[..., None] * ky * ky))
        ctx.save_for_backward(ex, ey, w, kx, ky)
        ctx.batch_shapes = (w.shape[0], s2.shape[0])
        return torch.bmm(ey.transpose(1, 2), ex)

    @staticmethod
    def backward(ctx, grad):
        ex, ey, w, kx, ky = ctx.saved_tensors
        w_b, s_b = ctx.batch_shapes
        # conj(gEx) = Ey @ conj(gF) and conj(gEy) = Ex @ conj(gF)^T: no conjugated copy
        # of the large factors is ever formed.
        gc = grad.conj()
        px = torch.bmm(ey, gc).mul_(ex)  # conj(gEx) Ex, (B, G, Nx)
        py = torch.bmm(ex, gc.transpose(1, 2)).mul_(ey)  # conj(gEy) Ey, (B, G, Ny)
        # One pass over each: sums against [1, k, k^2] of the real and imaginary parts.
        mx = torch.stack([torch.ones_like(kx), kx, kx * kx], dim=1)  # (Nx, 3)
        my = torch.stack([torch.zeros_like(ky), ky, ky * ky], dim=1)
        sx = torch.einsum("bgnc,nm->bgcm", torch.view_as_real(px), mx)  # (B, G, 2, 3)
        sy = torch.einsum("bgnc,nm->bgcm", torch.view_as_real(py), my)
        gu = _TWO_PI * sx[..., 1, 1]
        gv = _TWO_PI * sy[..., 1, 1]
        gw = sx[..., 0, 0] / w.clamp_min(torch.finfo(w.dtype).tiny)
        gs2 = -sx[..., 0, 2] - sy[..., 0, 2]

        def fold(g, rows):  # sum over images for parameters shared by the batch
            return g.sum(0, keepdim=True) if rows == 1 and g.shape[0] != 1 else g

        return gu, gv, fold(gw, w_b), fold(gs2, s_b), None, None


def gaussian_projection_ft(
    centres_A: torch.Tensor,
    amplitudes: torch.Tensor,
    sigmas_A: torch.Tensor,
    rotations: torch.Tensor,
    kx_per_A: torch.Tensor,
    ky_per_A: torch.Tensor,
    apix: float,
    shifts_A: torch.Tensor | None = None,
    ctf: torch.Tensor | None = None,
) -> torch.Tensor:
    """Analytic DFT of the projections of an isotropic Gaussian mixture.

    Args:
        centres_A: ``(B|1, G, 3)`` or ``(G, 3)`` centres ``(x, y, z)`` in Å from the box
            centre (index ``D // 2``).
        amplitudes: ``(B|1, G)`` or ``(G,)`` density at the centres (voxel value units).
        sigmas_A: ``(B|1, G)``, ``(G,)`` or a scalar tensor; standard deviations in Å.
        rotations: ``(B, 3, 3)`` RELION ``A``.
        kx_per_A, ky_per_A: 1D frequency vectors in 1/Å (``(Nx,)``, ``(Ny,)``): the full centred
            plane (``frequencies_1d(D, apix)``), a half plane ``kx >= 0``, a band, ...
        apix: pixel size in Å of the images whose DFT this is (sets the pixel-sum
            normalisation ``(sigma/apix)^3``).
        shifts_A: ``(B, 2)`` RELION origins ``(x, y)`` in Å, or None.
        ctf: ``(B, Ny, Nx)`` CTF values on the same grid, multiplied in, or None.

    Returns:
        complex ``(B, Ny, Nx)``; on the full centred grid this equals ``fft2_centered`` of
        the projected image. Differentiable in every tensor input.
    """
    rot = rotations
    dt = rot.dtype if rot.is_floating_point() else torch.float32
    c = _batched(centres_A.to(dt), 3)
    a = _batched(amplitudes.to(dt), 2)
    s = sigmas_A.to(dt)
    s = s.expand(c.shape[-2]) if s.ndim == 0 else s
    s = _batched(s, 2)
    kx, ky = kx_per_A.to(dt), ky_per_A.to(dt)
    n_img, n_g = rot.shape[0], c.shape[-2]
    w = _weights(a, s, apix)  # (B|1, G)
    # Envelopes exp(-2 pi^2 s^2 k^2); the weight goes on the x factor.
    s2 = (2.0 * math.pi**2) * s * s
    pos = torch.matmul(c, rot[:, :2, :].transpose(1, 2))  # (B, G, 2): (A c)_xy
    if shifts_A is not None:
        pos = pos - shifts_A.to(dt)[:, None, :]
    plan_x, plan_y = _AxisPlan(kx), _AxisPlan(ky)
    n_k = kx.numel() + ky.numel()
    # Weight and envelope widths per image only when they differ per image.
    wb = w if w.shape[0] == n_img else w.expand(1, -1)
    sb = s2 if s2.shape[0] == n_img else s2.expand(1, -1)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (pos, wb, sb))
    if needs_grad:
        # Analytic backward, in blocks of images (see _element_budget).
        img_chunk = max(1, _element_budget(pos.device, grad=True) // max(1, n_g * n_k))
        out = []
        for i in range(0, n_img, img_chunk):
            sl = slice(i, i + img_chunk)
            out.append(
                _SeparableProjection.apply(
                    pos[sl, :, 0].contiguous(),
                    pos[sl, :, 1].contiguous(),
                    wb if wb.shape[0] == 1 else wb[sl],
                    sb if sb.shape[0] == 1 else sb[sl],
                    plan_x,
                    plan_y,
                )
            )
        F = torch.cat(out, dim=0)
        return F * ctf if ctf is not None else F
    # No gradient: cache-sized blocks of (images x Gaussians); the factor tensors are
    # memory-bound to build, the matmul is not.
    env_x = w[..., None] * torch.exp(-s2[..., None] * kx * kx)  # (B|1, G, Nx)
    env_y = torch.exp(-s2[..., None] * ky * ky)  # (B|1, G, Ny)
    budget = _element_budget(pos.device, grad=False)
    g_chunk = max(1, min(n_g, budget // n_k))
    img_chunk = max(1, budget // (g_chunk * n_k))
    out = []
    for i in range(0, n_img, img_chunk):
        sl = slice(i, i + img_chunk)
        ex = env_x if env_x.shape[0] == 1 else env_x[sl]
        ey = env_y if env_y.shape[0] == 1 else env_y[sl]
        acc = None
        for j in range(0, n_g, g_chunk):
            gs = slice(j, j + g_chunk)
            # Ex[b, g, kx] = w env exp(-2 pi i kx u), Ey[b, g, ky] = env exp(-2 pi i ky v)
            fx = plan_x.factors(pos[sl, gs, 0], ex[:, gs])
            fy = plan_y.factors(pos[sl, gs, 1], ey[:, gs])
            part = torch.bmm(fy.transpose(1, 2), fx)  # (b, Ny, Nx)
            acc = part if acc is None else acc + part
        out.append(acc)
    F = torch.cat(out, dim=0)
    return F * ctf if ctf is not None else F


def gaussian_projection_ft_aniso(
    centres_A: torch.Tensor,
    amplitudes: torch.Tensor,
    covariances_A2: torch.Tensor,
    rotations: torch.Tensor,
    kx_per_A: torch.Tensor,
    ky_per_A: torch.Tensor,
    apix: float,
    shifts_A: torch.Tensor | None = None,
    ctf: torch.Tensor | None = None,
    chunk_gaussians: int = 256,
) -> torch.Tensor:
    """Anisotropic Gaussians (non-separable path): covariances ``(B|1, G, 3, 3)`` in Å².

    ``rho(p) = sum_i a_i exp(-(p - c_i)^T S_i^{-1} (p - c_i) / 2)``; its projection's DFT is
    ``a_i (2 pi)^{3/2} sqrt(det S_i) / apix^3 exp(-2 pi^2 k^T (A S_i A^T)_xy k)`` times the
    same phase as :func:`gaussian_projection_ft`. Costs ``O(G Nx Ny)`` exponentials per
    image (forms ``(B, chunk, Ny, Nx)`` blocks). Other arguments as there.
    """
    rot = rotations
    dt = rot.dtype
    c = _batched(centres_A.to(dt), 3)
    a = _batched(amplitudes.to(dt), 2)
    cov = covariances_A2.to(dt)
    cov = cov[None] if cov.ndim == 3 else cov
    n_img = rot.shape[0]
    w = a * _NORM3 * torch.sqrt(torch.linalg.det(cov)) / apix**3  # (B|1, G)
    r2 = rot[:, None, :2, :]  # (B, 1, 2, 3)
    s2d = r2 @ cov @ r2.transpose(-1, -2)  # (B, G, 2, 2)
    pos = torch.einsum("bij,bgj->bgi", rot[:, :2, :], c.expand(n_img, -1, -1) if c.shape[0] == 1 else c)
    if shifts_A is not None:
        pos = pos - shifts_A.to(dt)[:, None, :]
    kx, ky = kx_per_A.to(dt), ky_per_A.to(dt)
    KX, KY = kx[None, :], ky[:, None]  # (1, Nx), (Ny, 1)
    F = torch.zeros((n_img, ky.numel(), kx.numel()), dtype=torch.complex(kx, kx).dtype, device=rot.device)
    w = w.expand(n_img, -1)
    for j in range(0, pos.shape[1], chunk_gaussians):
        sl = slice(j, j + chunk_gaussians)
        S = s2d[:, sl]
        quad = (
            S[..., 0, 0, None, None] * KX * KX
            + 2.0 * S[..., 0, 1, None, None] * KX * KY
            + S[..., 1, 1, None, None] * KY * KY
        )
        ph = -_TWO_PI * (pos[:, sl, 0, None, None] * KX + pos[:, sl, 1, None, None] * KY)
        mag = w[:, sl, None, None] * torch.exp(-2.0 * math.pi**2 * quad)
        F = F + (_cis(ph) * mag).sum(dim=1)
    return F * ctf if ctf is not None else F


def project_gaussians(
    centres_A: torch.Tensor,
    amplitudes: torch.Tensor,
    sigmas_A: torch.Tensor,
    rotations: torch.Tensor,
    box: int,
    apix: float,
    shifts_A: torch.Tensor | None = None,
    ctf_params: torch.Tensor | None = None,
) -> torch.Tensor:
    """Real projection images ``(B, box, box)`` of a Gaussian mixture, CTF and shift applied.

    Evaluates :func:`gaussian_projection_ft` on the half plane ``kx >= 0`` in ``fft``
    (uncentred) order and inverts with ``irfft2``; the image centre is at ``box // 2``.
    ``ctf_params`` is the ``(B, 9)`` CTF tensor of :mod:`cryohet.imaging.ctf`.
    """
    dev = rotations.device
    dt = rotations.dtype
    ky = torch.fft.fftfreq(box, d=apix, device=dev, dtype=dt)
    kx = torch.fft.rfftfreq(box, d=apix, device=dev, dtype=dt)
    ctf = None
    if ctf_params is not None:
        ctf = compute_ctf_grid(kx, ky, ctf_params_tensor(ctf_params, dev, dt))
    F = gaussian_projection_ft(centres_A, amplitudes, sigmas_A, rotations, kx, ky, apix, shifts_A, ctf)
    img = torch.fft.irfft2(F, s=(box, box), dim=(-2, -1))
    return torch.fft.fftshift(img, dim=(-2, -1))


def voxelize_gaussians(
    centres_A: torch.Tensor,
    amplitudes: torch.Tensor,
    sigmas_A: torch.Tensor,
    box: int,
    apix: float,
    band_limit: bool = True,
    truncate: float = 4.0,
    chunk_gaussians: int = 512,
) -> torch.Tensor:
    """Voxel grid ``(box, box, box)`` ``(z, y, x)`` of a Gaussian mixture, centre at ``box // 2``.

    Args:
        centres_A: ``(G, 3)`` centres ``(x, y, z)`` in Å from the box centre.
        amplitudes: ``(G,)`` value at the centres.
        sigmas_A: ``(G,)`` or scalar, Å.
        band_limit: True: sample the mixture's exact 3D transform on the box's DFT grid
            and invert (band-limited to the voxel Nyquist; the Fourier-slice projection of
            this grid reproduces :func:`gaussian_projection_ft` up to interpolation
            error); like every DFT-grid sampling it is periodic, so density within a few
            sigma of a box face wraps to the opposite face. False: splat
            ``a exp(-r^2/2 sigma^2)`` point samples within
            ``truncate`` sigma of each centre (fast; aliases for sigma < ~apix).
        truncate: splat radius in sigmas (real-space path only).
        chunk_gaussians: Gaussians per chunk (bounds memory).
    """
    dt = centres_A.dtype if centres_A.is_floating_point() else torch.float32
    c = centres_A.to(dt)
    a = amplitudes.to(dt)
    s = sigmas_A.to(dt)
    s = s.expand(c.shape[0]) if s.ndim == 0 else s
    if band_limit:
        return _voxelize_fourier(c, a, s, box, apix, chunk_gaussians)
    return _voxelize_splat(c, a, s, box, apix, truncate, chunk_gaussians)


def _voxelize_fourier(c, a, s, box, apix, chunk):
    dev, dt = c.device, c.dtype
    k_full = torch.fft.fftfreq(box, d=apix, device=dev, dtype=dt)  # y and z, fft order
    kx = torch.fft.rfftfreq(box, d=apix, device=dev, dtype=dt)  # half axis for irfftn
    w = _weights(a, s, apix)
    s2 = 2.0 * math.pi**2 * s * s

    def axis(sl: slice, k: torch.Tensor, col: int, weight: torch.Tensor | None = None) -> torch.Tensor:
        mag = torch.exp(-s2[sl, None] * k * k)
        if weight is not None:
            mag = mag * weight[sl, None]
        return _cis(-_TWO_PI * c[sl, col, None] * k) * mag  # (g, N)

    F = None
    for j in range(0, c.shape[0], chunk):
        sl = slice(j, j + chunk)
        ex, ey, ez = axis(sl, kx, 0, w), axis(sl, k_full, 1), axis(sl, k_full, 2)
        t = (ey[:, :, None] * ex[:, None, :]).reshape(ex.shape[0], -1)  # (g, Ny*Nx)
        part = (ez.transpose(0, 1) @ t).reshape(box, box, kx.numel())
        F = part if F is None else F + part
    vol = torch.fft.irfftn(F, s=(box, box, box), dim=(-3, -2, -1))
    return torch.fft.fftshift(vol, dim=(-3, -2, -1))


def _voxelize_splat(c, a, s, box, apix, truncate, chunk):
    dev, dt = c.device, c.dtype
    half = math.ceil(truncate * float(s.max()) / apix)
    offs = torch.arange(-half, half + 1, device=dev)
    out = torch.zeros(box**3, device=dev, dtype=dt)
    for j in range(0, c.shape[0], chunk):
        sl = slice(j, j + chunk)
        cv = c[sl] / apix + box // 2  # (g, 3) fractional voxel index (x, y, z)
        base = torch.round(cv).long()
        idx = base[:, :, None] + offs  # (g, 3, W)
        d = (idx.to(dt) - cv[:, :, None]) * apix  # Å from the centre
        g1 = torch.exp(-(d * d) / (2.0 * s[sl, None, None] ** 2))  # (g, 3, W)
        g1 = g1 * ((idx >= 0) & (idx < box))
        vals = a[sl, None, None, None] * g1[:, 2, :, None, None] * g1[:, 1, None, :, None] * g1[:, 0, None, None, :]
        ic = idx.clamp(0, box - 1)
        flat = (ic[:, 2, :, None, None] * box + ic[:, 1, None, :, None]) * box + ic[:, 0, None, None, :]
        out.index_add_(0, flat.reshape(-1), vals.reshape(-1))
    return out.reshape(box, box, box)
