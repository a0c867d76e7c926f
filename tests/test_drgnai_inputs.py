"""DRGN-AI without training far: the data's contrast sign, the search scoring with the
training loss, and one-line refusals of input it cannot use."""

from __future__ import annotations

import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile
import torch
from drgnai_helpers import AtLatent, random_rot, small_config

from cryohet.cli.app import main
from cryohet.data.contrast import contrast_sign
from cryohet.data.dataset import ParticleDataset
from cryohet.io.source import ParticleSource
from cryohet.methods.drgnai.config import DrgnaiConfig
from cryohet.methods.drgnai.trainer import DrgnaiTrainer
from cryohet.pose.search import SearchSchedule, search_poses

PINNED = Path(__file__).parent / "data" / "pinned" / "data"


def _last_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("error:"), err
    return last


def _config(tmp_path, **kw) -> DrgnaiConfig:
    return small_config(tmp_path, **kw)


def test_contrast_is_detected_and_inverted_data_is_caught():
    meta = ParticleSource(path=PINNED / "particles.star").load()
    bright = contrast_sign(ParticleDataset(meta, normalize=True))
    dark = contrast_sign(ParticleDataset(meta, normalize=True, invert=True))
    assert bright.sign == 1 and not bright.needs_invert and bright.z > 5
    assert dark.sign == -1 and dark.needs_invert and dark.z == pytest.approx(-bright.z)
    # pure noise is undecided, not a guess
    noise = contrast_sign(_NoiseDataset(24, 400))
    assert noise.sign == 0


class _NoiseDataset:
    """Stands in for a ParticleDataset of white noise (what contrast_sign reads)."""

    def __init__(self, box: int, n: int) -> None:
        self.box, self._n = box, n
        self._imgs = torch.from_numpy(np.random.default_rng(3).standard_normal((n, box, box)).astype(np.float32))

    def __len__(self) -> int:
        return self._n

    def get_batch(self, rows):
        class B:
            images = self._imgs[np.asarray(rows)]

        return B()


def test_the_trainer_inverts_dark_data_by_itself(tmp_path):
    meta = ParticleSource(path=PINNED / "particles.star").load()
    raw = ParticleDataset(meta, normalize=False)
    stack = raw.read_raw(np.arange(len(raw)))
    dark = tmp_path / "dark"
    dark.mkdir()
    star = starfile.read(PINNED / "particles.star", always_dict=True)
    with mrcfile.new(dark / "particles.mrcs") as m:
        m.set_data(-np.asarray(stack, dtype=np.float32))
        m.voxel_size = 14.0
    starfile.write(star, dark / "particles.star")
    t_bright = DrgnaiTrainer(_config(tmp_path))
    t_dark = DrgnaiTrainer(_config(tmp_path, data=ParticleSource(path=dark / "particles.star")))
    assert t_bright.invert is False and t_dark.invert is True
    assert t_dark.contrast.z < -5 < 5 < t_bright.contrast.z
    # after the decision both see the same images
    b1 = t_bright.dataset.get_batch([0, 5])
    b2 = t_dark.dataset.get_batch([0, 5])
    assert torch.allclose(b1.images, b2.images, atol=1e-4)
    # a user's explicit choice is kept, unchecked
    assert DrgnaiTrainer(_config(tmp_path, invert=True)).invert is True


def test_search_scores_are_the_training_loss_at_the_found_pose(tmp_path):
    """The search with the field itself as the slice source (no cached grid) returns, for
    every image, the score that the training step's data term gives at the pose it found."""
    t = DrgnaiTrainer(_config(tmp_path, zdim=2))
    for step in range(3):
        t.train_step(t.dataset.get_batch(np.arange(32 * step, 32 * step + 32)), 8.0, "pretrain", seed=step)
    batch = t.dataset.get_batch(np.arange(10))
    radius = 8.0
    index, _, obs_full, ctf_full = t._observe(batch, t.box / 2)  # the search restricts the full band
    _, sub, observed, ctf = t._observe(batch, radius)
    z = t.latents.z[index]
    schedule = SearchSchedule(
        base_level=0, rounds=1, keep=3, neighbours=4, shift_extent_px=2.0, shift_n=3,
        radius_start_px=6.0, radius_end_px=radius,
    )  # fmt: skip
    groups = torch.arange(len(index))
    # one source per image: the field at that image's own latent
    sources = [AtLatent(t.field, z[i]) for i in range(len(index))]
    with torch.no_grad():
        res = search_poses(obs_full, ctf_full, groups, sources, t.likelihood, schedule)
        loss = t.data_term(sub, observed, ctf, res.rotations, res.shifts_A, z)
    assert torch.allclose(res.scores.double(), loss.double(), rtol=2e-4, atol=1e-3)
    # and the search found better poses than random ones
    rand = torch.as_tensor(random_rot(len(index)), dtype=torch.float32)
    with torch.no_grad():
        worse = t.data_term(sub, observed, ctf, rand, torch.zeros(len(index), 2), z)
    assert bool((loss <= worse + 1e-3).all())


def test_stack_without_ctf_is_refused(tmp_path, capsys):
    shutil.copy(PINNED / "particles.mrcs", tmp_path / "p.mrcs")
    code = main(["train", "drgnai", str(tmp_path / "p.mrcs"), "-o", str(tmp_path / "run"), "--apix", "14"])
    assert code != 0 and "CTF" in _last_error_line(capsys)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_refine_without_poses_is_refused(tmp_path, capsys):
    star = starfile.read(PINNED / "particles.star", always_dict=True)
    parts = star["particles"]
    star["particles"] = parts.drop(columns=[c for c in parts.columns if c.startswith(("rlnAngle", "rlnOrigin"))])
    starfile.write(star, tmp_path / "noposes.star")
    shutil.copy(PINNED / "particles.mrcs", tmp_path / "particles.mrcs")
    code = main(
        ["train", "drgnai", str(tmp_path / "noposes.star"), "-o", str(tmp_path / "r"), "--poses-mode", "refine"]
    )
    assert code != 0 and "needs input poses" in _last_error_line(capsys)
    # without poses is normal input for abinit: the trainer is built
    t = DrgnaiTrainer(_config(tmp_path, data=ParticleSource(path=tmp_path / "noposes.star")))
    assert t.n == 160 and t.poses_given is False


def test_box_too_small_is_refused(tmp_path, capsys):
    code = main(["train", "drgnai", str(PINNED / "particles.star"), "-o", str(tmp_path / "a"), "-D", "12"])
    assert code != 0 and "at least 16" in _last_error_line(capsys)
    small = tmp_path / "small"  # the pinned stack cut to 12 px
    small.mkdir()
    with mrcfile.open(PINNED / "particles.mrcs", permissive=True) as m:
        stack = np.asarray(m.data)[:, 6:18, 6:18]
    with mrcfile.new(small / "particles.mrcs") as m:
        m.set_data(stack.astype(np.float32))
        m.voxel_size = 14.0
    star = starfile.read(PINNED / "particles.star", always_dict=True)
    star["optics"]["rlnImageSize"] = 12
    starfile.write(star, small / "particles.star")
    code = main(["train", "drgnai", str(small / "particles.star"), "-o", str(tmp_path / "b")])
    assert code != 0 and "too small" in _last_error_line(capsys)


def test_a_map_of_the_wrong_sign_is_reported_hollow():
    from cryohet.metrics.map_checks import is_hollow

    gt = mrcfile.read(PINNED / "gt" / "state_000.mrc")
    # the complex has a cavity at the centre (negative core once band-limited): not hollow
    assert not is_hollow(gt)
    assert is_hollow(-gt)


def test_runs_before_the_field_average_are_read_as_they_were(tmp_path):
    """Version-1 runs wrote the last step's field: read and resumed without an average."""
    new = _config(tmp_path)
    assert new.method_version == 2 and new.field_average_epochs == 2.0
    raw = new.model_dump(mode="json")
    raw.pop("field_average_epochs")
    assert DrgnaiConfig.model_validate({**raw, "method_version": 1}).field_average_epochs == 0.0
    explicit = {**raw, "method_version": 1, "field_average_epochs": 3.0}
    assert DrgnaiConfig.model_validate(explicit).field_average_epochs == 3.0
    assert DrgnaiConfig.model_validate(raw).field_average_epochs == 2.0
    # latent_init: auto seeded after an ab initio search only; before it existed, never
    assert new.latent_init == "subspace"
    for mode, given, read in (("abinit", "auto", "subspace"), ("fixed", "auto", "random"), ("refine", "auto", "random"),
                              ("abinit", None, "random"), ("fixed", "subspace", "subspace")):  # fmt: skip
        old = {**raw, "method_version": 1, "poses_mode": mode}
        old.pop("latent_init")
        if given is not None:
            old["latent_init"] = given
        assert DrgnaiConfig.model_validate(old).latent_init == read, (mode, given)
