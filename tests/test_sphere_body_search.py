"""cryoSPHERE's domain search (methods/sphere/body_search.py, body_targets.py).

* The search's image of a turned body (rest analytic, body voxelised and sliced, hinge
  phase) equals the analytic render of the moved model: on noiseless images the search
  finds each image's turn, and the residual there is ~1e-5 of the image's power.
* The pivot of the whole IgG's Fab body (1HZH) lies near the true hinge axis (the line
  H230 CA to H239 CA of igg-1d) wherever along the hinge peptide the body ends, and the
  residues beyond the Fab's fold leave the body.
* The hinge fit recovers a known axis and pivot from rigid motions about them; the axis
  chosen on a set of images is the one they were turned about, from a perpendicular guess.
* The pull towards a target is 0 at the target and the mean squared displacement
  elsewhere; the target table survives a checkpoint round trip.
* The rigidity restraint is 0 for any rigid motion of a body, and for a body bent at
  one residue it is the Kabsch residual; its gradient moves the bent residue back; the
  static core is kept rigid the same way.
* The latent ring is fitted to the latents' turn and hand, costs nothing on it and the
  squared distance in its two coordinates off it, and survives a checkpoint.
* Version-1 run configs read without the search, version-2 without the rigidity
  restraint; the axis-angle reading turns a segment through 180° and beyond.
"""

from __future__ import annotations

import numpy as np
import pytest
import roma
import torch
from sphere_helpers import fab_with_light_chain_body

from cryohet.geometry.rotations import random_rotations
from cryohet.imaging.bands import FourierBand
from cryohet.imaging.likelihood import WeightedL2
from cryohet.io.atomic import read_atomic_model
from cryohet.io.source import ParticleSource
from cryohet.methods.sphere.body_search import (
    Body,
    body_hinge,
    body_pivot_A,
    hinge_fit,
    hinge_rotations,
    search_body,
)
from cryohet.methods.sphere.body_targets import LATENT_RING_RADIUS, BodyTargets, search_batch
from cryohet.methods.sphere.config import SphereConfig
from cryohet.methods.sphere.deformation import ROTVEC_UNIT_RAD, decoded_rotvecs
from cryohet.methods.sphere.hinge_axis import axis_candidates, choose_axis
from cryohet.methods.sphere.network import SphereNetwork
from cryohet.representations.render import BandBatch, model_images
from cryohet.representations.residue_model import residue_model
from cryohet.simulate.presets import bundled_model_path

BOX, APIX = 32, 5.0


@pytest.fixture(scope="module")
def fab(tmp_path_factory):
    """A Fab's residue network (whole model movable) and its light chain as the body."""
    _, net, body = fab_with_light_chain_body(tmp_path_factory.mktemp("fab") / "fab.pdb", BOX, APIX, segments=4)
    return net, body


def _images_of_turned_body(net: SphereNetwork, body: Body, turns: torch.Tensor, rng_seed: int = 1) -> BandBatch:
    """Noiseless images (analytic Gaussians, shifts, no CTF) of the model with ``body``
    turned by ``turns (B, 3, 3)`` about its pivot."""
    b = len(turns)
    moved = net.base_A.clone().expand(b, -1, -1).clone()
    offsets = net.base_A[body.residues] - body.pivot_A
    moved[:, body.residues] = body.pivot_A + torch.einsum("bij,rj->bri", turns, offsets)
    rotations = torch.as_tensor(random_rotations(b, rng_seed), dtype=torch.float32)
    band = FourierBand.disc(BOX, APIX).lowpass(0.8)
    shifts = torch.as_tensor(np.random.default_rng(rng_seed).uniform(-6, 6, (b, 2)), dtype=torch.float32)
    filters = band.filters(None, shifts)
    with torch.no_grad():
        observed = model_images(net.mixture(moved), rotations, band, filters)
    return BandBatch(torch.arange(b), observed, filters, rotations, shifts, band)


def test_the_search_image_of_a_turned_body_is_the_analytic_render(fab):
    net, body = fab
    turns_deg = torch.tensor([35.0, 150.0, 250.0])
    bb = _images_of_turned_body(net, body, hinge_rotations(body.axis, turns_deg))
    likelihood = WeightedL2(bb.band)
    grid = torch.arange(0.0, 360.0, 5.0)
    index, best, current = search_body(net, body, bb, torch.zeros(3, net.zdim), likelihood,
                                       hinge_rotations(body.axis, grid))  # fmt: skip
    power = likelihood.score(bb.observed, torch.zeros_like(bb.observed))
    assert grid[index].tolist() == turns_deg.tolist()
    assert (best / power).max() < 1e-4  # slice interpolation only
    assert (current / power).min() > 0.05  # the unturned model does not fit


def test_the_search_refines_between_grid_steps_and_flags_what_fits_better(fab):
    net, body = fab
    turns_deg = torch.tensor([0.0, 93.7, 211.2, 318.9])
    bb = _images_of_turned_body(net, body, hinge_rotations(body.axis, turns_deg), rng_seed=2)
    rotations, better = search_batch(net, body, bb, torch.zeros(4, net.zdim), WeightedL2(bb.band))
    error = torch.rad2deg(roma.rotmat_geodesic_distance(rotations, hinge_rotations(body.axis, turns_deg)))
    assert error.max() < 1.0
    assert better.tolist() == [False, True, True, True]  # the decoder's zero motion already fits image 0


def test_the_pivot_is_where_the_chain_leaves_the_fab():
    atoms = read_atomic_model(bundled_model_path("1hzh.pdb.gz"), remove_hydrogens=True, remove_waters=True)
    residues = residue_model(atoms, None)
    chain, number = np.asarray(residues.chain_ids), np.asarray(residues.residue_numbers)
    base = torch.as_tensor(residues.centres_A(64, 6.0), dtype=torch.float32)
    bonded = torch.as_tensor(residues.bonded_to_next)
    same_chain = torch.as_tensor(np.append(chain[1:] == chain[:-1], False))
    ca = base[torch.as_tensor((chain == "H") & np.isin(number, [230, 239]))]
    axis = torch.nn.functional.normalize(ca[1] - ca[0], dim=0)

    def off_axis_A(p: torch.Tensor) -> float:
        d = p - ca[0]
        return float((d - axis * (d @ axis)).norm())

    for end in (230, 239, 253, 286, 340):  # the boundary anywhere along the hinge peptide or in CH2
        in_body = torch.as_tensor(((chain == "H") & (number <= end)) | (chain == "L"))
        pivot, fold = body_hinge(base, in_body, bonded, same_chain)
        assert torch.equal(pivot, body_pivot_A(base, in_body, bonded, same_chain))
        assert off_axis_A(pivot) < 5.0, end
        walked_over = (in_body & ~fold).numpy()  # the hinge peptide and CH2 leave the body, the Fab stays
        assert set(number[walked_over]) == set(number[(chain == "H") & (number > 229) & (number <= end)]), end
        assert bool(fold[torch.as_tensor(chain == "L")].all())
    crossing = torch.nonzero(bonded[:-1] & (in_body[:-1] != in_body[1:])).squeeze(1)
    assert off_axis_A(0.5 * (base[crossing] + base[crossing + 1]).mean(0)) > 20.0  # the bond itself is far


def test_hinge_fit_recovers_the_axis_and_the_pivot():
    g = torch.Generator().manual_seed(0)
    axis = torch.nn.functional.normalize(torch.tensor([1.0, 2.0, -0.5]), dim=0)
    pivot = torch.tensor([12.0, -7.0, 30.0])
    angles = torch.rand(200, generator=g) * 60.0 - 10.0
    rot = hinge_rotations(axis, angles) @ roma.rotvec_to_rotmat(0.01 * torch.randn(200, 3, generator=g))
    t = pivot - torch.einsum("mij,j->mi", rot, pivot)  # x -> R (x - p) + p
    found_axis, found_pivot, turns = hinge_fit(rot, t, near_A=pivot + torch.tensor([5.0, 5.0, 5.0]))
    assert float(found_axis @ axis) > 0.999  # also the sign: most turns are positive
    # a point anywhere on the axis fits; the weak pull picks the one nearest to near_A
    off_axis = (found_pivot - pivot) - ((found_pivot - pivot) @ axis) * axis
    assert float(off_axis.norm()) < 0.5
    assert torch.allclose(turns, angles.abs(), atol=3.0)


def test_the_axis_chosen_on_the_images_is_the_one_they_turned_about(fab):
    net, body = fab
    turns_deg = torch.arange(20.0, 360.0, 25.0)  # 14 images, 20°..345°
    bb = _images_of_turned_body(net, body, hinge_rotations(body.axis, turns_deg), rng_seed=3)
    wrong = torch.nn.functional.normalize(torch.linalg.cross(body.axis, torch.tensor([1.0, 0.0, 0.0])), dim=0)
    first_guess = Body(body.residues, body.pivot_A, wrong)
    found = choose_axis(net, first_guess, [(bb, torch.zeros(len(bb), net.zdim))], WeightedL2(bb.band))
    assert float(np.degrees(np.arccos(min(1.0, abs(float(found.axis @ body.axis)))))) < 3.0
    assert torch.equal(found.pivot_A, body.pivot_A)
    candidates = axis_candidates()
    assert len(candidates) == 24 and bool((candidates[:, 2] >= 0).all())


def test_the_pull_is_zero_at_the_target_and_survives_a_checkpoint(fab):
    net, body = fab
    targets = BodyTargets([body], n_images=5, device="cpu")
    turn = hinge_rotations(body.axis, torch.tensor([40.0, 80.0]))
    targets.set(0, torch.tensor([1, 3]), turn, torch.tensor([True, True]))
    offsets = net.base_A[body.residues] - body.pivot_A
    moved = net.base_A.clone().expand(2, -1, -1).clone()
    moved[0, body.residues] = body.pivot_A + offsets @ turn[0].T
    pull = targets.loss(moved, torch.tensor([1, 3]), net.base_A)
    expected = ((body.pivot_A + offsets @ turn[1].T - net.base_A[body.residues]) ** 2).sum(-1).mean()
    assert float(pull[0]) < 1e-6
    assert float(pull[1]) == pytest.approx(float(expected), rel=1e-5)
    assert float(targets.loss(moved, torch.tensor([0, 2]), net.base_A).abs().max()) == 0.0  # no targets there
    again = BodyTargets.from_state(targets.state_dict(), "cpu")
    assert torch.equal(again.active[0], targets.active[0])
    assert torch.allclose(again.loss(moved, torch.tensor([1, 3]), net.base_A), pull)


def test_the_rigidity_restraint_is_the_kabsch_residual(fab):
    net, body = fab
    g = torch.Generator().manual_seed(4)
    rot = torch.as_tensor(random_rotations(3, rng=4), dtype=torch.float32)
    moved = torch.einsum("bij,rj->bri", rot, net.base_A) + 20.0 * torch.randn(3, 1, 3, generator=g)
    targets = BodyTargets([body], n_images=3, device="cpu")
    assert float(targets.rigidity(moved, net.base_A).abs().max()) < 1e-6  # any rigid motion costs nothing
    bent = moved.clone()
    kink = int(body.residues[len(body.residues) // 2])
    bent[:, kink] += torch.tensor([4.0, -2.0, 1.0])
    bent.requires_grad_(True)
    loss = targets.rigidity(bent, net.base_A)
    residual = []
    for b in range(3):  # reference: the residual after an independent least-squares superposition
        x, y = net.base_A[body.residues].double().numpy(), bent[b, body.residues].detach().double().numpy()
        u, _, vt = np.linalg.svd((x - x.mean(0)).T @ (y - y.mean(0)))
        d = np.sign(np.linalg.det(u @ vt))
        r = (u * [1.0, 1.0, d]) @ vt
        residual.append((((x - x.mean(0)) @ r - (y - y.mean(0))) ** 2).sum(-1).mean())
    assert np.allclose(loss.detach().numpy(), residual, rtol=1e-4)
    assert 0.5 * 21.0 / len(body.residues) < float(loss[0].detach()) < 21.0 / len(body.residues)
    loss.sum().backward()
    assert float((bent.grad[:, kink] * torch.tensor([4.0, -2.0, 1.0])).sum(-1).min()) > 0  # descent moves it back
    outside = np.setdiff1d(np.arange(net.n_residues), body.residues.numpy())
    assert float(bent.grad[:, outside].abs().max()) == 0.0
    # the static core (residues in no body) is kept rigid too, and survives a checkpoint
    core = torch.as_tensor(outside)
    with_core = BodyTargets.from_state(BodyTargets([body], 3, "cpu", core=core).state_dict(), "cpu")
    assert torch.equal(with_core.core, core)
    bent_core = moved.clone()
    bent_core[:, int(core[len(core) // 2])] += torch.tensor([4.0, -2.0, 1.0])
    assert float(targets.rigidity(bent_core, net.base_A).abs().max()) < 1e-6
    assert float(with_core.rigidity(bent_core, net.base_A).min()) > 0.5 * 21.0 / len(core)


def test_older_runs_read_as_they_ran(tmp_path):
    common = {"data": ParticleSource(path=str(tmp_path / "p.star")), "out": str(tmp_path / "r"), "model": "m.pdb"}
    assert SphereConfig(**common).domain_search_at == [0.25, 0.45]
    assert SphereConfig(**common).domain_rigidity > 0
    assert SphereConfig(**common, method_version=1).domain_search_at == []
    assert SphereConfig(**common, method_version=1).domain_rigidity == 0.0
    assert SphereConfig(**common, method_version=2).domain_search_at == [0.25, 0.45]
    assert SphereConfig(**common, method_version=2).domain_rigidity == 0.0
    assert SphereConfig(**common).rotation == "sixd"
    assert SphereConfig(**common, method_version=3).rotation == "rotvec"
    assert SphereConfig(**common).domain_latent_ring > 0
    assert SphereConfig(**common, method_version=3).domain_latent_ring == 0.0
    assert SphereConfig(**common).domain_turns
    assert not SphereConfig(**common, method_version=4).domain_turns
    assert SphereConfig(**common, method_version=4).domain_latent_ring > 0
    assert SphereConfig(**common).domain_hinge_refine
    assert not SphereConfig(**common, method_version=5).domain_hinge_refine
    assert SphereConfig(**common, method_version=5).domain_turns
    assert SphereConfig(**common).domain_hinge_min_shift_A > 0 and SphereConfig(**common).domain_hinge_min_tilt_deg > 0
    v6 = SphereConfig(**common, method_version=6)
    assert v6.domain_hinge_refine and v6.domain_hinge_min_shift_A == 0.0 and v6.domain_hinge_min_tilt_deg == 0.0
    assert SphereConfig(**common, method_version=2).rotation == "quaternion"
    assert SphereConfig(**common, method_version=2, rotation="rotvec").rotation == "rotvec"
    with pytest.raises(ValueError, match="fractions of the run"):
        SphereConfig(**common, domain_search_at=[0.5, 1.2])


def test_the_axis_angle_reading_turns_through_a_half_turn():
    axis = torch.nn.functional.normalize(torch.tensor([1.0, -2.0, 2.0]), dim=0)
    for angle in (30.0, 179.0, 181.0, 250.0):
        out = torch.deg2rad(torch.tensor(angle)) / ROTVEC_UNIT_RAD * axis
        rot = roma.rotvec_to_rotmat(decoded_rotvecs(out[None], "rotvec"))[0]
        error = roma.rotmat_geodesic_distance(rot, hinge_rotations(axis, torch.tensor(angle)))
        assert float(torch.rad2deg(error)) < 1e-3
    # the paper's reading: the same small-angle rate, but never a half turn
    small = torch.tensor([[0.01, 0.0, 0.0]])
    assert torch.allclose(decoded_rotvecs(small, "quaternion"), decoded_rotvecs(small, "rotvec"), rtol=1e-3)
    assert float(decoded_rotvecs(torch.tensor([[1e3, 0.0, 0.0]]), "quaternion").norm()) < np.pi


def test_the_latent_ring_fits_the_latents_turn_and_hand_and_survives_a_checkpoint():
    """Latents that already lie on a ring of the searched turns, mirrored and turned by 0.7
    rad, are fitted with sign -1 and phase 0.7 and cost nothing; the cost elsewhere is the
    squared distance in the body's two latent coordinates only; images without a target
    cost nothing."""
    torch.manual_seed(0)
    n = 40
    axis = torch.nn.functional.normalize(torch.tensor([0.2, -0.3, 0.9]), dim=0)
    body = Body(torch.arange(5), torch.zeros(3), axis)
    targets = BodyTargets([body], n, "cpu")
    theta = torch.linspace(-3.0, 3.0, n)
    rows = torch.arange(n)
    better = torch.ones(n, dtype=torch.bool)
    better[::7] = False  # these keep no target
    targets.set(0, rows, hinge_rotations(axis, torch.rad2deg(theta)), better)
    assert torch.allclose(targets.turn_angles(0, rows)[better], theta[better], atol=1e-5)
    on_ring = LATENT_RING_RADIUS * torch.stack([torch.cos(0.7 - theta), torch.sin(0.7 - theta)], dim=-1)
    z = torch.cat([0.8 * on_ring, torch.randn(n, 4)], dim=-1)  # the fit ignores the radius
    targets.fit_rings(z)
    assert targets.ring_sign == [-1.0] and abs(targets.ring_phase[0] - 0.7) < 1e-4
    z_ring = torch.cat([on_ring, torch.randn(n, 4)], dim=-1)
    cost = targets.latent_ring(z_ring, rows)
    assert float(cost.abs().max()) < 1e-8
    shifted = z_ring.detach() + torch.tensor([0.3, -0.4, 5.0, 5.0, 5.0, 5.0])
    cost = targets.latent_ring(shifted, rows)
    assert torch.allclose(cost[better], torch.full((int(better.sum()),), 0.25), atol=1e-5)
    assert float(cost[~better].abs().max()) == 0.0
    back = BodyTargets.from_state(targets.state_dict(), "cpu")
    assert back.ring_sign == [-1.0] and back.ring_phase == targets.ring_phase
    assert torch.allclose(back.latent_ring(shifted, rows), cost)
