"""``evaluate`` reports part metrics for part-labelled Gaussian methods when the ground
truth has ``atoms.npz``: moving-part purity (conformational) and absent-chain occupancy
(compositional). A stand-in method puts one Gaussian on every atom of the state its
latent names, with part labels read from its run directory."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryohet.evaluation.evaluate import evaluate_run
from cryohet.methods.base import TrainedModel, register_method
from cryohet.training.rundir import RunDir

BOX, APIX, S, PER_STATE = 8, 4.0, 3, 10


@register_method
class _AtomGaussians(TrainedModel):
    """Gaussians on the atoms of state ``argmax(z)``; ``part`` and occupancies from ``gauss.npz``."""

    method = "test-atom-gaussians"

    def __init__(
        self, run: RunDir, coords: np.ndarray, part: np.ndarray, occupancy: np.ndarray, base: np.ndarray | None = None
    ) -> None:
        super().__init__(run, BOX, APIX)
        self.coords, self.part, self.occ, self.base = coords, part, occupancy, base

    @classmethod
    def load(cls, run_dir, device="cpu"):
        with np.load(Path(run_dir) / "gauss.npz") as f:
            return cls(RunDir(run_dir), f["coords"], f["part"], f["occupancy"], f["base"] if "base" in f else None)

    def volume(self, z, box=None, apix=None):
        rng = np.random.default_rng(int(np.argmax(z)))
        return rng.standard_normal((box or BOX,) * 3).astype(np.float32)

    def gaussians_at(self, z):
        s = int(np.argmax(z))
        n = len(self.part)
        if self.base is None:
            return {
                "centres_A": self.coords[s],
                "amplitudes": self.occ[s].copy(),
                "occupancy": self.occ[s].copy(),
                "sigmas_A": np.full(n, 2.0),
                "part": self.part,
            }
        return {
            "centres_A": self.coords[s],
            "amplitudes": self.base * self.occ[s],
            "occupancy": self.occ[s].copy(),
            "base_amplitudes": self.base.copy(),
            "sigmas_A": np.full(n, 2.0),
            "part": self.part,
        }


def _atoms(rng: np.random.Generator, compositional: bool) -> dict[str, np.ndarray]:
    """Chain A (20 static atoms) and chain B (20 atoms that move, or are absent in state 0)."""
    a = rng.normal(scale=3.0, size=(20, 3)) - [6.0, 0, 0]
    b = rng.normal(scale=3.0, size=(20, 3)) + [6.0, 0, 0]
    coords = np.stack([np.concatenate([a, b if compositional else b + [0, 4.0 * s, 0]]) for s in range(S)])
    present = np.ones((S, 40), bool)
    if compositional:
        present[0, 20:] = False
    return {
        "coords_A": coords.astype(np.float32),
        "present": present,
        "chain_ids": np.array(["A"] * 20 + ["B"] * 20),
        "residue_numbers": np.arange(40),
        "moving": np.arange(40) >= 20,
    }


def _dataset(root: Path, atoms: dict[str, np.ndarray]) -> Path:
    gt = root / "gt"
    gt.mkdir(parents=True)
    np.save(gt / "labels.npy", np.repeat(np.arange(S), PER_STATE))
    rng = np.random.default_rng(1)
    for s in range(S):
        with mrcfile.new(gt / f"state_{s:03d}.mrc") as m:
            m.set_data(rng.standard_normal((BOX,) * 3).astype(np.float32))
            m.voxel_size = APIX
    np.savez(gt / "atoms.npz", **atoms)
    return root


def _run(
    root: Path,
    atoms: dict[str, np.ndarray],
    part: np.ndarray,
    occupancy: np.ndarray,
    base: np.ndarray | None = None,
    coords: np.ndarray | None = None,
) -> Path:
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text("method: test-atom-gaussians\n")
    z = np.repeat(np.eye(S, dtype=np.float32), PER_STATE, axis=0)
    np.save(run / "latents.npy", z + np.random.default_rng(2).normal(scale=0.01, size=z.shape).astype(np.float32))
    extra = {} if base is None else {"base": base}
    coords = atoms["coords_A"] if coords is None else coords
    np.savez(run / "gauss.npz", coords=coords, part=part, occupancy=occupancy, **extra)
    return run


@pytest.mark.parametrize("good", [True, False])
def test_moving_part_purity_reported(tmp_path, good):
    atoms = _atoms(np.random.default_rng(0), compositional=False)
    data = _dataset(tmp_path, atoms)
    part = (np.arange(40) >= 20).astype(np.int64) if good else np.arange(40) % 2
    r = evaluate_run(_run(tmp_path, atoms, part, np.ones((S, 40), np.float32)), data)
    mp = r["parts"]["moving_part_purity"]
    assert r["parts"]["n_parts"] == 2 and "absent_chain_occupancy" not in r["parts"]
    assert mp["moving_gaussians"] == 20
    if good:
        assert mp["moving_in_main_part"] == 1.0 and mp["static_in_main_part"] == 0.0
    else:  # parts that cut across the moving domain
        assert mp["moving_in_main_part"] == 0.5 and mp["static_in_main_part"] == 0.5


def test_absent_chain_occupancy_reported(tmp_path):
    atoms = _atoms(np.random.default_rng(0), compositional=True)
    data = _dataset(tmp_path, atoms)
    occ = atoms["present"].astype(np.float32) * 0.9 + 0.05  # absent 0.05, present 0.95
    r = evaluate_run(_run(tmp_path, atoms, np.zeros(40, np.int64), occ), data)
    ac = r["parts"]["absent_chain_occupancy"]
    assert "moving_part_purity" not in r["parts"]
    assert ac["max_absent_occupancy"] == pytest.approx(0.05) and ac["fraction_absent_below_0.2"] == 1.0
    assert ac["min_present_occupancy"] == pytest.approx(0.95)
    absent = [row for row in ac["rows"] if not row["present"]]
    assert [(row["state"], row["chain"]) for row in absent] == [(0, "B")]


@pytest.mark.parametrize("give_base", [True, False])
def test_absent_chain_occupancy_is_mass_weighted(tmp_path, give_base):
    """Closed gates keep their Gaussians' weight: two of chain A's twenty Gaussians shut
    (gate exactly 0) leave the chain at 0.9 of its mass, not near 0."""
    atoms = _atoms(np.random.default_rng(0), compositional=True)
    data = _dataset(tmp_path, atoms)
    occ = atoms["present"].astype(np.float32)
    occ[1:, :2] = 0.0  # states 1 and 2: two Gaussians of chain A closed
    occ[0, :2] = 1.0
    base = np.full(40, 0.02, np.float32)
    coords = atoms["coords_A"].copy()
    coords[0, 20:] = atoms["coords_A"][0, :20]  # closed chain-B Gaussians drift onto chain A in state 0
    r = evaluate_run(_run(tmp_path, atoms, np.zeros(40, np.int64), occ, base if give_base else None, coords), data)
    rows = {(row["state"], row["chain"]): row["occupancy"] for row in r["parts"]["absent_chain_occupancy"]["rows"]}
    assert rows[(1, "A")] == pytest.approx(0.9) and rows[(2, "A")] == pytest.approx(0.9)
    assert rows[(0, "A")] == pytest.approx(1.0) and rows[(0, "B")] == pytest.approx(0.0)


def test_absent_chain_occupancy_uses_each_states_latent(tmp_path):
    """Called on per-image latents and labels, each state is decoded at its own latent."""
    from cryohet.evaluation.ground_truth import load_gt_atoms
    from cryohet.methods.base import load_run
    from cryohet.metrics.parts import absent_chain_occupancy

    atoms = _atoms(np.random.default_rng(0), compositional=True)
    data = _dataset(tmp_path, atoms)
    occ = atoms["present"].astype(np.float32)
    model = load_run(_run(tmp_path, atoms, np.zeros(40, np.int64), occ))
    labels = np.repeat(np.arange(S), PER_STATE)
    ac = absent_chain_occupancy(model, model.latents, labels, load_gt_atoms(data / "gt"))
    rows = {(row["state"], row["chain"]): row["occupancy"] for row in ac["rows"]}
    assert rows[(0, "B")] == pytest.approx(0.0) and rows[(1, "B")] == pytest.approx(1.0)


def test_no_part_metrics_without_atoms(tmp_path):
    atoms = _atoms(np.random.default_rng(0), compositional=False)
    data = _dataset(tmp_path, atoms)
    (data / "gt" / "atoms.npz").unlink()
    r = evaluate_run(_run(tmp_path, atoms, np.zeros(40, np.int64), np.ones((S, 40), np.float32)), data)
    assert r["parts"] is None
