"""Simulator: presets, files written, noise level, bad input; backprojection recovers the truth."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
import torch

from cryohet.cli.app import main
from cryohet.errors import CryohetError, InputError
from cryohet.io.star import read_star
from cryohet.metrics.fsc import fsc_cryobench
from cryohet.simulate.config import SimulationConfig
from cryohet.simulate.density import atoms_to_volume
from cryohet.simulate.presets import build_ensemble, bundled_model_path
from cryohet.simulate.simulator import simulate_dataset, state_counts


def test_atoms_to_volume_is_the_band_limited_mixture(rng):
    """Against the directly summed Fourier series of the same Gaussian atoms."""
    from cryohet.imaging.fft import ifft3_centered

    d, apix, sigma = 20, 2.5, 1.2
    coords = rng.uniform(-15, 15, (12, 3))
    weights = rng.uniform(1, 8, 12)
    vol = atoms_to_volume(coords, weights, d, apix, sigma)
    f = (np.arange(d) - d // 2) / (d * apix)
    kz, ky, kx = np.meshgrid(f, f, f, indexing="ij")
    F = np.zeros((d, d, d), complex)
    for c, w in zip(coords, weights):
        F += (
            w
            * np.exp(-2 * np.pi**2 * sigma**2 * (kx**2 + ky**2 + kz**2))
            * np.exp(-2j * np.pi * (kx * c[0] + ky * c[1] + kz * c[2]))
        )
    ref = ifft3_centered(torch.as_tensor(F)).real.numpy()
    assert np.abs(vol - ref).max() < 1e-4 * np.abs(ref).max()


def test_state_counts_are_exact():
    counts = state_counts(np.array([0.5, 0.3, 0.2]), 11)
    assert counts.sum() == 11 and list(counts) == [6, 3, 2]


@pytest.mark.parametrize("preset,n", [("igg-1d", 6), ("igg-rl", 4), ("assembly", 10)])
def test_presets_build_distinct_states(preset, n):
    ens = build_ensemble(preset, n, np.random.default_rng(0))
    assert ens.n_states == n
    assert np.isclose(ens.populations.sum(), 1.0)
    s0, s1 = ens.states[0], ens.states[-1]
    differs = not np.array_equal(s0.present, s1.present) or not np.allclose(s0.coords_A, s1.coords_A)
    assert differs
    if preset == "igg-1d":  # the static part does not move
        static = ~ens.moving_atoms
        assert np.allclose(s0.coords_A[static], s1.coords_A[static])
    if preset == "assembly":  # unequal populations, at least 8 states
        assert ens.populations.max() / ens.populations.min() > 5


def test_the_assembly_dimer_two_fold_maps_the_complex_onto_itself():
    """The assembly preset records the cytochrome c oxidase dimer's two-fold: a 180 deg
    rotation S with S X + t = X (as a set) for the complete dimer, so that images at poses
    A and A S^T differ by a shift only (RELION A acts on the model frame)."""
    from scipy.spatial import cKDTree

    from cryohet.geometry.rotations import rotation_angle_deg

    ens = build_ensemble("assembly", 10, np.random.default_rng(0))
    (S,) = ens.pseudo_symmetry
    assert rotation_angle_deg(S[None], np.eye(3)[None])[0] == pytest.approx(180.0, abs=1.0)
    dimer = next(s for s in ens.states if s.present.all())
    ca = dimer.coords_A[ens.model.atom_names == "CA"]
    turned = ca @ S.T
    t = ca.mean(0) - turned.mean(0)
    dist, _ = cKDTree(ca).query(turned + t)
    assert np.median(dist) < 0.5 and np.percentile(dist, 95) < 1.5  # CA atoms onto CA atoms
    far, _ = cKDTree(ca).query(ca @ np.diag([1.0, -1.0, -1.0]).T + t)  # not any 180 deg turn
    assert np.median(far) > 3.0


def test_small_simulation_writes_a_consistent_dataset(tmp_path):
    out = tmp_path / "sim"
    cfg = SimulationConfig(preset="assembly", out=out, n_images=120, box=32, apix=9.0, snr=0.1, n_states=4, seed=3)
    simulate_dataset(cfg)
    meta = json.loads((out / "meta.json").read_text())
    assert np.asarray(meta["pseudo_symmetry"]).shape == (1, 3, 3)  # the dimer's two-fold
    labels = np.load(out / "gt" / "labels.npy")
    assert labels.shape == (120,) and set(labels) <= set(range(4))
    assert np.bincount(labels, minlength=4).tolist() == meta["counts"]
    stack = mrcfile.read(out / "particles.mrcs")
    assert stack.shape == (120, 32, 32)
    with mrcfile.open(out / "gt" / "state_000.mrc") as m:
        assert m.data.shape == (32, 32, 32) and np.isclose(m.voxel_size.x, 9.0)
    mask = mrcfile.read(out / "gt" / "mask.mrc")
    assert 0 <= mask.min() and mask.max() == pytest.approx(1.0)
    parts = read_star(out / "particles.star")
    assert len(parts) == 120 and parts.has_poses and np.allclose(parts.apix, 9.0)
    # Noise: the stack's variance is the clean variance plus sigma^2 = clean / SNR.
    total_var = stack.var()
    assert total_var == pytest.approx(meta["noise_sigma"] ** 2 * (1 + cfg.snr), rel=0.15)


def test_simulate_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown preset"):
        SimulationConfig(preset="nope", out=tmp_path / "a")
    with pytest.raises(ValueError, match="SNR"):
        SimulationConfig(preset="igg-1d", out=tmp_path / "a", snr=0)
    small = SimulationConfig(preset="igg-1d", out=tmp_path / "b", box=32, apix=3.0, n_images=10, n_states=2)
    with pytest.raises(InputError, match=r"too small .* at least \d+ px"):
        simulate_dataset(small)
    empty = tmp_path / "empty.pdb"
    empty.write_text("REMARK nothing here\nEND\n")
    with pytest.raises(CryohetError, match="no atoms"):
        simulate_dataset(SimulationConfig(preset="custom", model=empty, apix=2.0, out=tmp_path / "c", n_images=5))


def test_simulate_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["simulate", "igg-1d", "--out", str(tmp_path / "x"), "--snr", "-1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "SNR" in err[0]


@pytest.mark.slow
def test_backproject_recovers_single_state_ground_truth(tmp_path):
    """End to end: simulate one state, reconstruct with the CLI, compare with the truth."""
    out = tmp_path / "one"
    cfg = SimulationConfig(
        preset="custom",
        model=bundled_model_path("1hzh.pdb.gz"),
        apix=7.0,
        box=40,
        n_images=1500,
        snr=0.1,
        out=out,
        seed=1,
    )
    simulate_dataset(cfg)
    assert main(["backproject", str(out / "particles.star"), "--out", str(tmp_path / "map.mrc")]) == 0
    rec = mrcfile.read(tmp_path / "map.mrc")
    gt = mrcfile.read(out / "gt" / "state_000.mrc")
    auc = fsc_cryobench(rec, gt, mask=mrcfile.read(out / "gt" / "mask.mrc")).auc
    ceiling = (40 // 2 - 1) / 40
    assert auc > 0.85 * ceiling, auc
    assert (tmp_path / "map_half1.mrc").exists() and (tmp_path / "map_fsc.json").exists()


def test_simulate_refuses_an_unknown_device(tmp_path):
    with pytest.raises(ValueError, match="device must be"):
        SimulationConfig(preset="igg-1d", out=tmp_path / "a", device="gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_simulation_matches_cpu(tmp_path):
    """Rendering on the GPU changes the images only by float rounding (same seed, same noise)."""
    kw = dict(preset="assembly", n_images=64, box=32, apix=9.0, snr=0.1, n_states=3, seed=2)
    simulate_dataset(SimulationConfig(out=tmp_path / "cpu", **kw))
    simulate_dataset(SimulationConfig(out=tmp_path / "gpu", device="cuda", **kw))
    a = mrcfile.read(tmp_path / "cpu" / "particles.mrcs")
    b = mrcfile.read(tmp_path / "gpu" / "particles.mrcs")
    assert np.abs(a - b).max() < 1e-3 * np.abs(a).max()
