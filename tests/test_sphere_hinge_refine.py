"""cryoSPHERE's hinge chosen again on the data (methods/sphere/hinge_refine.py).

* Moving the pivot is a phase ramp on the body's slices: on noiseless images of a body
  turned about a hinge, the totals made about another pivot with the offset to the true
  one are at the interpolation floor (~1e-5 of the images' power), and far above it at
  the other pivot itself.
* From a pivot 4 Å off the true hinge line and an axis 3° off, with each image's turn
  known only to ±6°, the refined pivot lies within 0.6 Å of the line and the axis within
  1°; the pivot's part along the axis is kept.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sphere_helpers import fab_with_light_chain_body
from test_sphere_body_search import _images_of_turned_body

from cryohet.imaging.likelihood import WeightedL2
from cryohet.methods.sphere.body_search import Body, BodyScorer, hinge_rotations
from cryohet.methods.sphere.hinge_axis import normal_basis
from cryohet.methods.sphere.hinge_refine import hinge_totals, refine_hinge

BOX, APIX = 32, 5.0


@pytest.fixture(scope="module")
def fab(tmp_path_factory):
    _, net, body = fab_with_light_chain_body(tmp_path_factory.mktemp("fab") / "fab.pdb", BOX, APIX, segments=4)
    return net, body


def _tilted(axis: torch.Tensor, deg: float) -> torch.Tensor:
    e1, _ = normal_basis(axis)
    return np.cos(np.radians(deg)) * axis + np.sin(np.radians(deg)) * e1


def _off_line_A(point: torch.Tensor, body: Body) -> float:
    d = point - body.pivot_A
    return float((d - (d @ body.axis) * body.axis).norm())


def test_a_pivot_offset_is_a_phase_ramp_on_the_body_slices(fab):
    net, body = fab
    turns_deg = torch.tensor([40.0, 130.0, 220.0, 300.0])
    bb = _images_of_turned_body(net, body, hinge_rotations(body.axis, turns_deg), rng_seed=4)
    likelihood = WeightedL2(bb.band)
    e1, e2 = normal_basis(body.axis)
    offset = 3.0 * e1 - 2.0 * e2 + 5.0 * body.axis  # the part along the axis changes nothing
    elsewhere = Body(body.residues, body.pivot_A - offset, body.axis)
    scorer = BodyScorer.prepare(net, elsewhere, bb, torch.zeros(len(bb), net.zdim), likelihood)
    totals = hinge_totals([scorer], [turns_deg], body.axis, torch.stack([offset, torch.zeros(3)]))
    power = float(likelihood.score(bb.observed, torch.zeros_like(bb.observed)).sum())
    assert float(totals[0]) / power < 1e-4  # the true hinge, reached by the ramp alone
    assert float(totals[1]) / power > 100 * float(totals[0]) / power  # the other pivot does not fit


def test_the_refined_hinge_is_the_one_the_images_turned_about(fab):
    net, body = fab
    g = torch.Generator().manual_seed(5)
    turns_deg = torch.rand(24, generator=g) * 300.0 + 30.0
    bb = _images_of_turned_body(net, body, hinge_rotations(body.axis, turns_deg), rng_seed=5)
    e1, e2 = normal_basis(body.axis)
    start = Body(body.residues, body.pivot_A + 3.2 * e1 + 2.4 * e2 + 1.5 * body.axis, _tilted(body.axis, 3.0))
    assert _off_line_A(start.pivot_A, body) == pytest.approx(4.0, abs=1e-4)
    known_to = turns_deg + (torch.rand(24, generator=g) * 12.0 - 6.0)
    found = refine_hinge(net, start, [(bb, torch.zeros(len(bb), net.zdim))], [known_to], WeightedL2(bb.band))
    assert _off_line_A(found.pivot_A, body) < 0.6
    assert float(np.degrees(np.arccos(min(1.0, abs(float(found.axis @ body.axis)))))) < 1.0
    along = float((found.pivot_A - start.pivot_A) @ found.axis)
    assert abs(along) < 1e-4  # moved only across the axis it found
