"""Results pinned before the platform refactor stay the same (see ``pinned_cases.py``).

Tolerances: the reference was computed on the code before the lift, with one torch
thread. Code moves must reproduce it to float32 rounding; the tolerances below say how
much rounding each case may accumulate (a batch loss: one pass; a trained run: many
steps, k-means and discrete searches that amplify rounding).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pinned_cases import DATA, REFERENCE, read_stack, run_case

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _close(got: np.ndarray, want: np.ndarray, rtol: float, what: str) -> None:
    """``|got - want| <= rtol * max|want|`` elementwise (a scale-relative tolerance)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = float(np.abs(got.astype(np.float64) - want).max()) / max(float(np.abs(want).max()), 1e-30)
    assert err <= rtol, f"{what}: max error {err:.3g} of the scale (allowed {rtol:.1g})"


def test_simulator_images_unchanged():
    got = run_case("simulate")["simulate_images"]
    _close(got, read_stack(DATA), 1e-5, "simulated images")


def test_fixed_batch_losses_unchanged(reference):
    got = run_case("batches")
    _close(got["batch_spire_data"], reference["batch_spire_data"], 1e-5, "spire data term")
    _close(got["batch_band_power"], reference["batch_band_power"], 1e-5, "band residual power")


def test_short_spire_run_unchanged(reference):
    got = run_case("spire")
    np.testing.assert_array_equal(got["spire_part"], reference["spire_part"])
    _close(got["spire_epoch_data"], reference["spire_epoch_data"], 1e-4, "spire per-epoch data term")
    _close(got["spire_stage_a_latents"], reference["spire_stage_a_latents"], 1e-3, "spire stage-A latents")
    _close(got["spire_centres_A"], reference["spire_centres_A"], 1e-3, "spire Gaussian centres")


def test_baselines_unchanged(reference):
    got = run_case("baselines")
    _close(got["homogeneous_map"], reference["homogeneous_map"], 1e-5, "consensus map")
    _close(got["oracle_maps"], reference["oracle_maps"], 1e-5, "oracle maps")
    _close(got["classify3d_latents"], reference["classify3d_latents"], 1e-5, "classify3d posteriors")
    _close(got["pca_latents"], reference["pca_latents"], 1e-4, "pca latents")
