"""Homogeneous reconstruction: fixture recovery, simulated recovery, and convention checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cryohet.geometry.rotations import random_rotations
from cryohet.imaging.noise import add_white_noise
from cryohet.reconstruction import (
    BackprojectionAccumulator,
    HalfSetReconstructor,
    reconstruct,
    shell_fsc,
    snr_from_fsc,
)
from cryohet.representations import GaussianMixture
from cryohet.representations.render import render


def _cc(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.reshape(-1).numpy(), b.reshape(-1).numpy())[0, 1])


# ----------------------------------------------------------------------------- fixture


@pytest.mark.shared
def test_toy_backprojection_recovers_volume(shared_fixtures):
    import starfile

    from cryohet.io.mrc import open_stack, read_volume
    from cryohet.io.safe_pickle import load_pickle

    vol, _ = read_volume(shared_fixtures / "toymodel_small_nocenter.mrc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-standard header, documented in the README
        stack, _ = open_stack(shared_fixtures / "toy_projections.mrcs")
    rot = torch.tensor(np.asarray(load_pickle(shared_fixtures / "toy_angles.pkl")), dtype=torch.float32)
    star = starfile.read(shared_fixtures / "toy_projections.star")
    df = star if not isinstance(star, dict) else next(iter(star.values()))
    cols = [
        "rlnDefocusU",
        "rlnDefocusV",
        "rlnDefocusAngle",
        "rlnVoltage",
        "rlnSphericalAberration",
        "rlnAmplitudeContrast",
        "rlnPhaseShift",
    ]
    ctf = torch.tensor(df[cols].to_numpy(dtype=np.float64), dtype=torch.float32)
    assert ctf.shape == (1000, 7) and torch.allclose(ctf[0], torch.tensor([0, 0, 0, 300, 0.001, 0.1, 90.0]))
    images = torch.tensor(np.array(stack))
    acc = BackprojectionAccumulator(30, 1.0)  # the pkl and volume use 1 Å/px (header says 1/30)
    for i in range(0, 1000, 250):
        acc.add(images[i : i + 250], rot[i : i + 250], None, ctf[i : i + 250])
    rec = acc.finalize()
    truth = torch.tensor(vol)
    assert _cc(rec, truth) >= 0.95  # measured 0.982 (cryoDRGN: 0.955)
    assert float(rec.sum() / truth.sum()) == pytest.approx(1.0, abs=0.05)
    wrong = BackprojectionAccumulator(30, 1.0)
    wrong.add(images[:500], rot[:500].transpose(1, 2), None, ctf[:500])
    assert _cc(wrong.finalize(), truth) < 0.7


# ----------------------------------------------------------------------------- simulated

BOX, APIX = 32, 3.0


@pytest.fixture(scope="module")
def simulated():
    """800 noisy particles (SNR 0.1) of a Gaussian mixture with CTF and shifts."""
    g = torch.Generator().manual_seed(0)
    n_g, n = 60, 800
    c = (torch.rand(n_g, 3, generator=g) - 0.5) * torch.tensor([40.0, 30.0, 24.0])
    gmm = GaussianMixture(c, torch.rand(n_g, generator=g) + 0.5, torch.rand(n_g, generator=g) * 2 + 3.0)
    rot = torch.tensor(random_rotations(n, 1), dtype=torch.float32)
    shifts = (torch.rand(n, 2, generator=g) - 0.5) * 6 * APIX
    ctf = torch.zeros(n, 9)
    ctf[:, 0] = torch.rand(n, generator=g) * 15000 + 10000
    ctf[:, 1] = ctf[:, 0] - 500
    ctf[:, 2] = torch.rand(n, generator=g) * 180
    ctf[:, 3], ctf[:, 4], ctf[:, 5], ctf[:, 8] = 300.0, 2.7, 0.1, 1.0
    clean = render(gmm, rot, shifts, ctf, BOX, APIX)  # analytic projector: independent of the slicer
    noisy, _ = add_white_noise(clean, 0.1, generator=g)
    return {
        "truth": gmm.to_volume(BOX, APIX),
        "images": noisy,
        "rot": rot,
        "shifts": shifts,
        "ctf": ctf,
    }


def _half_maps(sim, n, rot=None, shifts=None, ctf=None, snr="fsc"):
    rec = HalfSetReconstructor(BOX, APIX)
    r = sim["rot"] if rot is None else rot
    s = sim["shifts"] if shifts is None else shifts
    p = sim["ctf"] if ctf is None else ctf
    half = torch.arange(n) % 2
    for i in range(0, n, 200):
        j = min(i + 200, n)
        rec.add(sim["images"][i:j], r[i:j], s[i:j], p[i:j], half[i:j])
    return rec.finalize(snr)


def test_simulated_reconstruction_and_wrong_conventions_fail(simulated):
    sim = simulated
    truth = sim["truth"]
    res = _half_maps(sim, 800)
    fsc = shell_fsc(res.full, truth)
    score = float(fsc[1:9].mean())  # shells 1..8 of 16 (to 12 Å at 3 Å/px)
    assert score > 0.9  # measured 0.958
    assert _cc(res.full, truth) > 0.95
    assert res.fsc[1:5].min() > 0.9 and res.fsc[-3:].abs().max() < 0.2  # half maps: signal, then noise
    # Each convention error stays far below it (on 400 particles, for speed). Measured: transposed
    # rotations 0.53 (a blurred blob still matching the lowest shells; 0.46 before the maps got
    # their soft sphere, which removes the box corners' noise), flipped shift 0.14, CTF -0.93.
    wrong = {
        "transposed rotations": {"rot": sim["rot"].transpose(1, 2)},
        "flipped shift sign": {"shifts": -sim["shifts"]},
        "flipped CTF sign": {"ctf": sim["ctf"] * torch.tensor([1, 1, 1, 1, 1, 1, 1, 1, -1.0])},
    }
    for name, kw in wrong.items():
        bad = float(shell_fsc(_half_maps(sim, 400, **kw).full, truth)[1:9].mean())
        assert bad < 0.6, (name, bad)


def test_fsc_wiener_filter_beats_no_regularisation(simulated):
    sim = simulated
    truth = sim["truth"]
    reg = _half_maps(sim, 400)
    plain = _half_maps(sim, 400, snr=None)
    err_reg = float((reg.full - truth).norm() / truth.norm())
    err_plain = float((plain.full - truth).norm() / truth.norm())
    assert err_reg < 0.7 * err_plain
    assert torch.all(torch.isfinite(reg.snr)) and reg.snr.shape == (BOX // 2 + 1,)


def test_streaming_merging_and_unshifting():
    g = torch.Generator().manual_seed(3)
    c = (torch.rand(20, 3, generator=g) - 0.5) * 30
    gmm = GaussianMixture(c, torch.rand(20, generator=g) + 0.5, torch.full((20,), 4.0))
    n = 120
    rot = torch.tensor(random_rotations(n, 7), dtype=torch.float32)
    shifts = (torch.rand(n, 2, generator=g) - 0.5) * 4 * APIX
    centred = render(gmm, rot, None, None, BOX, APIX)
    shifted = render(gmm, rot, shifts, None, BOX, APIX)
    one = BackprojectionAccumulator(BOX, APIX)
    one.add(centred, rot)
    a, b = BackprojectionAccumulator(BOX, APIX), BackprojectionAccumulator(BOX, APIX)
    a.add(shifted[:50], rot[:50], shifts[:50])
    b.add(shifted[50:], rot[50:], shifts[50:])
    merged = a.merged(b)
    assert merged.n_images == n
    v1, v2 = one.finalize(snr=10.0), merged.finalize(snr=10.0)
    assert (v1 - v2).norm() / v1.norm() < 0.02  # the shifts are undone (periodic edge effects only)
    vol = reconstruct(
        [(centred[i : i + 40], rot[i : i + 40], None, None) for i in range(0, n, 40)],
        BOX,
        APIX,
        half_sets=False,
        snr=10.0,
    )
    assert torch.allclose(vol, v1, atol=1e-4 * v1.abs().max())
    with pytest.raises(ValueError):
        one.add(centred[:, :-1, :-1], rot)


def test_snr_from_fsc():
    fsc = torch.tensor([1.0, 0.9, 0.5, 0.0, -0.2])
    w = torch.tensor([10.0, 10.0, 4.0, 2.0, 2.0])
    s = snr_from_fsc(fsc, w)
    assert s[1] == pytest.approx(0.9 / 0.1 / 10) and s[2] == pytest.approx(1.0 / 4)
    assert torch.all(s[3:] > 0) and torch.all(s[3:] < 1e-3)


@pytest.mark.parametrize("box,oversample", [(15, 2), (11, 3), (16, 3)])
def test_odd_boxes_and_oversampling(box, oversample):
    g = torch.Generator().manual_seed(4)
    apix = 4.0
    c = (torch.rand(12, 3, generator=g) - 0.5) * box * apix * 0.4
    gmm = GaussianMixture(c, torch.rand(12, generator=g) + 0.5, torch.full((12,), 1.2 * apix))
    rot = torch.tensor(random_rotations(200, 9), dtype=torch.float32)
    shifts = (torch.rand(200, 2, generator=g) - 0.5) * 2 * apix
    acc = BackprojectionAccumulator(box, apix, oversample=oversample)
    acc.add(render(gmm, rot, shifts, None, box, apix), rot, shifts)
    assert _cc(acc.finalize(), gmm.to_volume(box, apix)) > 0.98


@pytest.mark.parametrize("box,oversample", [(10, 2), (9, 2), (7, 3)])
def test_half_plane_accumulation_equals_full_plane_scatter(box, oversample):
    """The Hermitian completion in ``symmetrized`` reproduces a full-plane scatter."""
    from cryohet.imaging.ctf import compute_ctf_grid
    from cryohet.imaging.fft import fft2_centered, frequencies_1d
    from cryohet.imaging.projection import backproject_slices
    from cryohet.imaging.shifts import phase_ramp

    g = torch.Generator().manual_seed(2)
    n, apix = 5, 2.0
    images = torch.randn(n, box, box, generator=g, dtype=torch.float64)
    rot = torch.tensor(random_rotations(n, 3))
    shifts = torch.randn(n, 2, generator=g, dtype=torch.float64)
    ctf = torch.tensor([[9000.0, 8000.0, 20.0, 300.0, 2.7, 0.1, 0.0, 0.0, 1.0]], dtype=torch.float64).repeat(n, 1)
    acc = BackprojectionAccumulator(box, apix, oversample=oversample, dtype=torch.float64)
    acc.add(images, rot, shifts, ctf)
    num, w = acc.symmetrized()
    p = oversample * box
    b = p // 2 - box // 2
    padded = torch.nn.functional.pad(images, (b, p - box - b, b, p - box - b))
    k_per_px = frequencies_1d(p, dtype=torch.float64)
    c = compute_ctf_grid(k_per_px / apix, k_per_px / apix, ctf)
    F = fft2_centered(padded) * phase_ramp(k_per_px / apix, k_per_px / apix, -shifts) * c
    ref_num = backproject_slices(F, rot, p, k_per_px, k_per_px)
    ref_w = backproject_slices(c * c, rot, p, k_per_px, k_per_px)
    # Inside the Nyquist sphere (the unpaired Nyquist row/column of even grids differ).
    inner = acc.shell_index() < box // 2 - 1
    assert torch.allclose(num[inner], ref_num[inner], atol=1e-9 * ref_num.abs().max())
    assert torch.allclose(w[inner], ref_w[inner], atol=1e-9 * ref_w.abs().max())


# ----------------------------------------------------------------------------- memory layout


@pytest.mark.parametrize("box,oversample", [(12, 2), (11, 2), (8, 3)])
def test_half_space_finalize_equals_full_grid_reconstruction(box, oversample):
    """The folded half-space grid and its slab-wise half-space inverse FFT give the map of
    the former full-grid estimator (full-plane scatter on a ``P^3`` grid, ``N / (W + 1/SNR)``,
    centred inverse FFT, crop, gridding correction) to float64 rounding."""
    from cryohet.imaging.ctf import compute_ctf_grid
    from cryohet.imaging.fft import fft2_centered, frequencies_1d
    from cryohet.imaging.projection import backproject_slices, fourier_to_volume, gridding_kernel
    from cryohet.imaging.shifts import phase_ramp

    g = torch.Generator().manual_seed(5)
    n, apix, snr = 40, 2.0, 0.3
    images = torch.randn(n, box, box, generator=g, dtype=torch.float64)
    rot = torch.tensor(random_rotations(n, 11))
    shifts = torch.randn(n, 2, generator=g, dtype=torch.float64)
    ctf = torch.tensor([[9000.0, 8000.0, 20.0, 300.0, 2.7, 0.1, 0.0, 0.0, 1.0]], dtype=torch.float64).repeat(n, 1)
    acc = BackprojectionAccumulator(box, apix, oversample=oversample, dtype=torch.float64)
    for i in range(0, n, 16):  # several batches, as streamed
        acc.add(images[i : i + 16], rot[i : i + 16], shifts[i : i + 16], ctf[i : i + 16])
    p = oversample * box
    assert acc.grid.shape == (p, p, p // 2 + 1, 3)  # half space: ~half the former (P, P, P, 3)
    rmax = box // 2 - 2  # away from the grid edge, where the two layouts drop different corners
    got = acc.finalize(snr, max_shell=rmax)

    b = p // 2 - box // 2
    padded = torch.nn.functional.pad(images, (b, p - box - b, b, p - box - b))
    k = frequencies_1d(p, dtype=torch.float64)
    c = compute_ctf_grid(k / apix, k / apix, ctf)
    num = backproject_slices(fft2_centered(padded) * phase_ramp(k / apix, k / apix, -shifts) * c, rot, p, k, k)
    w = backproject_slices(c * c, rot, p, k, k)
    shells = acc.shell_index()
    vol_ft = num / (w + 1.0 / snr) * (shells <= rmax)
    want = fourier_to_volume(vol_ft, box) / gridding_kernel(box, p, dtype=torch.float64)
    assert torch.allclose(got, want, atol=1e-10 * float(want.abs().max()))
    # The weights per shell from the half space equal those of the full grid.
    mean_w = torch.stack([w[shells == s].mean() for s in range(box // 2 - 1)])
    assert torch.allclose(acc.mean_weight_per_shell()[: box // 2 - 1], mean_w, rtol=1e-10)


def test_memory_budget_refuses_with_a_smaller_box(monkeypatch):
    from cryohet.data.dataset import ParticleDataset
    from cryohet.errors import InputError
    from cryohet.io.source import ParticleSource
    from cryohet.reconstruction import budget
    from cryohet.reconstruction.from_particles import reconstruct_particles

    b256 = budget.reconstruction_budget(256)
    assert 1.5e9 < b256.grids_bytes < 1.7e9 and b256.total_bytes < 3e9  # 96 B per voxel plus finalisation
    assert budget.reconstruction_budget(512).grids_bytes / b256.grids_bytes == pytest.approx(8, rel=0.01)  # O(D^3)
    with pytest.raises(InputError, match=r"box 512 needs about 1\d\.\d GB") as err:
        budget.check_budget(512, available=4_000_000_000)
    suggested = int(str(err.value).split("pass -D ")[1].split()[0])
    assert 256 <= suggested < 512 and budget.reconstruction_budget(suggested).total_bytes <= 4e9

    from pinned_cases import DATA

    dataset = ParticleDataset(ParticleSource(path=DATA / "particles.star").load(), normalize=False)
    assert dataset.box == 24
    fits_16 = budget.reconstruction_budget(16).total_bytes
    monkeypatch.setattr(budget, "available_memory_bytes", lambda device=None: fits_16)
    with pytest.raises(InputError) as err:
        reconstruct_particles(dataset, show_progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "box 24" in msg and "-D 16" in msg


def test_backproject_and_homogeneous_report_one_resolution(tmp_path):
    """``cryohet backproject``, ``train homogeneous`` and ``cryohet fsc`` on the written half
    maps give the same 0.143 resolution for the same particles."""
    import yaml

    from cryohet.evaluation.fsc_report import compare_map_files
    from cryohet.io.source import ParticleSource
    from cryohet.methods.baselines import HomogeneousConfig, train_homogeneous
    from cryohet.simulate.config import SimulationConfig
    from cryohet.simulate.simulator import simulate_dataset
    from cryohet.workflows.backproject import BackprojectConfig, backproject_to_files

    data = tmp_path / "sim"  # noisy enough that the FSC crosses 0.143 before Nyquist
    simulate_dataset(
        SimulationConfig(preset="assembly", out=data, n_states=1, n_images=120, box=32, apix=7.0, snr=0.02, seed=3)
    )
    src = ParticleSource(path=data / "particles.star")
    summary = backproject_to_files(BackprojectConfig(data=src, out=tmp_path / "bp" / "map.mrc"))
    run = train_homogeneous(HomogeneousConfig(data=src, out=str(tmp_path / "homog")))
    homog = float(yaml.safe_load((run / "config.yaml").read_text())["resolved"]["resolution_A"])
    bp = float(summary["resolution_0143"].split()[0])
    files = compare_map_files(tmp_path / "bp" / "map_half1.mrc", tmp_path / "bp" / "map_half2.mrc").resolution(0.143)
    assert bp == pytest.approx(homog, abs=0.006) and files == pytest.approx(homog, rel=1e-4)
    apix = summary["apix"]
    assert 2 * apix < homog < 32 * apix  # crosses between Nyquist and the box
