"""A neural-field hypervolume: complex Fourier values ``V(k, z)`` from a coordinate network.

DRGN-AI's (cryoDRGN ``abinit``'s) decoder, in cryohet's conventions. A frequency ``k``
in cycles/px of a ``D``-voxel lattice (extent ``+-0.5``) is encoded by fixed Gaussian
random Fourier features ``[sin(k W^T), cos(k W^T)]``, ``W = (D / 2) B``,
``B (192, 3) ~ N(0, 0.5^2)`` (:class:`~cryohet.networks.GaussianFourierFeatures`); the
latent ``z`` is concatenated as is; a :class:`~cryohet.networks.ResidualMLP` (Linear to
256, ReLU, 3 residual blocks, Linear to 2) gives two real numbers. Where cryoDRGN outputs
a Hartley value, here they are the real and imaginary parts of the **centred 3D DFT of
the map in pixel-sum units** (:mod:`cryohet.imaging.fft`: ``V(k) = sum_x v(x) exp(-2 pi
i k.x)``, ``x`` in voxels from the centre ``D // 2``), so the central slice at
``k3 = A.T @ (kx, ky, 0)`` is the centred image DFT of the projection along z
(:mod:`cryohet.imaging.projection`) and the field plugs into the render seam like a voxel
volume or a Gaussian mixture.

**Hermitian symmetry by construction.** A real map has ``V(-k) = conj V(k)``. With ``N(k)``
the network's complex output (Re, Im) and ``w`` a smooth step of half-width
``delta = blend_px / D`` cycles/px (default 2 Fourier pixels)::

    V(k) = envelope(|k|) * [ w(kz) N(k) + w(-kz) conj N(-k) ],
    w(t) = 1 (t >= delta),  0 (t <= -delta),  1/2 + (3 s - s^3) / 4 with s = t / delta between.

Since ``w(t) + w(-t) = 1``, ``V(-k) = conj V(k)`` identically. Outside the slab
``|kz| < delta`` this is one network evaluation at the point of ``{k, -k}`` with
``kz > 0``, conjugated when the query was mirrored (cryoDRGN's half-space rule); inside
the slab both points are evaluated and blended, so the field is continuous (C1) across
``kz = 0`` at the price of the slab's share of extra evaluations (~4 / D of a random
slice's pixels at ``blend_px = 2``). Implementation: every query is reduced to the
canonical representative ``p`` of ``{k, -k}`` in

    H = {kz > 0} u {kz = 0, ky > 0} u {kz = ky = 0, kx >= 0}

(a lexicographic sign rule on ``(kz, ky, kx)``; ``-0.0`` counts as 0), ``V(p)`` is computed
from ``N(p)`` (and ``N(-p)`` in the slab) and ``V(k) = V(p)``, or ``conj V(p)`` when
``k = -p``. The network sees the same inputs for ``k`` and ``-k``, so ``values(-k) ==
conj(values(k))`` bit for bit; at ``k = 0`` the imaginary part is set to 0. Why blend:
with the bare half-space rule an untrained field jumps by O(|V|) across ``kz = 0``; at
``D = 24`` the trilinear interpolation of its cached grid (:meth:`NeuralField.fourier_grid`,
``oversample = 2``) then erred by 17-26 % and its map's projections disagreed with its
slices by 26-37 %, against 2-3 % and 3.5-5 % with the 2-pixel blend (2-2.5 % and 3.4-3.7 %
for the full average ``(N(k) + conj N(-k)) / 2`` at twice the cost).

**Radial amplitude envelope.** The Fourier amplitudes of a cryo-EM map fall by orders of
magnitude from low to high frequency (and again after the CTF's envelope). A network
asked to output them directly needs huge outputs at the centre and tiny ones at the
edge: the last layer's scale is set by the low frequencies, high-frequency detail sits
in the last bits of its output, and gradient steps are dominated by the few strong
shells. So the network predicts a dimensionless value, multiplied by a learnable
positive per-shell scale ``exp(log_scale(r))``, ``r = |k| D`` in Fourier pixels,
``log_scale`` held at shells ``0 .. D // 2`` and interpolated linearly between shells
(geometric interpolation of the scale), clamped beyond ``D // 2`` (the cube's corners).
It starts at 1 (``log_scale = 0``); :meth:`NeuralField.init_envelope` sets it from the
radial RMS of data (e.g. of a consensus map's transform), after which the network's
target is O(1) at every radius.

Cost: every value is one network evaluation (``~2 * (384 + zdim) * 256 + 4 * 2 * 256^2``
flops, ~0.7 MFLOP). :meth:`NeuralField.slices` evaluates only the band's pixels of
non-zero weight; :meth:`NeuralField.fourier_grid` caches the field on an oversampled grid
(a :class:`~cryohet.imaging.projection.FourierVolume`) for fast approximate slices by
trilinear interpolation (pose search). Evaluation is chunked (``chunk_points``): this
bounds the transient memory without autograd; with autograd the saved activations of
every chunk (~5 KB per point) stay alive until the backward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..imaging.bands import FourierBand
from ..imaging.fft import ifft3_centered
from ..imaging.projection import FourierVolume, volume_to_fourier
from ..networks import GaussianFourierFeatures, ResidualMLP
from .base import Representation
from .voxel import resample_volume

__all__ = ["NeuralField"]


@dataclass(frozen=True)
class _GridNodes:
    """Nodes of a cached grid: where the network is evaluated (``flat`` indices into the
    flattened ``side^3`` grid, at ``k`` cycles/px ``(N, 3)``), and where the conjugates of
    the values ``paired`` (indices into those ``N``) go (``mirror_flat``)."""

    flat: torch.Tensor
    k: torch.Tensor
    mirror_flat: torch.Tensor
    paired: torch.Tensor


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


class NeuralField(nn.Module, Representation):
    """Complex Fourier values ``V(k, z)`` of a (conditional) map on a ``box``-voxel lattice.

    Args:
        box: ``D``, the lattice the frequencies are measured on (cycles/px of a
            ``D``-voxel box; the features' scale ``D / 2`` and the envelope's shells
            ``0 .. D // 2`` follow from it).
        apix: its voxel size in Å (slices are answered on bands of this pixel size; maps
            at other sizes are resampled).
        zdim: latent dimension; 0 for a homogeneous map (``z`` is then ignored).
        hidden, blocks: width and residual blocks of the network (DRGN-AI: 256, 3).
        features, sigma: Gaussian Fourier features (DRGN-AI: 192, 0.5).
        seed: seed of the features (the network's weights follow torch's global RNG).
        blend_px: half-width in Fourier pixels of the slab ``|kz| < blend_px / D`` where the
            two half-spaces are blended (module docstring).
        chunk_points: points per network call (bounds transient memory); default 4096 on
            a CPU (measured at D=64: 1.0 s per cached grid against 1.9 s with 32768 points,
            the activations staying in cache) and 262144 on a GPU (few, large calls).
        isotropic_start: start as the envelope itself, ``V(k) = envelope(|k|)`` (the output
            layer's weights 0, its bias ``(1, 0)``): a real, spherically symmetric map,
            the same in every view. An ab initio search must start from a map without a
            preferred direction; a randomly initialised network's field is anisotropic
            (its slice power varied by +-20 % with the view at D=32 after a short
            pretraining, and the first searches collapsed onto the strong views).
    """

    def __init__(
        self,
        box: int,
        apix: float,
        zdim: int = 0,
        hidden: int = 256,
        blocks: int = 3,
        features: int = 192,
        sigma: float = 0.5,
        seed: int = 0,
        blend_px: float = 2.0,
        chunk_points: int | None = None,
        isotropic_start: bool = True,
    ) -> None:
        super().__init__()
        if box < 2:
            raise ValueError(f"a neural field needs a box of at least 2 voxels, got {box}")
        if zdim < 0:
            raise ValueError(f"zdim must be >= 0, got {zdim}")
        if not blend_px > 0:
            raise ValueError(f"blend_px must be > 0, got {blend_px}")
        self.box = int(box)
        self.apix = float(apix)
        self.zdim = int(zdim)
        self.blend_px = float(blend_px)
        self.chunk_points = None if chunk_points is None else int(chunk_points)
        self._node_cache: dict[tuple, _GridNodes] = {}  # grid node sets of recent fourier_grid calls
        self.features = GaussianFourierFeatures(3, features, sigma, scale=self.box / 2, seed=seed)
        self.network = ResidualMLP(self.features.n_out + self.zdim, hidden, blocks, 2, zero_last=isotropic_start)
        if isotropic_start:
            with torch.no_grad():
                self.network.output.bias[0] = 1.0
        self.log_scale = nn.Parameter(torch.zeros(self.n_shells))

    # ------------------------------------------------------------------ properties
    @property
    def n_shells(self) -> int:
        """Shells ``0 .. D // 2`` of the envelope."""
        return self.box // 2 + 1

    @property
    def device(self) -> torch.device:
        return self.log_scale.device

    @property
    def dtype(self) -> torch.dtype:
        return self.log_scale.dtype

    # ------------------------------------------------------------------ envelope
    @torch.no_grad()
    def init_envelope(self, radial_rms: torch.Tensor) -> None:
        """Set the per-shell scale to ``radial_rms (n_shells,)``: the RMS of the map's complex
        Fourier values (pixel-sum units) in each shell ``round(|k| D) = 0 .. D // 2``.

        Non-positive or non-finite entries (empty shells) take the smallest positive value
        given, so that every scale stays positive.
        """
        rms = torch.as_tensor(radial_rms, dtype=torch.float64).reshape(-1)
        if rms.numel() != self.n_shells:
            raise ValueError(f"init_envelope needs {self.n_shells} shells (0 .. {self.box // 2}), got {rms.numel()}")
        good = torch.isfinite(rms) & (rms > 0)
        if not bool(good.any()):
            raise ValueError("init_envelope needs at least one positive shell RMS")
        rms = torch.where(good, rms, rms[good].min())
        self.log_scale.copy_(torch.log(rms).to(self.log_scale))

    def envelope(self, radius_px: torch.Tensor) -> torch.Tensor:
        """The scale ``exp(log_scale(r))`` at radii in Fourier pixels (same shape), linear in
        ``log_scale`` between shells, clamped outside ``0 .. D // 2``."""
        n = self.n_shells
        t = radius_px.clamp(0.0, float(n - 1))
        i0 = torch.floor(t.detach()).to(torch.int64).clamp(max=n - 2)
        frac = t - i0.to(t.dtype)
        ls = self.log_scale
        return torch.exp(ls[i0] * (1.0 - frac) + ls[i0 + 1] * frac)

    # ------------------------------------------------------------------ the field
    def _latents(self, z: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
        """``z`` broadcast to ``(prod(shape), zdim)``, or None for a homogeneous field."""
        if self.zdim == 0:
            return None
        if z is None:
            raise ValueError(f"this neural field is conditioned on a latent (zdim = {self.zdim}): pass z")
        if z.shape[-1] != self.zdim:
            raise ValueError(f"z has {z.shape[-1]} dimensions, the field {self.zdim}")
        z = z.to(self.device, self.dtype)
        return z.expand(*shape, self.zdim).reshape(-1, self.zdim)

    def _evaluate(self, k: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """Field values at ``k (N, 3)`` cycles/px (latents ``z (N, zdim)``): complex ``(N,)``.

        ``p``: the canonical representative of ``+-k``; near the plane ``|p_z| < blend``
        the network is also evaluated at ``-p`` (appended to the same call) and blended.
        """
        kx, ky, kz = k.unbind(-1)
        mirror = (kz < 0) | ((kz == 0) & ((ky < 0) | ((ky == 0) & (kx < 0))))
        p = torch.where(mirror[:, None], -k, k)
        a = p[:, 2] * (self.box / self.blend_px)  # |kz| in units of the blend half-width
        near = torch.nonzero(a < 1).squeeze(1)
        h = self.features(torch.cat([p, -p.index_select(0, near)]) if near.numel() else p)
        if z is not None:
            h = torch.cat([h, torch.cat([z, z.index_select(0, near)]) if near.numel() else z], dim=-1)
        out = self.network(h).to(self.dtype)  # float32 again after a bf16 autocast region
        n = k.shape[0]
        re, im = out[:n, 0], out[:n, 1]
        if near.numel():
            an = a.index_select(0, near)
            u = 0.5 + (3.0 * an - an**3) / 4.0  # w(|kz|): w(t) + w(-t) = 1, C1 at |t| = 1
            re = re.index_copy(0, near, u * re.index_select(0, near) + (1.0 - u) * out[n:, 0])
            im = im.index_copy(0, near, u * im.index_select(0, near) - (1.0 - u) * out[n:, 1])
        im = torch.where(mirror, -im, im)
        im = im.masked_fill((kx == 0) & (ky == 0) & (kz == 0), 0.0)
        scale = self.envelope(torch.sqrt((p * p).sum(dim=-1).clamp_min(1e-30)) * self.box)
        return torch.complex(re * scale, im * scale)

    def values(self, k_per_px: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """The field's complex Fourier values at ``k_per_px (..., 3)`` (``(kx, ky, kz)``, cycles/px).

        ``z (..., zdim)`` broadcasts against ``k``'s leading axes (ignored when ``zdim = 0``).
        Returns complex ``(...)`` (complex64 for float32 weights), Hermitian exactly
        (module docstring), differentiable in the weights, ``k`` and ``z``.
        """
        k = k_per_px.to(self.device, self.dtype)
        shape = k.shape[:-1]
        flat = k.reshape(-1, 3)
        zz = self._latents(z, shape)
        n, c = flat.shape[0], max(1, self.chunk_points or (1 << 18 if self.device.type == "cuda" else 1 << 12))
        if n == 0:
            return torch.zeros(shape, dtype=_complex_dtype(self.dtype), device=self.device)
        parts = [self._evaluate(flat[i : i + c], None if zz is None else zz[i : i + c]) for i in range(0, n, c)]
        return (parts[0] if len(parts) == 1 else torch.cat(parts)).reshape(shape)

    # ------------------------------------------------------------------ the seam
    def slices(self, rotations: torch.Tensor, band: FourierBand, z: torch.Tensor | None = None) -> torch.Tensor:
        """Central slices ``(B, Ny, Nx)`` on ``band``: ``V(A.T @ (kx, ky, 0), z)``, no CTF, no shift.

        Only the band's pixels of non-zero weight are evaluated (the others are 0).
        ``rotations (B, 3, 3)`` RELION ``A``; ``z (B, zdim)`` (or ``(zdim,)`` for all).
        Differentiable in the weights, ``z`` and the rotations.
        """
        if abs(band.apix - self.apix) > 1e-6 * self.apix:
            raise ValueError(f"a {self.apix:.4g} Å/voxel neural field cannot answer slices at {band.apix:.4g} Å/px")
        dev, dt = self.device, self.dtype
        rot = rotations.to(dev, dt)
        ny, nx = band.shape
        keep = band.weights.to(dev).reshape(-1) > 0
        every = bool(keep.all())
        idx = torch.arange(ny * nx, device=dev) if every else torch.nonzero(keep).squeeze(1)
        kx = band.kx_per_px.to(dev, dt)[idx % nx]
        ky = band.ky_per_px.to(dev, dt)[idx // nx]
        k3 = kx[None, :, None] * rot[:, None, 0, :] + ky[None, :, None] * rot[:, None, 1, :]  # (B, M, 3)
        zz = None
        if z is not None and self.zdim > 0:
            zz = (z if z.ndim == 2 else z.reshape(1, -1))[:, None, :]
        vals = self.values(k3, zz)
        if every:
            return vals.reshape(rot.shape[0], ny, nx)
        out = torch.zeros(rot.shape[0], ny * nx, dtype=vals.dtype, device=dev)
        return out.index_copy(1, idx, vals).reshape(rot.shape[0], ny, nx)

    def forward(self, rotations: torch.Tensor, band: FourierBand, z: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`slices`, so that a ``DistributedDataParallel`` wrapper of the field answers
        the seam (its hooks run on ``forward``)."""
        return self.slices(rotations, band, z)

    # ------------------------------------------------------------------ grids
    def _grid(self, side: int, radius_idx: float, strict: bool, z: torch.Tensor | None) -> torch.Tensor:
        """The field on the centred ``side^3`` grid ``k = (j - side // 2) / side`` cycles/px,
        for ``|j| < radius_idx`` (``<=`` unless ``strict``), zero elsewhere: complex
        ``(side, side, side)`` ``(z, y, x)``.

        The network is evaluated on one half of the grid only (the canonical half of
        :meth:`_evaluate`), in chunks of ``chunk_points``; the other half is its complex
        conjugate, ``V(-k) = conj V(k)`` (exact: the field is Hermitian by construction).
        Nodes whose mirror is off the grid (an index ``-side / 2`` for even ``side``) are
        evaluated themselves. The node set depends only on ``(side, radius, strict)`` and is
        kept for the next call (a search caches one grid per latent cluster, every window)."""
        zz = None if self.zdim == 0 or z is None else z.reshape(1, self.zdim)
        nodes = self._grid_nodes(side, float(radius_idx), strict)
        grid = torch.zeros(side**3, dtype=_complex_dtype(self.dtype), device=self.device)
        if nodes.flat.numel():
            vals = self.values(nodes.k, zz)
            grid[nodes.flat] = vals
            grid[nodes.mirror_flat] = vals.index_select(0, nodes.paired).conj()
        return grid.reshape(side, side, side)

    def _grid_nodes(self, side: int, radius_idx: float, strict: bool) -> _GridNodes:
        key = (side, radius_idx, strict, str(self.device), self.dtype)
        hit = self._node_cache.get(key)
        if hit is not None:
            return hit
        dev = self.device
        h = side // 2
        j = torch.arange(side, device=dev) - h
        r2_plane = j[:, None] ** 2 + j[None, :] ** 2  # (y, x), exact integers
        lim2 = radius_idx**2
        jy, jx = j[None, :, None], j[None, None, :]
        flat, kk, mirror, paired = [], [], [], []
        planes = max(1, (1 << 22) // (side * side))  # index bookkeeping only: a few MB per group
        count = 0
        for z0 in range(0, side, planes):
            jz = j[z0 : z0 + planes]
            jzz = jz[:, None, None]
            r2 = (r2_plane[None] + jzz**2).to(torch.float64)
            inside = r2 < lim2 if strict else r2 <= lim2
            canonical = (jzz > 0) | ((jzz == 0) & ((jy > 0) | ((jy == 0) & (jx >= 0))))
            unpaired = ((jzz == -h) | (jy == -h) | (jx == -h)) if side % 2 == 0 else torch.zeros_like(canonical)
            pz, py, px = torch.nonzero(inside & (canonical | unpaired), as_tuple=True)
            iz = z0 + pz
            flat.append((iz * side + py) * side + px)
            kk.append(torch.stack([j[px], j[py], jz[pz]], dim=-1))
            has = (iz != 0) & (py != 0) & (px != 0) if side % 2 == 0 else torch.ones_like(iz, dtype=torch.bool)
            m = torch.nonzero(has).squeeze(1)
            mirror.append(((2 * h - iz[m]) * side + (2 * h - py[m])) * side + (2 * h - px[m]))
            paired.append(m + count)
            count += len(iz)
        nodes = _GridNodes(
            flat=torch.cat(flat), k=torch.cat(kk).to(self.dtype) / side, mirror_flat=torch.cat(mirror),
            paired=torch.cat(paired),
        )  # fmt: skip
        if len(self._node_cache) >= 4:  # radii march during a search: keep the latest few
            self._node_cache.pop(next(iter(self._node_cache)))
        self._node_cache[key] = nodes
        return nodes

    def _map(self, radius_px: float, z: torch.Tensor | None) -> torch.Tensor:
        """The real-space map ``(D, D, D)`` of the field's own lattice within ``|k| < radius_px``
        (the inverse centred DFT of :meth:`_grid`; ``radius_px = D / 2`` gives :meth:`to_volume`'s)."""
        return ifft3_centered(self._grid(self.box, radius_px, True, z)).real

    @torch.no_grad()
    def spectrum(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """The map's centred 3D DFT on the field's own ``D^3`` grid: complex ``(D, D, D)``
        ``(z, y, x)``, the field's values inside the sphere ``|k| < D / 2`` Fourier pixels and
        0 outside (strict, so that every non-zero value has its Hermitian partner on the grid:
        for even ``D`` the unpaired ``-D/2`` planes stay empty). ``z (zdim,)`` or ``(1, zdim)``."""
        return self._grid(self.box, self.box / 2, True, z)

    @torch.no_grad()
    def to_volume(self, box: int, apix: float, z: torch.Tensor | None = None) -> torch.Tensor:
        """The real-space map ``(box, box, box)`` ``(z, y, x)``, centre ``box // 2``, for latent ``z``.

        ``ifft3_centered`` of :meth:`spectrum` (so ``fft3_centered`` of the map is the field
        inside the sphere, and its projections' DFTs are the field's central slices); for
        another ``box``/``apix`` that map is resampled band-limited
        (:func:`~cryohet.representations.voxel.resample_volume`: the field's box is the
        map's extent, zero beyond it). Evaluated without autograd.
        """
        vol = self._map(self.box / 2, z)
        return resample_volume(vol, self.apix, int(box), float(apix))

    @torch.no_grad()
    def fourier_grid(
        self, radius_px: float, z: torch.Tensor | None = None, oversample: int = 1, from_map: bool = False
    ) -> FourierVolume:
        """The field cached on a ``P = oversample * D`` grid, for fast approximate slices.

        Node ``j`` holds the field at ``(j - P // 2) / P`` cycles/px (the
        :class:`~cryohet.imaging.projection.FourierVolume` convention, so
        ``FourierVolume.slices`` interpolates it trilinearly at ``A.T @ (kx, ky, 0)``).
        ``P^3`` complex values (8 bytes each at float32). Two ways to fill it:

        * ``from_map=False``: the network at every node with ``|k| <= radius_px +
          sqrt(3) / oversample`` Fourier pixels (every interpolation cell of a point within
          ``radius_px`` is filled), 0 beyond. No gridding correction (there is no real-space
          map to divide): the error is that of trilinear interpolation of the field itself
          (tests: ~1-5 % at ``oversample = 2``).
        * ``from_map=True``: the network on the field's own ``D^3`` lattice only, out to
          ``radius_px + 4`` (at most ``D / 2``), inverse-transformed to its real-space map,
          then zero-padded to ``P`` and transformed with the gridding correction
          (:func:`~cryohet.imaging.projection.volume_to_fourier`, the voxel volume's path):
          ``oversample^3`` times fewer network evaluations, for the same error against the
          field's own slices at ``oversample = 2`` (measured on a trained field at D = 32:
          4.0 % against 3.95 %; 11 % at ``oversample = 1`` without it). Nodes beyond the
          radius hold the padded map's transform, not 0.
        """
        if oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {oversample}")
        if from_map:
            vol = self._map(min(float(radius_px) + 4.0, self.box / 2), z)
            with torch.autocast(device_type=self.device.type, enabled=False):
                return volume_to_fourier(vol, int(oversample), gridding=True)
        side = int(oversample) * self.box
        radius_idx = (float(radius_px) + math.sqrt(3.0) / oversample) * oversample
        return FourierVolume(self._grid(side, radius_idx, False, z), self.box)
