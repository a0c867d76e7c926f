"""The contrast sign: measured from the images for every command, the file's own word
(cryoSPARC ``blob/sign``) when they are undecided, the map's sign as the last check of a
backprojection, and cryoDRGN's flag with cryoDRGN's meaning."""

from __future__ import annotations

import logging
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile
import torch

from cryohet.cli.app import main
from cryohet.data import contrast
from cryohet.data.contrast import ContrastCheck, decide_invert, file_contrast_hint
from cryohet.data.dataset import ParticleDataset
from cryohet.errors import InputError
from cryohet.io.source import ParticleSource
from cryohet.reconstruction.half_maps import HalfMapResult
from cryohet.workflows.backproject import check_map_sign

PINNED = Path(__file__).resolve().parent / "data" / "pinned" / "data"


@pytest.fixture(scope="module")
def dark_star(tmp_path_factory) -> Path:
    """The pinned bright-protein set with every image multiplied by -1 (protein dark)."""
    meta = ParticleSource(path=PINNED / "particles.star").load()
    stack = ParticleDataset(meta).read_raw(np.arange(len(meta)))
    folder = tmp_path_factory.mktemp("dark")
    with mrcfile.new(folder / "particles.mrcs") as m:
        m.set_data(-np.asarray(stack, dtype=np.float32))
        m.voxel_size = 14.0
    starfile.write(starfile.read(PINNED / "particles.star", always_dict=True), folder / "particles.star")
    return folder / "particles.star"


def _map(path: Path) -> np.ndarray:
    return mrcfile.read(path).astype(np.float64)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_backproject_decides_the_sign_and_cryodrgn_flag_means_what_it_means_there(dark_star, tmp_path, capsys, caplog):
    gt = _map(PINNED / "gt" / "state_000.mrc")
    assert main(["backproject", str(PINNED / "particles.star"), "-o", str(tmp_path / "bright.mrc")]) == 0
    assert main(["backproject", str(dark_star), "-o", str(tmp_path / "auto.mrc")]) == 0
    assert "Å/px, inverted;" in capsys.readouterr().out
    # cryoDRGN's --uninvert-data keeps dark protein as it is under cryoDRGN's (negative) CTF:
    # under RELION's CTF that is --invert, and gives the same map
    assert main(["backproject", str(dark_star), "-o", str(tmp_path / "alias.mrc"), "--uninvert-data"]) == 0
    bright, auto, alias = (_map(tmp_path / f"{n}.mrc") for n in ("bright", "auto", "alias"))
    assert _corr(bright, gt) > 0.5
    assert _corr(auto, bright) > 0.999 and _corr(alias, bright) > 0.999
    # the user's explicit (wrong) choice is kept, with one warning line
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cryohet"):
        assert main(["backproject", str(dark_star), "-o", str(tmp_path / "forced.mrc"), "--no-invert"]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "--no-invert" in warned[0] and "negative" in warned[0], warned
    assert _corr(_map(tmp_path / "forced.mrc"), gt) < -0.5
    # contradictory flags are one error line
    assert main(["backproject", str(dark_star), "-o", str(tmp_path / "x.mrc"), "--uninvert-data", "--no-invert"]) == 1


def _half_maps(vol: torch.Tensor) -> HalfMapResult:
    return HalfMapResult(vol.clone(), vol.clone(), vol.clone(), torch.ones(4), torch.ones(4))


def test_a_negative_map_decides_an_undecided_sign(caplog):
    gt = torch.from_numpy(_map(PINNED / "gt" / "state_000.mrc")).float()
    result = _half_maps(-gt)
    assert check_map_sign(result, invert=False, decided=False) is True
    assert torch.allclose(result.full, gt) and torch.allclose(result.half2, gt)
    # decided (by the user or the images): kept, one warning
    result = _half_maps(-gt)
    with caplog.at_level(logging.WARNING, logger="cryohet"):
        assert check_map_sign(result, invert=False, decided=True) is False
    assert torch.allclose(result.full, -gt) and "mostly negative" in caplog.text
    # a positive map changes nothing
    result = _half_maps(gt)
    assert check_map_sign(result, invert=True, decided=False) is True and torch.allclose(result.full, gt)


def test_blob_sign_agrees_with_the_images_of_a_real_cryosparc_export(shared_fixtures):
    meta = ParticleSource(path=shared_fixtures / "empiar_10076_7.cs").load()
    assert file_contrast_hint(meta) == -1
    measured = contrast.contrast_sign(ParticleDataset(meta, normalize=True))
    assert measured.sign == -1 and measured.z < -5  # EMPIAR-10076 particles: protein dark
    assert decide_invert(meta, None)[0] is True
    star = ParticleSource(path=shared_fixtures / "empiar_10076_7.star").load()
    assert file_contrast_hint(star) == 0  # a star file says nothing


def test_blob_sign_decides_when_the_images_cannot(monkeypatch):
    meta = ParticleSource(path=PINNED / "particles.star").load()
    monkeypatch.setattr(contrast, "contrast_sign", lambda *a, **k: ContrastCheck(0, 0.4, 10))
    assert decide_invert(meta, None)[0] is False  # nothing known: protein bright assumed
    meta.extras["blob_sign"] = -np.ones(len(meta), np.float32)
    assert decide_invert(meta, None)[0] is True
    meta.extras["blob_sign"][3] = 1.0
    with pytest.raises(InputError, match="blob/sign"):
        decide_invert(meta, None)
