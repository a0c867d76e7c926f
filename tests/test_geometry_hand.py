"""The hand flip: a mirrored map at the mirrored poses makes the same images (shared forward model)."""

from __future__ import annotations

import numpy as np
import torch

from cryohet.geometry.hand import mirror_poses, mirror_volume
from cryohet.geometry.rotations import euler_relion_to_matrix, is_rotation, random_rotations
from cryohet.representations import GaussianMixture, VoxelVolume
from cryohet.representations.render import render

BOX, APIX, N = 32, 2.0, 8


def _asymmetric_gmm() -> GaussianMixture:
    """Twelve Gaussians at random places, random amplitudes: no mirror symmetry."""
    g = torch.Generator().manual_seed(0)
    centres = (torch.rand(12, 3, generator=g) - 0.5) * 16 * APIX
    return GaussianMixture(centres, torch.rand(12, generator=g) + 0.5, torch.full((12,), 2.5))


def _poses():
    rot = random_rotations(N, 3)
    shifts = (np.random.default_rng(0).random((N, 2)) - 0.5) * 6 * APIX
    ctf = torch.tensor([[15000.0, 14000.0, 30.0, 300.0, 2.7, 0.1, 0.0, 20.0, 1.0]]).repeat(N, 1)
    ctf[:, :2] += torch.arange(N)[:, None] * 700.0
    return rot, shifts, ctf


def _images(rep, rot, shifts, ctf):
    t = torch.float32
    return render(rep, torch.as_tensor(rot, dtype=t), torch.as_tensor(shifts, dtype=t), ctf, BOX, APIX)


def test_mirrored_map_at_mirrored_poses_gives_the_same_images():
    vol = _asymmetric_gmm().to_volume(BOX, APIX)
    rot, shifts, ctf = _poses()
    images = _images(VoxelVolume(vol, APIX), rot, shifts, ctf)
    mirrored = VoxelVolume(mirror_volume(vol), APIX)
    rot_m, shifts_m = mirror_poses(rot, shifts)
    scale = images.abs().max()
    assert (_images(mirrored, rot_m, shifts_m, ctf) - images).abs().max() < 1e-4 * scale
    # the test can fail: the mirror at the unchanged poses (or at the transposed ones) differs
    assert (_images(mirrored, rot, shifts, ctf) - images).abs().max() > 0.3 * scale
    assert (_images(mirrored, np.swapaxes(rot, 1, 2), shifts, ctf) - images).abs().max() > 0.3 * scale


def test_the_mirror_is_along_z_of_the_volume_frame():
    """mirror_volume of a voxelised mixture = the voxelised mixture with z -> -z (axis 0 is z),
    and the mirrored mixture renders the same images at the mirrored poses (no voxels)."""
    gmm = _asymmetric_gmm()
    centres = gmm.centres_A * torch.tensor([1.0, 1.0, -1.0])
    mirrored = GaussianMixture(centres, gmm.amplitudes, gmm.sigmas_A)
    vol = gmm.to_volume(BOX, APIX, band_limit=False)  # sampled in real space: exact up to rounding
    expected = mirrored.to_volume(BOX, APIX, band_limit=False)
    assert torch.allclose(mirror_volume(vol), expected, atol=1e-6 * float(vol.abs().max()))
    assert not torch.allclose(vol, expected, atol=0.1 * float(vol.abs().max()))  # asymmetric
    rot, shifts, ctf = _poses()
    images = _images(gmm, rot, shifts, ctf)
    rot_m, shifts_m = mirror_poses(rot, shifts)
    assert (_images(mirrored, rot_m, shifts_m, ctf) - images).abs().max() < 1e-4 * images.abs().max()


def test_mirror_poses_is_a_rotation_and_its_own_inverse():
    rot, shifts, _ = _poses()
    rot_m, shifts_m = mirror_poses(rot, shifts)
    assert is_rotation(rot_m).all()
    np.testing.assert_array_equal(shifts_m, shifts)  # origins lie in the image plane
    np.testing.assert_allclose(mirror_poses(rot_m)[0], rot, atol=0)
    # in Euler angles: (rot, tilt, psi) -> (rot + 180, tilt, psi + 180)
    angles = np.array([[10.0, 50.0, 70.0], [-120.0, 150.0, 5.0]])
    expected = euler_relion_to_matrix(angles + [180.0, 0.0, 180.0])
    np.testing.assert_allclose(mirror_poses(euler_relion_to_matrix(angles))[0], expected, atol=1e-12)


def test_mirror_volume_keeps_the_centre_and_is_its_own_inverse():
    d = 8
    vol = np.random.default_rng(0).random((d, d, d)).astype(np.float32)
    m = mirror_volume(vol)
    assert m.dtype == np.float32
    np.testing.assert_array_equal(m[d // 2], vol[d // 2])  # the centre plane stays
    np.testing.assert_array_equal(m[d // 2 + 1], vol[d // 2 - 1])
    np.testing.assert_array_equal(m[0], vol[0])  # -D/2 has no mirror inside the box: kept
    np.testing.assert_array_equal(mirror_volume(m), vol)
    t = torch.from_numpy(vol)
    np.testing.assert_array_equal(mirror_volume(t).numpy(), m)


def test_the_mirror_of_a_map_that_fills_the_box():
    """Noise up to the box faces and up to Nyquist, images compared inside the disc of radius
    0.45 cycles/px (the projector drops the cells of its outermost shell on one side only).
    With the projector's zero padding (the default) the images agree to rounding once the face
    plane k = 0, whose mirror image lies outside the box, is empty; with a periodic projector
    (no padding) they agree with that plane full."""
    rng = np.random.default_rng(5)
    vol = torch.from_numpy(rng.normal(size=(BOX, BOX, BOX)).astype(np.float32))
    rot, shifts, ctf = _poses()
    rot_m, shifts_m = mirror_poses(rot, shifts)
    k = torch.fft.fftshift(torch.fft.fftfreq(BOX))
    inner = (k[:, None] ** 2 + k[None, :] ** 2).sqrt() < 0.45
    t = torch.float32

    def fourier(v, r, s, oversample=2):
        return render(VoxelVolume(v, APIX), torch.as_tensor(r, dtype=t), torch.as_tensor(s, dtype=t), ctf, BOX, APIX,
                      output="fourier", oversample=oversample)[:, inner]  # fmt: skip

    def error(v, oversample=2, poses=(rot_m, shifts_m)):
        ref = fourier(v, rot, shifts, oversample)
        return float((fourier(mirror_volume(v), *poses, oversample) - ref).abs().max() / ref.abs().max())

    empty_face = vol.clone()
    empty_face[0] = 0.0
    assert error(empty_face) < 1e-5
    assert error(empty_face, poses=(rot, shifts)) > 0.3  # the hand matters
    assert error(vol, oversample=1) < 1e-5
    assert error(vol) > 1e-2  # a full face plane is what the zero-padded projector sees differently
