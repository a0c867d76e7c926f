"""Baselines (homogeneous, oracle, classify3d, pca), ``evaluate`` and ``volumes`` on one
small simulated compositional dataset (2 assembly states, 300 images, D=32, SNR 0.5),
simulated once for the module."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch
import yaml

from cryohet.cli.app import main
from cryohet.evaluation.evaluate import evaluate_run, write_evaluation
from cryohet.io.source import ParticleSource
from cryohet.methods.base import TrainedModel, load_run, register_method
from cryohet.methods.baselines import (
    Classify3DConfig,
    HomogeneousConfig,
    OracleConfig,
    PCAConfig,
    train_classify3d,
    train_homogeneous,
    train_oracle,
    train_pca,
)
from cryohet.training.rundir import RunDir

N_IMAGES, BOX, APIX = 300, 32, 9.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from cryohet.simulate.config import SimulationConfig
    from cryohet.simulate.simulator import simulate_dataset

    out = tmp_path_factory.mktemp("baselines") / "data"
    cfg = SimulationConfig(
        preset="assembly", out=out, n_images=N_IMAGES, box=BOX, apix=APIX, snr=0.5, n_states=2, seed=0
    )
    return simulate_dataset(cfg)


@pytest.fixture(scope="module")
def runs(dataset: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    src = ParticleSource(path=dataset / "particles.star")
    return {
        "homogeneous": train_homogeneous(HomogeneousConfig(data=src, out=str(root / "hom"))),
        "oracle": train_oracle(OracleConfig(data=src, out=str(root / "oracle"), labels=dataset / "gt" / "labels.npy")),
        "classify3d": train_classify3d(
            Classify3DConfig(data=src, out=str(root / "c3d"), classes=2, iterations=2, init_iterations=2)
        ),
        "pca": train_pca(PCAConfig(data=src, out=str(root / "pca"), components=2, iterations=3)),
    }


@pytest.fixture(scope="module")
def evals(runs: dict[str, Path], dataset: Path) -> dict[str, dict]:
    return {m: evaluate_run(r, dataset) for m, r in runs.items()}


ZDIM = {"homogeneous": 1, "oracle": 2, "classify3d": 2, "pca": 2}


# ----------------------------------------------------------------------------- run directories


@pytest.mark.parametrize("method", list(ZDIM))
def test_run_directory_contract(runs, method):
    run = runs[method]
    raw = yaml.safe_load((run / "config.yaml").read_text())
    assert raw["method"] == method and raw["method_version"] == 1
    assert raw["resolved"]["box"] == BOX and raw["resolved"]["apix"] == pytest.approx(APIX)
    state = torch.load(run / "model.pt", weights_only=True)
    assert isinstance(state, dict) and state
    model = load_run(run)
    assert model.method == method
    assert model.latents.shape == (N_IMAGES, ZDIM[method])
    rot, shifts = model.poses()
    assert rot.shape == (N_IMAGES, 3, 3) and shifts.shape == (N_IMAGES, 2)
    vol = model.volume(model.latents[0])
    assert vol.shape == (BOX,) * 3 and np.isfinite(vol).all() and vol.std() > 0
    small = model.volume(model.latents[0], box=16, apix=2 * APIX)  # same physical box, coarser
    assert small.shape == (16,) * 3
    # resampling keeps the map: its low-pass equals the Fourier-cropped native map
    from cryohet.representations.voxel import resample_volume

    ref = resample_volume(torch.from_numpy(vol), APIX, 16, 2 * APIX).numpy()
    np.testing.assert_allclose(small, ref, atol=1e-3 * np.abs(ref).max())


def test_homogeneous_outputs(runs):
    run = runs["homogeneous"]
    for name in ("consensus.mrc", "half1.mrc", "half2.mrc", "extras/fsc.npz"):
        assert (run / name).exists(), name
    model = load_run(run)
    consensus = mrcfile.read(run / "consensus.mrc")
    np.testing.assert_allclose(model.volume(np.array([5.0])), consensus, rtol=1e-6)
    fsc = RunDir(run).load_extra("fsc")["fsc"]
    assert fsc[1] > 0.9  # the half maps agree at low resolution
    with mrcfile.open(run / "consensus.mrc") as m:
        assert float(m.voxel_size.x) == pytest.approx(APIX)


def test_pca_volume_is_mean_plus_components(runs):
    run = runs["pca"]
    model = load_run(run)
    mean = mrcfile.read(run / "mean.mrc")
    comp0 = mrcfile.read(run / "component_000.mrc")
    np.testing.assert_allclose(model.volume(np.zeros(2)), mean, atol=1e-4 * np.abs(mean).max())
    np.testing.assert_allclose(model.volume(np.array([1.0, 0.0])) - mean, comp0, atol=1e-4 * np.abs(mean).max())
    c = model.components.reshape(2, -1).astype(np.float64)
    assert abs(c[0] @ c[1]) < 1e-3 * np.linalg.norm(c[0]) * np.linalg.norm(c[1])  # orthogonal
    assert np.linalg.norm(c[0]) >= np.linalg.norm(c[1])  # sorted


# ----------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("method", list(ZDIM))
def test_evaluate_reports_per_state(evals, method):
    r = evals[method]
    assert r["method"] == method and r["n_states"] == 2 and r["box"] == BOX
    assert r["auc_ceiling"] == pytest.approx((BOX / 2 - 1) / BOX)
    for variant in ("masked", "unmasked"):
        block = r["per_conformation"][variant]
        assert set(block["per_state"]) == {"0", "1"}
        for auc in block["per_state"].values():
            assert 0.2 < auc <= r["auc_ceiling"] + 1e-9
        assert block["auc_median"] == pytest.approx(np.median(list(block["per_state"].values())))
    # fixed-pose methods keep the given poses: zero error (float32 storage)
    assert r["poses"]["rotation_deg_mean"] < 0.05 and r["poses"]["rmse_px"] < 1e-3
    assert set(r["poses"]["per_state_rotation_deg_median"]) == {"0", "1"}
    assert max(r["poses"]["per_state_aligned_rotation_deg_median"].values()) < 0.05
    # the assembly dimer's two-fold (gt/meta.json): none of the true poses is at its mate
    assert r["poses"]["rotation_deg_modulo_symmetry_median"] < 0.05 and r["poses"]["symmetry_mate_fraction"] == 0.0
    assert max(r["poses"]["per_state_rotation_deg_modulo_symmetry_median"].values()) < 0.05
    assert -0.1 < r["clustering"]["ari"] <= 1.0
    assert r["parts"] is None  # voxel baselines have no part-labelled Gaussians


def test_evaluate_is_deterministic(runs, dataset, evals, tmp_path):
    again = evaluate_run(runs["pca"], dataset)
    first = dict(evals["pca"])
    first.pop("time"), again.pop("time")
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    written = write_evaluation(evals["pca"], tmp_path / "eval")
    assert [p.name for p in written[:3]] == ["metrics.json", "fsc_curves.png", "auc_per_state.png"]
    assert [p.name for p in written[3:]] == ["fsc_state_000.png", "fsc_state_001.png"]  # one per state
    assert all(p.stat().st_size > 0 for p in written)
    assert (
        json.loads(written[0].read_text())["per_conformation"]["masked"]["auc_mean"]
        == evals["pca"]["per_conformation"]["masked"]["auc_mean"]
    )


@pytest.mark.parametrize("method", ["classify3d", "homogeneous"])
def test_cli_evaluate_twice_gives_identical_numbers(runs, dataset, tmp_path, capsys, method):
    texts = []
    for name in ("a", "b"):
        assert main(["evaluate", str(runs[method]), "--gt", str(dataset), "--out", str(tmp_path / name)]) == 0
        printed = capsys.readouterr().out
        assert "ceiling" in printed and "state 0" in printed and "state 1" in printed
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        metrics.pop("time")
        texts.append(json.dumps(metrics, sort_keys=True))
    assert texts[0] == texts[1]


def test_oracle_beats_homogeneous_per_state(evals):
    for variant in ("masked", "unmasked"):
        orc = evals["oracle"]["per_conformation"][variant]["per_state"]
        hom = evals["homogeneous"]["per_conformation"][variant]["per_state"]
        for s in orc:
            assert orc[s] > hom[s] + 0.005, (variant, s, orc[s], hom[s])
    assert evals["oracle"]["clustering"]["ari"] == pytest.approx(1.0)
    assert evals["homogeneous"]["clustering"]["ari"] == pytest.approx(0.0, abs=1e-9)


def test_classify3d_and_pca_separate_the_states(evals):
    assert evals["classify3d"]["clustering"]["ari"] > 0.5
    assert evals["pca"]["clustering"]["ari"] > 0.5


# ----------------------------------------------------------------------------- volumes


def test_volumes_rows_in_order_with_voxel_size(runs, tmp_path, capsys):
    z = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # oracle: state 1, 0, 1
    zfile = tmp_path / "z.npy"
    np.save(zfile, z)
    out = tmp_path / "vols"
    assert main(["volumes", str(runs["oracle"]), "--z", str(zfile), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["vol_000.mrc", "vol_001.mrc", "vol_002.mrc"]
    for i, state in enumerate((1, 0, 1)):
        with mrcfile.open(out / f"vol_{i:03d}.mrc") as m:
            assert float(m.voxel_size.x) == pytest.approx(APIX)
            np.testing.assert_allclose(m.data, mrcfile.read(runs["oracle"] / f"state_{state:03d}.mrc"), rtol=1e-6)
    # a text file of one row, resampled to another box and pixel size
    txt = tmp_path / "z.txt"
    txt.write_text("1 0\n")
    out2 = tmp_path / "vols2"
    assert (
        main(["volumes", str(runs["oracle"]), "--z", str(txt), "--out", str(out2), "--box", "16", "--apix", "18"]) == 0
    )
    with mrcfile.open(out2 / "vol_000.mrc") as m:
        assert m.data.shape == (16, 16, 16) and float(m.voxel_size.x) == pytest.approx(18.0)
    # cryoDRGN's eval_vol habit: the latent's values on the command line (negative ones too)
    out3 = tmp_path / "vols3"
    assert main(["volumes", str(runs["oracle"]), "-z", "-0.0", "1", "-o", str(out3)]) == 0
    np.testing.assert_allclose(mrcfile.read(out3 / "vol_000.mrc"), mrcfile.read(runs["oracle"] / "state_001.mrc"))
    assert main(["volumes", str(runs["oracle"]), "--zfile", str(zfile), "-o", str(tmp_path / "vols4")]) == 0
    assert len(list((tmp_path / "vols4").iterdir())) == 3
    assert main(["volumes", str(runs["oracle"]), "-z", "1", "zero", "-o", str(tmp_path / "vols5")]) == 1


def test_volumes_refuses_to_overwrite_its_input(runs, tmp_path, capsys):
    out = tmp_path / "vols"
    out.mkdir()
    zfile = out / "vol_000.mrc"  # a text latent file named like the first output
    zfile.write_text("1 0\n")
    assert main(["volumes", str(runs["oracle"]), "--z", str(zfile), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "overwrite" in err and len(err.strip().splitlines()) == 1
    assert zfile.read_text() == "1 0\n"


@register_method
class _TwoPartModel(TrainedModel):
    """A part-aware stand-in: part a = z[0] everywhere, part b = 2 z[0]."""

    method = "test-two-parts"

    @classmethod
    def load(cls, run_dir, device="cpu"):
        return cls(RunDir(run_dir), 8, 2.5)

    def volume(self, z, box=None, apix=None):
        return np.full((box or self.box,) * 3, 3.0 * float(z[0]), np.float32)

    def part_volumes(self, z, box=None, apix=None):
        b = box or self.box
        return {"a": np.full((b,) * 3, float(z[0]), np.float32), "b": np.full((b,) * 3, 2.0 * float(z[0]), np.float32)}


def test_volumes_parts_and_chimerax_script(tmp_path, runs, capsys):
    run = tmp_path / "parts_run"
    run.mkdir()
    (run / "config.yaml").write_text("method: test-two-parts\n")
    np.save(run / "latents.npy", np.ones((3, 1), np.float32))
    zfile = tmp_path / "z.npy"
    np.save(zfile, np.array([1.0, 2.0], np.float32)[:, None])
    out = tmp_path / "vols"
    assert main(["volumes", str(run), "--z", str(zfile), "--out", str(out), "--parts"]) == 0
    assert mrcfile.read(out / "vol_001_part_01.mrc")[0, 0, 0] == pytest.approx(4.0)
    script = (out / "parts.cxc").read_text().splitlines()
    opened = [ln.split()[1] for ln in script if ln.startswith("open ")]
    assert opened == ["vol_000_part_00.mrc", "vol_000_part_01.mrc", "vol_001_part_00.mrc", "vol_001_part_01.mrc"]
    colours = [ln.split()[3] for ln in script if ln.startswith("volume #")]
    assert colours[0] == colours[2] != colours[1] == colours[3]  # one colour per part
    # methods without parts: a one-line error
    z2 = tmp_path / "z2.npy"
    np.save(z2, np.array([0.0, 1.0], np.float32))
    assert main(["volumes", str(runs["pca"]), "--z", str(z2), "--out", str(tmp_path / "x"), "--parts"]) == 1
    err = capsys.readouterr().err
    assert "no parts" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- CLI errors


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_cli_evaluate_and_train_bad_inputs(runs, dataset, tmp_path, capsys):
    assert main(["evaluate", str(runs["homogeneous"]), "--gt", str(tmp_path / "nowhere")]) == 1
    assert "not found" in _one_line_error(capsys)
    # an incomplete run directory
    broken = tmp_path / "broken"
    shutil.copytree(runs["oracle"], broken)
    (broken / "model.pt").unlink()
    assert main(["evaluate", str(broken), "--gt", str(dataset)]) == 1
    assert "model.pt" in _one_line_error(capsys)
    # a ground truth at another physical box size
    gt = tmp_path / "gt"
    shutil.copytree(dataset / "gt", gt)
    for f in gt.glob("*.mrc"):
        with mrcfile.open(f, "r+") as m:
            m.voxel_size = 2 * APIX
    assert main(["evaluate", str(runs["oracle"]), "--gt", str(gt)]) == 1
    assert "box mismatch" in _one_line_error(capsys)
    # missing state map
    (gt / "state_001.mrc").unlink()
    assert main(["evaluate", str(runs["oracle"]), "--gt", str(gt)]) == 1
    assert "state_001.mrc" in _one_line_error(capsys)
    # training into a non-empty run directory, and labels of the wrong length
    star = str(dataset / "particles.star")
    assert main(["train", "homogeneous", star, "--out", str(runs["homogeneous"])]) == 1
    assert "not empty" in _one_line_error(capsys)
    bad = tmp_path / "labels.npy"
    np.save(bad, np.zeros(7, dtype=np.int64))
    assert main(["train", "oracle", star, "--out", str(tmp_path / "o"), "--labels", str(bad)]) == 1
    assert "7 labels" in _one_line_error(capsys)


def test_cli_evaluate_writes_report(runs, dataset, tmp_path, capsys):
    out = tmp_path / "ev"
    assert (
        main(["evaluate", str(runs["classify3d"]), "--gt", str(dataset), "--out", str(out), "--per-image", "20"]) == 0
    )
    printed = capsys.readouterr().out
    assert "ceiling" in printed and "ARI" in printed
    assert "worst state's median modulo the pseudo-symmetry" in printed  # the assembly dimer's two-fold
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["per_image"]["n_images"] >= 20 and set(metrics["per_image"]["per_state"]) == {"0", "1"}
    assert (out / "fsc_curves.png").exists() and (out / "auc_per_state.png").exists()


def test_fourier_cropped_run_is_scored_at_the_ground_truth_box(dataset, evals, tmp_path):
    src = ParticleSource(path=dataset / "particles.star")
    run = train_homogeneous(HomogeneousConfig(data=src, out=str(tmp_path / "hom16"), box=16))
    assert load_run(run).box == 16 and load_run(run).apix == pytest.approx(2 * APIX)
    r = evaluate_run(run, dataset)
    assert r["box"] == BOX  # decoded at the ground truth's box and pixel size
    full = evals["homogeneous"]["per_conformation"]["masked"]["auc_mean"]
    assert 0.15 < r["per_conformation"]["masked"]["auc_mean"] < full - 0.05  # nothing beyond the 16-px Nyquist
