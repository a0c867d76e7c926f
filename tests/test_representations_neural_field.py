"""The neural-field hypervolume (DRGN-AI's decoder): symmetry, Fourier slices, grids, gradients."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from cryohet.geometry.rotations import matrix_to_sixd, random_rotations, sixd_to_matrix
from cryohet.imaging.bands import FourierBand
from cryohet.imaging.fft import fft2_centered, ifft3_centered
from cryohet.imaging.projection import FourierVolume, project, volume_to_fourier
from cryohet.representations import NeuralField, Representation, SliceSource, model_images

APIX = 1.5


def _field(box: int = 24, zdim: int = 0, hidden: int = 256, seed: int = 1, falloff: float | None = 0.15) -> NeuralField:
    """A random field whose last layer has weights of unit output scale, and (``falloff``) a
    Gaussian envelope ``exp(-r^2 / (2 (falloff D)^2))`` so that, like a molecule's, its
    amplitudes decay towards Nyquist (a flat one is cut off hard by the map's sphere)."""
    torch.manual_seed(seed)
    f = NeuralField(box, APIX, zdim=zdim, hidden=hidden, seed=seed)
    with torch.no_grad():
        torch.nn.init.normal_(f.network.output.weight, std=1.0 / math.sqrt(hidden))
    if falloff is not None:
        r = torch.arange(f.n_shells, dtype=torch.float64)
        f.init_envelope(100.0 * torch.exp(-0.5 * (r / (falloff * box)) ** 2))
    return f


def _disc_mask(box: int, radius: float) -> torch.Tensor:
    j = torch.arange(box) - box // 2
    return (j[:, None] ** 2 + j[None, :] ** 2).float().sqrt() < radius


def _rel(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` over the pixels in ``mask`` of every image."""
    return float(((a - b).abs() ** 2)[:, mask].sum().sqrt() / (b.abs() ** 2)[:, mask].sum().sqrt())


def _signed_permutations() -> torch.Tensor:
    """The 24 rotations that map the lattice onto itself (signed permutations, det +1)."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = torch.zeros(3, 3)
            for i in range(3):
                m[i, perm[i]] = signs[i]
            if torch.det(m) > 0:
                out.append(m)
    return torch.stack(out)


def test_protocols_and_validation():
    f = _field(16, hidden=32)
    assert isinstance(f, Representation) and isinstance(f, SliceSource)
    assert f.n_shells == 9 and f.log_scale.shape == (9,)
    with pytest.raises(ValueError, match="Å/px"):
        f.slices(torch.eye(3)[None], FourierBand.full_plane(16, 2 * APIX))
    with pytest.raises(ValueError, match="shells"):
        f.init_envelope(torch.ones(8))
    with pytest.raises(ValueError, match="blend_px"):
        NeuralField(16, APIX, blend_px=0.0)


def test_hermitian_symmetry_is_exact_and_continuous_across_the_plane():
    f = _field(24, zdim=2, hidden=64)
    g = torch.Generator().manual_seed(3)
    k = torch.rand(2000, 3, generator=g) - 0.5
    k[:200, 2] = 0.0  # on the plane kz = 0
    k[200:300, :2] = 0.0  # on the kz axis
    k[300:400, 1:] = 0.0  # on the kx axis (the tie kz = ky = 0)
    k[400:600, 2] *= 1e-2  # inside the blend slab |kz| < 2 / D
    k[600] = 0.0
    z = torch.randn(2000, 2, generator=g)
    with torch.no_grad():
        v, vm = f.values(k, z), f.values(-k, z)
    # Bit for bit: the network sees the same canonical inputs for k and -k.
    assert torch.equal(vm, v.conj())
    assert v[600].imag == 0 and v[600].real != 0
    # Continuous across kz = 0 (the blend): a jump there would be O(|V|).
    kp = k[:200].clone()
    kp[:, 2] = 1e-5
    with torch.no_grad():
        jump = (f.values(kp, z[:200]) - f.values(kp * torch.tensor([1.0, 1.0, -1.0]), z[:200])).abs()
    assert float(jump.max() / v[:200].abs().mean()) < 1e-2


@pytest.mark.parametrize("box", [16, 15])
def test_map_is_real(box):
    f = _field(box, hidden=64)
    spec = f.spectrum()
    c = ifft3_centered(spec)
    # Measured: 0 (D = 16) and ~5e-8 (D = 15) of the largest real value: float32 round-off.
    assert float(c.imag.abs().max() / c.real.abs().max()) < 1e-6
    vol = f.to_volume(box, APIX)
    assert vol.shape == (box,) * 3 and torch.allclose(vol, c.real)
    # Inside the sphere |k| < D/2 the spectrum is the field itself, outside 0.
    j = torch.arange(box) - box // 2
    zz, yy, xx = torch.meshgrid(j, j, j, indexing="ij")
    inside = (xx**2 + yy**2 + zz**2) < (box / 2) ** 2
    k = torch.stack([xx, yy, zz], dim=-1)[inside].float() / box
    assert torch.allclose(spec[inside], f.values(k).detach(), rtol=1e-5, atol=1e-6 * float(spec.abs().max()))
    assert not spec[~inside].any()


def test_fourier_slice_theorem_exact_on_lattice_rotations():
    """For the 24 rotations that map the lattice onto itself the slices are grid samples of
    the map's spectrum: its projections (exact permutation of voxels, periodic) reproduce
    them to float32 round-off (measured 1.5e-7 relative). Pins the axis order, A vs A.T and
    the pixel-sum normalisation."""
    box = 24
    f = _field(box)
    vol = f.to_volume(box, APIX)
    rot = _signed_permutations()
    with torch.no_grad():
        s = f.slices(rot, FourierBand.full_plane(box, APIX))
    j = torch.arange(box) - box // 2
    zz, yy, xx = torch.meshgrid(j, j, j, indexing="ij")
    x_img = torch.stack([xx, yy, zz], dim=-1).float()
    images = []
    for a in rot:  # image voxel x_img takes the volume at A.T x_img
        src = (torch.einsum("ji,zyxj->zyxi", a, x_img).round().long() + box // 2) % box
        images.append(vol[src[..., 2], src[..., 1], src[..., 0]].sum(dim=0))
    ref = fft2_centered(torch.stack(images))
    assert _rel(s, ref, _disc_mask(box, box / 2)) < 1e-5


def test_fourier_slice_theorem_random_rotations():
    """Slices at random rotations against the voxel Fourier slicer of the field's map
    (``project``, 2x padding, ``image_oversample=2``), within ``|k| < D/2 - 1``.

    Measured (D = 24): 3.9 %. Of that, the reference projector's own error (against the
    exact DTFT of the map at the slice points) is 1.3 %; the rest is the field itself: a
    random network's real-space content is not confined to the box (0.2 % of the map's
    power lies beyond 0.45 D), so its off-grid values differ from the trigonometric
    interpolation of its grid samples by 3.7 %. Tolerance 6 %.
    """
    box = 24
    f = _field(box)
    vol = f.to_volume(box, APIX)
    rot = torch.tensor(random_rotations(8, 3), dtype=torch.float32)
    with torch.no_grad():
        s = f.slices(rot, FourierBand.full_plane(box, APIX))
    ref = fft2_centered(project(vol, rot, oversample=2, image_oversample=2))
    assert _rel(s, ref, _disc_mask(box, box / 2 - 1)) < 0.06


def test_latent_conditioning_and_homogeneous_field():
    box = 16
    f = _field(box, zdim=3, hidden=64)
    band = FourierBand.disc(box, APIX)
    rot = torch.tensor(random_rotations(4, 5), dtype=torch.float32)
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    with torch.no_grad():
        s1, s2 = f.slices(rot, band, z1), f.slices(rot, band, z2)
        assert torch.equal(f.slices(rot, band, z1), s1)
        # One z for every image is the same as z repeated.
        assert torch.allclose(f.slices(rot, band, z1[0]), f.slices(rot, band, z1[:1].expand(4, 3)))
    assert float((s1 - s2).norm() / s1.norm()) > 0.05
    with pytest.raises(ValueError, match="pass z"):
        f.slices(rot, band)
    with pytest.raises(ValueError, match="dimensions"):
        f.slices(rot, band, torch.randn(4, 2))
    h = _field(box, zdim=0, hidden=64)
    with torch.no_grad():
        s = h.slices(rot, band)
        assert s.shape == (4, *band.shape) and s.abs().sum() > 0
        assert torch.equal(h.slices(rot, band, torch.randn(4, 5)), s)  # z ignored
        assert h.to_volume(box, APIX).shape == (box,) * 3
        # Through the render seam (CTF/shift filters multiply the slice).
        filt = torch.rand(4, *band.shape)
        assert torch.allclose(model_images(h, rot, band, filt), s * filt)


def test_only_band_pixels_are_evaluated():
    box = 16
    f = _field(box, hidden=64)
    rot = torch.tensor(random_rotations(3, 6), dtype=torch.float32)
    disc, full = FourierBand.disc(box, APIX), FourierBand.full_plane(box, APIX)
    with torch.no_grad():
        sd, sf = f.slices(rot, disc), f.slices(rot, full)
    w = disc.weights > 0
    assert not sd[:, ~w].any()
    rows, cols = disc.ky_idx + box // 2, disc.kx_idx + box // 2
    on_full = sf[:, rows][:, :, cols]
    assert torch.allclose(sd[:, w], on_full[:, w], rtol=1e-5, atol=1e-6 * float(sf.abs().max()))


def _loss(f: NeuralField, rot: torch.Tensor, band: FourierBand, z: torch.Tensor, target: torch.Tensor):
    r = f.slices(rot, band, z) - target
    return (band.weights * r.abs() ** 2).sum()


def test_gradients_reach_weights_latents_and_rotations():
    """Autograd against central finite differences (float64) for the rotation's 6D
    parameters and the latent; measured agreement ~1e-9 relative, tolerance 1e-5."""
    box = 12
    f = _field(box, zdim=2, hidden=32).double()
    band = FourierBand.disc(box, APIX)
    g = torch.Generator().manual_seed(9)
    rot0 = torch.tensor(random_rotations(2, 7))
    sixd = matrix_to_sixd(rot0).requires_grad_(True)
    z = torch.randn(2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, *band.shape, generator=g, dtype=torch.complex128)
    loss = _loss(f, sixd_to_matrix(sixd), band, z, target)
    loss.backward()
    for name, p in f.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    eps = 1e-6
    for x, grad in ((sixd, sixd.grad), (z, z.grad)):
        d = torch.randn(x.shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            xs = x.detach()

            def at(t, x=x, xs=xs):
                six = t if x is sixd else sixd.detach()
                zz = t if x is z else z.detach()
                return float(_loss(f, sixd_to_matrix(six), band, zz, target))

            fd = (at(xs + eps * d) - at(xs - eps * d)) / (2 * eps)
        ad = float((grad * d).sum())
        assert abs(fd - ad) <= 1e-5 * abs(ad), (fd, ad)


def _field_and_its_slices(box: int) -> tuple[NeuralField, torch.Tensor, FourierBand, torch.Tensor]:
    """A test field, 8 random rotations, the full-plane band and the field's own slices there."""
    f = _field(box)
    rot = torch.tensor(random_rotations(8, 3), dtype=torch.float32)
    band = FourierBand.full_plane(box, APIX)
    with torch.no_grad():
        return f, rot, band, f.slices(rot, band)


def test_fourier_grid_matches_direct_slices():
    """The cached grid (trilinear interpolation) against direct evaluation, |k| < D/2 - 1.

    Measured (D = 24): 2.7 % (oversample 1), 0.84 % (2), 0.45 % (3): the trilinear error
    falls about as ``1 / oversample^2``. Tolerance 5 % at oversample 2.
    """
    box = 24
    f, rot, band, s = _field_and_its_slices(box)
    mask = _disc_mask(box, box / 2 - 1)
    errs = {}
    for os in (1, 2, 3):
        grid = f.fourier_grid(box / 2 - 1, oversample=os)
        assert isinstance(grid, FourierVolume) and grid.box == box and grid.padded == os * box
        errs[os] = _rel(grid.slices(rot, band), s, mask)
    assert errs[2] < 0.05 and errs[3] < errs[2] < errs[1], errs
    # Node j holds V((j - P//2) / P) exactly, and nothing beyond the radius plus one cell.
    grid = f.fourier_grid(5.0, oversample=2)
    p = grid.padded
    nodes = torch.tensor([[p // 2 + 3, p // 2 - 7, p // 2 + 1], [p // 2, p // 2, p // 2], [p // 2 - 10, p // 2, 0]])
    k = (nodes - p // 2).float() / p  # (x, y, z)
    want = f.values(k[:2]).detach()
    got = grid.data[nodes[:2, 2], nodes[:2, 1], nodes[:2, 0]]
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))
    assert grid.data[nodes[2, 2], nodes[2, 1], nodes[2, 0]] == 0  # 5 Fourier pixels + margin < 5.5


def test_a_grid_filled_from_the_map_is_as_close_to_the_field_for_far_fewer_network_evaluations():
    """``from_map``: the network on the field's own lattice, to its map, then the voxel path
    (padded, gridding-corrected transform). Measured (D = 24, |k| < D/2 - 1): 1.0 % against
    the field's slices, against 0.84 % for the network at every half-voxel node, with an
    eighth of the network evaluations (3 562 against 28 010); at a small radius (5 px) the
    4 px margin keeps the lattice's truncation away from the band (0.96 % against 0.86 %)."""
    box = 24
    f, rot, band, s = _field_and_its_slices(box)
    points = []
    values = f.values

    def counted(k, z=None):
        points.append(len(k))
        return values(k, z)

    f.values = counted
    errs = {}
    for from_map in (False, True):
        points.clear()
        grid = f.fourier_grid(box / 2 - 1, oversample=2, from_map=from_map)
        assert isinstance(grid, FourierVolume) and grid.box == box and grid.padded == 2 * box
        errs[from_map] = (_rel(grid.slices(rot, band), s, _disc_mask(box, box / 2 - 1)), sum(points))
    assert errs[True][0] < 0.02 and errs[True][0] < 1.5 * errs[False][0], errs
    assert errs[True][1] < errs[False][1] / 5, errs
    small = f.fourier_grid(5.0, oversample=2, from_map=True)
    assert _rel(small.slices(rot, band), s, _disc_mask(box, 5.0)) < 0.02
    # It is the voxel path of the field's own map.
    want = volume_to_fourier(f.to_volume(box, APIX), 2).data
    got = f.fourier_grid(box / 2 - 1, oversample=2, from_map=True).data
    assert torch.allclose(got, want, atol=1e-5 * float(want.abs().max()))


def test_envelope_sets_the_scale_of_the_field():
    box = 16
    f = _field(box, hidden=64, falloff=None)
    assert torch.equal(f.log_scale.detach(), torch.zeros(9))  # starts at 1
    k = torch.rand(500, 3) - 0.5
    with torch.no_grad():
        base = f.values(k)
    rms = torch.logspace(3, -1, 9, dtype=torch.float64)
    rms[4] = 0.0  # an empty shell takes the smallest positive value
    f.init_envelope(rms)
    want = rms.clone()
    want[4] = rms[rms > 0].min()
    with torch.no_grad():
        shells = f.envelope(torch.arange(12, dtype=torch.float32))
        assert torch.allclose(shells[:9].double(), want, rtol=1e-6)
        assert torch.allclose(shells[9:], shells[8].expand(3))  # clamped beyond D/2
        mid = f.envelope(torch.tensor([2.25]))  # linear in log: geometric between shells
        assert torch.allclose(mid.double(), want[2] ** 0.75 * want[3] ** 0.25, rtol=1e-5)
        scaled = f.values(k)
    radius = k.norm(dim=-1) * box
    assert torch.allclose(scaled, base * f.envelope(radius).detach(), rtol=1e-5, atol=1e-6)
    # Slices scale with it: a constant envelope c multiplies every slice by c.
    f.init_envelope(torch.full((9,), 1.0))
    rot = torch.tensor(random_rotations(2, 1), dtype=torch.float32)
    band = FourierBand.disc(box, APIX)
    with torch.no_grad():
        one = f.slices(rot, band)
        f.init_envelope(torch.full((9,), 7.0))
        assert torch.allclose(f.slices(rot, band), 7.0 * one, rtol=1e-5, atol=1e-6)


def test_other_box_and_pixel_size_keep_the_mass():
    """Maps at other grids are the field's map resampled: at half the pixel size every other
    sample is the coarse map's (values, not sums, keep their units), and the integral
    ``sum(v) apix^3`` is kept up to the last half-voxel plane, which lies outside the coarse
    box and is zero."""
    box = 16
    f = _field(box, hidden=64)
    vol = f.to_volume(box, APIX)
    fine = f.to_volume(2 * box, APIX / 2)
    assert fine.shape == (2 * box,) * 3
    assert torch.allclose(fine[::2, ::2, ::2], vol, atol=1e-4 * float(vol.abs().max()))
    assert abs(float(fine.sum()) / 8 - float(vol.sum())) < 5e-3 * float(vol.abs().sum())


def test_forward_is_slices():
    f = _field(16, zdim=2, hidden=32)
    band = FourierBand.disc(16, APIX, 0.5)
    rot = torch.as_tensor(random_rotations(3, 0), dtype=torch.float32)
    z = torch.randn(3, 2)
    with torch.no_grad():
        assert torch.equal(f(rot, band, z), f.slices(rot, band, z))


@pytest.mark.parametrize("box, oversample, radius", [(16, 2, 9.0), (15, 1, 8.0), (16, 1, 8.5)])
def test_fourier_grid_holds_the_field_at_every_node(box, oversample, radius):
    """The cache evaluates the network on half the nodes and conjugates the rest: every node
    within the radius equals the field there (radii past the grid's edge, where nodes with an
    index -P/2 have no mirror, included; even and odd P), every node beyond it is 0."""
    f = _field(box, zdim=3)
    z = torch.randn(1, 3)
    grid = f.fourier_grid(radius, z, oversample=oversample).data
    p = grid.shape[0]
    j = torch.arange(p) - p // 2
    jz, jy, jx = torch.meshgrid(j, j, j, indexing="ij")
    r_idx = (radius + math.sqrt(3.0) / oversample) * oversample
    inside = (jz**2 + jy**2 + jx**2).double() <= r_idx**2
    k = torch.stack([jx[inside], jy[inside], jz[inside]], dim=-1).float() / p
    with torch.no_grad():
        want = f.values(k, z.expand(len(k), -1))
    if p % 2 == 0:  # the unpaired edge plane is within the radius: evaluated, not mirrored
        assert bool(inside[jz == -(p // 2)].any())
    assert torch.allclose(grid[inside], want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))
    assert bool((grid[~inside] == 0).all())


def test_bf16_autocast_keeps_the_field_close_to_float32():
    """Mixed precision (the CUDA default) runs the network in bf16 but the Fourier-feature
    phases in float32 (they reach hundreds of radians at D/2): the field's values stay within
    bf16's ~1e-2 of float32, for slices and for the cached grid. Checked with the CPU's bf16
    autocast, which casts the same operations."""
    f = _field(32, zdim=2)
    rot = torch.tensor(random_rotations(6, 5), dtype=torch.float32)
    band = FourierBand.full_plane(32, APIX)
    z = torch.randn(6, 2)
    with torch.no_grad():
        ref = f.slices(rot, band, z)
        grid_ref = f.fourier_grid(12.0, z[:1], oversample=1).data
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            feats = f.features(torch.rand(100, 3) - 0.5)
            low = f.slices(rot, band, z)
            grid_low = f.fourier_grid(12.0, z[:1], oversample=1).data
    assert feats.dtype == torch.float32 and low.dtype == ref.dtype and grid_low.dtype == grid_ref.dtype
    mask = _disc_mask(32, 15)
    assert _rel(low, ref, mask) < 1e-2, _rel(low, ref, mask)
    assert float((grid_low - grid_ref).norm() / grid_ref.norm()) < 1e-2
