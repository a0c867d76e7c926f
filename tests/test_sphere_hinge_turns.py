"""cryoSPHERE's domain turns read from the latent ring (methods/sphere/hinge_turns.py).

* A latent on a body's ring point for the turn ``theta`` (the ring fitted to searched
  targets, as the trainer does) turns the body by exactly ``theta`` about its hinge, and
  there the pull towards the searched target and the ring's cost are both 0: the ring,
  the search and the turn share one convention. Residues outside the body stay put.
* The turns survive a checkpoint loaded without executing code; a network saved before
  turns existed loads with none.
* The per-segment motions written for the analysis include the turn (a segment inside the
  body moves by the hinge turn); without turns they are the decoder's, bit for bit.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import roma
import torch
from sphere_helpers import fab_with_light_chain_body

from cryohet.methods.sphere.body_search import hinge_rotations
from cryohet.methods.sphere.body_targets import LATENT_RING_RADIUS, BodyTargets
from cryohet.methods.sphere.hinge_turns import HingeTurn
from cryohet.methods.sphere.network import SphereNetwork

BOX, APIX, ZDIM = 32, 5.0, 4


@pytest.fixture(scope="module")
def fab(tmp_path_factory):
    """A Fab's residue network (zdim 4, 4 segments) and its light chain as the body."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fab") / "fab.pdb"
    return fab_with_light_chain_body(path, BOX, APIX, zdim=ZDIM, segments=4, rotation="sixd")


def _ring_latents(targets: BodyTargets, theta: torch.Tensor) -> torch.Tensor:
    """Latents on the body's ring point for each turn, other coordinates random."""
    angle = targets.ring_phase[0] + targets.ring_sign[0] * theta
    ring = LATENT_RING_RADIUS * torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)
    return torch.cat([ring, torch.randn(len(theta), ZDIM - 2)], dim=-1)


def _turned_network(fab, phase: float, sign: float) -> tuple[SphereNetwork, BodyTargets, torch.Tensor]:
    residues, net, body = fab
    n = 30
    theta = torch.linspace(-3.1, 3.1, n)  # radians, through the whole turn
    targets = BodyTargets([body], n, "cpu")
    targets.set(0, torch.arange(n), hinge_rotations(body.axis, torch.rad2deg(theta)), torch.ones(n, dtype=torch.bool))
    # latents the ring is fitted to: mirrored and turned as the trainer may find them
    z_fit = torch.stack([torch.cos(phase + sign * theta), torch.sin(phase + sign * theta)], dim=-1)
    targets.fit_rings(torch.cat([0.6 * z_fit, torch.randn(n, ZDIM - 2)], dim=-1))
    assert targets.ring_sign == [sign] and abs(targets.ring_phase[0] - phase) < 1e-4
    turned = SphereNetwork(residues, BOX, APIX, zdim=ZDIM, segments=4, rotation="sixd").eval()
    turned.load_state_dict(net.state_dict())
    turned.turns.set(
        [HingeTurn(body.residues, body.pivot_A, body.axis, 0, targets.ring_phase[0], targets.ring_sign[0])]
    )
    return turned, targets, theta


@pytest.mark.parametrize("phase,sign", [(0.7, -1.0), (-2.0, 1.0)])
def test_a_latent_on_the_ring_turns_the_body_by_its_searched_angle(fab, phase, sign):
    _, _, body = fab
    torch.manual_seed(1)
    net, targets, theta = _turned_network(fab, phase, sign)
    z = _ring_latents(targets, theta)
    with torch.no_grad():
        moved = net.deformed(z, net.memberships(len(z), sample=False))
    offsets = net.base_A[body.residues] - body.pivot_A
    expected = body.pivot_A + torch.einsum("bij,rj->bri", hinge_rotations(body.axis, torch.rad2deg(theta)), offsets)
    assert float((moved[:, body.residues] - expected).abs().max()) < 1e-3  # Å
    rest = torch.ones(net.n_residues, dtype=torch.bool)
    rest[body.residues] = False
    assert float((moved[:, rest] - net.base_A[rest]).abs().max()) < 1e-5  # the decoder starts at zero
    rows = torch.arange(len(theta))
    assert float(targets.loss(moved, rows, net.base_A).max()) < 1e-5  # Å^2 from the searched placement
    assert float(targets.latent_ring(z, rows).max()) < 1e-8
    # the radius does not matter, only the ring's angle
    with torch.no_grad():
        scaled = net.deformed(torch.cat([0.2 * z[:, :2], z[:, 2:]], -1), net.memberships(len(z), sample=False))
    assert torch.allclose(scaled, moved, atol=1e-3)


def test_turns_survive_a_checkpoint_and_older_networks_load(fab):
    residues, plain, body = fab
    torch.manual_seed(2)
    net, targets, theta = _turned_network(fab, 0.7, -1.0)
    z = _ring_latents(targets, theta)
    buffer = io.BytesIO()
    torch.save({"network": net.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["network"]
    back = SphereNetwork(residues, BOX, APIX, zdim=ZDIM, segments=4, rotation="sixd").eval()
    back.load_weights(state)
    w = net.memberships(len(z), sample=False)
    with torch.no_grad():
        assert torch.equal(back.deformed(z, w), net.deformed(z, w))
    older = {k: v for k, v in plain.state_dict().items() if not k.startswith("turns.")}
    assert len(older) < len(plain.state_dict())
    back.load_weights(older)
    assert len(back.turns) == 0
    with torch.no_grad():
        assert torch.equal(back.deformed(z, w), plain.deformed(z, w))


def test_segment_motions_include_the_turn(fab):
    residues, plain, body = fab
    torch.manual_seed(3)
    z = torch.randn(6, ZDIM)
    with torch.no_grad():
        for a, b in zip(plain.segment_motions(z), plain.motions(z)):
            assert torch.equal(a, b)
    net, targets, theta = _turned_network(fab, -2.0, 1.0)
    z = _ring_latents(targets, theta[:6])
    with torch.no_grad():
        rotvecs, shifts = net.segment_motions(z)
    labels = net.segment_labels()
    in_body = np.isin(np.arange(len(labels)), body.residues.numpy())
    inside = [k for k in range(4) if (labels == k).sum() >= 3 and in_body[labels == k].all()]
    outside = [k for k in range(4) if (labels == k).sum() >= 3 and not in_body[labels == k].any()]
    assert inside and outside
    turn = hinge_rotations(body.axis, torch.rad2deg(theta[:6]))
    for k in inside:
        error = roma.rotmat_geodesic_distance(roma.rotvec_to_rotmat(rotvecs[:, k]), turn)
        assert float(torch.rad2deg(error).max()) < 0.1
        expected_t = body.pivot_A - turn @ body.pivot_A
        assert torch.allclose(shifts[:, k], expected_t, atol=1e-2)
    for k in outside:
        assert float(rotvecs[:, k].abs().max()) < 1e-4 and float(shifts[:, k].abs().max()) < 1e-3


def test_the_trainer_starts_the_turns_and_restarts_the_decoder(fab):
    """At the first search the bodies with a ring (coordinates within zdim) start turning,
    the decoder's last layer and its Adam state restart from zero, and the rest of the
    network keeps its weights."""
    from types import SimpleNamespace

    from cryohet.methods.sphere.trainer import SphereTrainer

    residues, plain, body = fab
    net = SphereNetwork(residues, BOX, APIX, zdim=ZDIM, segments=4, rotation="sixd")
    with torch.no_grad():
        for p in net.decoder.parameters():
            p.normal_()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.decoder(torch.randn(3, ZDIM)).sum().backward()
    opt.step()
    first = net.decoder[0].weight.detach().clone()
    targets = BodyTargets([body, body, body], 5, "cpu")  # zdim 4: the third body has no ring
    targets.ring_phase, targets.ring_sign = [0.5, -1.0, 2.0], [1.0, -1.0, 1.0]
    trainer = SimpleNamespace(net=net, opt=opt, targets=targets, cfg=SimpleNamespace(zdim=ZDIM))
    SphereTrainer._start_turns(trainer, epoch=9)
    assert [(t.coordinate, t.phase, t.sign) for t in net.turns.turns] == [(0, 0.5, 1.0), (2, -1.0, -1.0)]
    last = net.decoder[-1]
    assert float(last.weight.detach().abs().max()) == 0.0 and float(last.bias.detach().abs().max()) == 0.0
    assert last.weight not in opt.state and last.bias not in opt.state
    assert torch.equal(net.decoder[0].weight, first) and net.decoder[0].weight in opt.state


def test_the_hinge_is_refined_by_gradient_from_the_searched_one(fab):
    """With refinement slots, the turn starts about the searched hinge (offsets 0), its
    pivot and axis offsets receive gradients from the moved residues, and a pivot offset
    moves the turn's fixed line by ``PIVOT_UNIT_A`` Å per unit."""
    from cryohet.methods.sphere.hinge_turns import PIVOT_UNIT_A

    residues, _, body = fab
    torch.manual_seed(4)
    net = SphereNetwork(residues, BOX, APIX, zdim=ZDIM, segments=4, rotation="sixd", turn_slots=2).eval()
    with torch.no_grad():
        net.turns.pivot_offsets.fill_(0.3)
    net.turns.set([HingeTurn(body.residues, body.pivot_A, body.axis, 0, 0.0, 1.0)])
    assert float(net.turns.pivot_offsets.detach().abs().max()) == 0.0  # set() starts the refinement at 0
    theta = torch.tensor([0.4, 1.9, -2.5])
    z = torch.cat([torch.stack([torch.cos(theta), torch.sin(theta)], -1), torch.zeros(3, ZDIM - 2)], -1)
    w = net.memberships(len(z), sample=False)
    moved = net.deformed(z, w)
    offsets = net.base_A[body.residues] - body.pivot_A
    expected = body.pivot_A + torch.einsum("bij,rj->bri", hinge_rotations(body.axis, torch.rad2deg(theta)), offsets)
    assert float((moved[:, body.residues] - expected).detach().abs().max()) < 1e-3
    moved[:, body.residues].square().sum().backward()
    assert (
        float(net.turns.pivot_offsets.grad[0].abs().max()) > 0 and float(net.turns.axis_offsets.grad[0].abs().max()) > 0
    )
    assert float(net.turns.pivot_offsets.grad[1].abs().max()) == 0.0  # an unused slot
    step = torch.tensor([0.5, -0.2, 0.1])
    with torch.no_grad():
        net.turns.pivot_offsets[0] = step
        shifted = net.deformed(z, w)
    pivot = body.pivot_A + PIVOT_UNIT_A * step
    expected = pivot + torch.einsum("bij,rj->bri", hinge_rotations(body.axis, torch.rad2deg(theta)),
                                    net.base_A[body.residues] - pivot)  # fmt: skip
    assert float((shifted[:, body.residues] - expected).abs().max()) < 1e-3


def test_a_segment_running_past_a_turning_domain_is_split_between_domains(fab):
    """The domains written for the analysis are per residue: a segment that runs past the
    end of a turning domain is split there (its residues inside turn with the domain, the
    others stay with the core); without turns the residues' domains are their segments'."""
    from cryohet.methods.sphere.domains import motion_domains
    from cryohet.methods.sphere.outputs import residue_domains

    residues, plain, body = fab
    torch.manual_seed(4)
    base = plain.base_A.numpy()
    labels = plain.segment_labels()
    z = torch.randn(40, ZDIM)
    residue_domain, segment_domain = residue_domains(plain, base, labels, z.numpy(), "cpu")
    with torch.no_grad():
        expected = motion_domains(base, labels, *(m.numpy() for m in plain.motions(z)))
    assert np.array_equal(segment_domain, expected)
    assert np.array_equal(residue_domain, np.where(labels >= 0, expected[np.maximum(labels, 0)], -1))

    net, targets, theta = _turned_network(fab, 0.7, -1.0)
    in_body = np.isin(np.arange(len(labels)), body.residues.numpy())
    k = max(range(4), key=lambda s: int(((labels == s) & in_body).sum()))
    members = np.flatnonzero((labels == k) & in_body)
    left_out = members[len(members) // 2 :]  # the segment's second half now lies outside the domain
    turn = net.turns.turns[0]
    kept = torch.as_tensor(np.setdiff1d(body.residues.numpy(), left_out))
    net.turns.set([HingeTurn(kept, turn.pivot_A, turn.axis, turn.coordinate, turn.phase, turn.sign)])
    pieces = net.piece_labels()
    assert len(set(pieces[members[: len(members) // 2]])) == 1 and len(set(pieces[left_out])) == 1
    assert pieces[members[0]] != pieces[left_out[0]]
    z = _ring_latents(targets, theta)  # turns through the whole circle
    residue_domain, segment_domain = residue_domains(net, base, labels, z.numpy(), "cpu")
    turning, core = residue_domain[members[0]], residue_domain[np.flatnonzero(~in_body)[0]]
    assert turning != core
    assert np.all(residue_domain[kept.numpy()] == turning)  # the whole turning domain is one domain
    assert np.all(residue_domain[left_out] == core) and np.all(residue_domain[~in_body & (labels >= 0)] == core)
    assert segment_domain[k] == (turning if len(members) - len(left_out) > len(left_out) else core)


@pytest.mark.parametrize("shift_A,tilt_deg,min_shift_A,replaced", [
    (0.5, 1.0, 1.0, False),  # a small move: the current hinge stays, nothing restarts
    (2.5, 0.0, 1.0, True),  # the pivot moved: the hinge is replaced, the decoder restarts
    (0.0, 3.0, 1.0, True),  # the axis turned
    (0.5, 1.0, 0.0, True),  # method version 6: any change replaces
])  # fmt: skip
def test_a_hinge_chosen_again_replaces_the_current_one_only_when_it_moved_enough(
    fab, monkeypatch, shift_A, tilt_deg, min_shift_A, replaced
):
    from types import SimpleNamespace

    from cryohet.methods.sphere import search_steps
    from cryohet.methods.sphere.body_search import Body

    residues, _, body = fab
    net = SphereNetwork(residues, BOX, APIX, zdim=ZDIM, segments=4, rotation="sixd")
    with torch.no_grad():
        net.decoder[-1].weight.fill_(0.01)
    net.turns.set([HingeTurn(body.residues, body.pivot_A, body.axis, 0, 0.0, 1.0)])
    normal = torch.nn.functional.normalize(torch.linalg.cross(body.axis, torch.tensor([1.0, 0.0, 0.0])), dim=0)
    tilted = hinge_rotations(normal, torch.tensor([tilt_deg]))[0] @ body.axis
    moved = Body(body.residues, body.pivot_A + shift_A * normal, tilted)
    monkeypatch.setattr(search_steps, "refine_hinge", lambda *args: moved)
    cfg = SimpleNamespace(domain_hinge_min_shift_A=min_shift_A, domain_hinge_min_tilt_deg=2.0 * (min_shift_A > 0))
    trainer = SimpleNamespace(
        net=net, opt=torch.optim.Adam(net.parameters()), cfg=cfg, dist=SimpleNamespace(enabled=False),
        _sample_batches=lambda size, band, z: [(None, z[:4])],
    )  # fmt: skip
    bodies = [Body(body.residues, body.pivot_A, body.axis)]
    search_steps.DomainSearchSteps._refine_hinges(trainer, bodies, torch.zeros(8, ZDIM), None, None, epoch=18)
    pivot, axis = net.turns.hinge(0)
    assert torch.allclose(pivot, moved.pivot_A if replaced else body.pivot_A)
    assert torch.allclose(axis, moved.axis if replaced else body.axis, atol=1e-6)
    assert bodies[0] is (moved if replaced else bodies[0]) and torch.equal(bodies[0].pivot_A, pivot)
    assert (float(net.decoder[-1].weight.detach().abs().max()) == 0.0) == replaced
