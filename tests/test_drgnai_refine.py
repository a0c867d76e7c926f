"""DRGN-AI ``--poses-mode refine`` with a local search in the joint epochs: poses a few
degrees off (as a consensus refinement of a flexible sample gives them) are brought back,
where gradient descent on the pose table alone hardly moves them."""

from __future__ import annotations

import numpy as np
import pytest

from cryohet.geometry.rotations import axis_angle_to_matrix, rotation_angle_deg
from cryohet.io.cryodrgn import write_poses_pkl
from cryohet.io.source import ParticleSource
from cryohet.methods.base import load_run
from cryohet.methods.drgnai import DrgnaiConfig, train_drgnai

pytestmark = pytest.mark.slow

OFF_DEG = 8.0


@pytest.fixture(scope="module")
def perturbed(one_state_igg, tmp_path_factory):
    """The one-state IgG set's true poses, each turned by 8 deg about a random axis and shifted
    by up to 1 px, as a cryoDRGN poses.pkl; returns (source, true rotations, true shifts Å)."""
    star = ParticleSource(path=one_state_igg / "particles.star").load()
    rot, shifts = np.asarray(star.rotations), np.asarray(star.shifts_A)
    g = np.random.default_rng(0)
    axes = g.normal(size=(len(rot), 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    start = axis_angle_to_matrix(axes * np.radians(OFF_DEG)) @ rot
    apix, box = float(star.apix[0]) if np.ndim(star.apix) else float(star.apix), 32
    pkl = write_poses_pkl(tmp_path_factory.mktemp("poses") / "poses.pkl", start,
                          shifts + g.uniform(-1, 1, size=shifts.shape) * apix, box, apix)  # fmt: skip
    return ParticleSource(path=one_state_igg / "particles.star", poses=pkl), rot, shifts


def _refine(source, out, local_step_deg: float | None):
    cfg = DrgnaiConfig(
        data=source,
        out=str(out),
        poses_mode="refine",
        zdim=0,
        epochs_sgd=14,  # 10 fit the field to the given poses (3 000 images), then 4 with local searches
        field={"hidden": 64, "features": 64},
        search={"local_step_deg": local_step_deg},
        optim={"batch_size": 16},
    )
    train_drgnai(cfg)
    return load_run(out).poses()


def test_local_search_refines_given_poses(perturbed, tmp_path):
    source, rot_true, _ = perturbed
    rot_local, _ = _refine(source, tmp_path / "local", None)  # the default in refine mode
    rot_grad, _ = _refine(source, tmp_path / "gradient", 0.0)  # --local-step 0
    # the frame of given poses is the user's, but field and poses may turn together: errors
    # after the best single rotation (and that rotation, which must stay small)
    err_local, turn_local = _aligned_errors(rot_local, rot_true)
    err_grad, _ = _aligned_errors(rot_grad, rot_true)
    assert np.median(err_local) < 3.0 and np.percentile(err_local, 90) < 5.0, np.percentile(err_local, [50, 90])
    assert np.median(err_local) < 0.5 * np.median(err_grad), (np.median(err_local), np.median(err_grad))
    assert turn_local < 5.0, turn_local


def _aligned_errors(rot: np.ndarray, rot_true: np.ndarray) -> tuple[np.ndarray, float]:
    """Errors (deg) after the rotation ``Q`` that best maps ``rot @ Q`` onto ``rot_true`` (chordal
    least squares), and the angle of ``Q``."""
    u, _, vt = np.linalg.svd((np.swapaxes(rot, 1, 2) @ rot_true).sum(0))
    q = u @ vt
    return rotation_angle_deg(rot @ q, rot_true), float(rotation_angle_deg(q[None], np.eye(3)[None])[0])


def test_hetacumn_refuses_the_local_search_it_does_not_run(tmp_path):
    from pydantic import ValidationError

    from cryohet.methods.hetacumn import HetacumnConfig

    source = ParticleSource(path=tmp_path / "particles.star")
    with pytest.raises(ValidationError, match="HetACUMN does not use it"):
        HetacumnConfig(data=source, out=str(tmp_path / "r"), warm_start={"search": {"local_step_deg": 2.0}})
    HetacumnConfig(data=source, out=str(tmp_path / "r"), warm_start={"search": {"local_step_deg": 0}})
