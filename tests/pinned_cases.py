"""Results pinned before the platform refactor (issue 14), so that moving code changes nothing.

``python tests/pinned_cases.py --write`` recomputes every case with the code as it is and
stores the numbers in ``tests/data/pinned/reference.npz`` (together with the tiny dataset
the cases read, so that they do not depend on the simulator). ``test_pinned_results.py``
reruns the cases and compares them with the stored numbers. The reference was written
once, on the code before the lift (commit c3a176e); rewrite it only for an intended
change of results, and say so in the commit.

Cases:

* ``simulate``: the simulator's images for a fixed seed (compared with the stored stack);
* ``batch_*``: the losses of one fixed batch: the CryoSPIRE data term of the seeded
  stage-A mixture and of a stage-B model, and the baselines' band likelihood;
* ``spire_*``: the latents of a seeded CryoSPIRE stage A (regional latent init, latent
  search), and the per-epoch losses, parts and Gaussians of a short stage A + B run;
* ``homogeneous``, ``oracle``, ``classify3d``, ``pca``: each baseline's maps or latents.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

PINNED = Path(__file__).resolve().parent / "data" / "pinned"
DATA = PINNED / "data"
REFERENCE = PINNED / "reference.npz"


def simulate_into(out: Path) -> Path:
    """The pinned dataset: a two-state assembly, 160 images at D=24, 14 Å/px."""
    from cryohet.simulate.config import SimulationConfig
    from cryohet.simulate.simulator import simulate_dataset

    simulate_dataset(
        SimulationConfig(preset="assembly", out=out, n_states=2, n_images=160, box=24, apix=14.0, snr=0.3, seed=11)
    )
    return out


def _source():
    from cryohet.io.source import ParticleSource

    return ParticleSource(path=DATA / "particles.star")


def read_stack(folder: Path) -> np.ndarray:
    import mrcfile

    with mrcfile.open(folder / "particles.mrcs") as f:
        return np.asarray(f.data, np.float32)


def case_simulate(tmp: Path) -> dict[str, np.ndarray]:
    """The simulator's images (compared with the stored stack, not stored twice)."""
    return {"simulate_images": read_stack(simulate_into(tmp / "sim"))}


def case_batches(tmp: Path) -> dict[str, np.ndarray]:
    """Losses of one fixed batch of 16 images."""
    from cryohet.data.dataset import ParticleDataset
    from cryohet.imaging.bands import FourierBand
    from cryohet.imaging.projection import volume_to_fourier
    from cryohet.io.mrc import read_volume
    from cryohet.methods.spire.objective import data_band, data_likelihood
    from cryohet.methods.spire.stage_a import StageAModel
    from cryohet.representations.gaussian_seeding import seed_from_map
    from cryohet.representations.render import model_images, prepare_batch, score_batch

    meta = _source().load()
    ds = ParticleDataset(meta, normalize=True, seed=0)
    rows = np.arange(3, 160, 10)[:16]
    batch = ds.get_batch(rows)
    apix = float(meta.pixel_size)
    band = data_band(ds.box, apix)
    fb = prepare_batch(batch, band, torch.device("cpu"))
    vol = read_volume(DATA / "gt" / "state_000.mrc")[0]
    seed = seed_from_map(vol, 96, np.random.default_rng(0))
    torch.manual_seed(0)
    model = StageAModel(
        torch.as_tensor(seed.centres_px),
        torch.as_tensor(seed.amplitudes),
        torch.as_tensor(seed.sigmas_px),
        4,
        8,
        16,
        ds.box,
        apix,
        seed=0,
    )
    z = torch.as_tensor(np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)) * 0.5
    with torch.no_grad():
        spire_data = score_batch(model(z), fb, data_likelihood(band))
    # baselines' band likelihood of the ground-truth map on raw (unnormalised) images
    raw = ParticleDataset(meta, normalize=False)
    rb = raw.get_batch(rows)
    shells = FourierBand.up_to_shell(raw.box, apix, 9)
    vft = volume_to_fourier(torch.as_tensor(vol))
    model = model_images(vft, rb.rotations, shells, shells.filters(rb.ctf_params, rb.shifts_A))
    band_power = shells.shell_sums((shells.observed(rb.images) - model).abs() ** 2)
    return {"batch_spire_data": spire_data.numpy(), "batch_band_power": band_power.numpy()}


def _spire_config(out: Path, epochs_b: int = 3):
    from cryohet.methods.spire import SpireConfig

    return SpireConfig(
        data=_source(),
        out=str(out),
        zdim=3,
        latent_search=4,
        init_regions=4,
        stage_a={"epochs": 2, "gaussians": 128, "feature_dim": 8, "hidden": 16},
        stage_b={"epochs": epochs_b, "gaussians": 256, "hidden": 32, "layers": 2},
        optim={"batch_size": 16},
        seed=3,
    )


def case_spire(tmp: Path) -> dict[str, np.ndarray]:
    """Two runs: stage A alone (the latents after the regional init, stage A and the search
    at its end), and stage A + B (per-epoch data term, parts, Gaussians).

    The latents after stage B are not pinned: row-wise Adam normalises each coordinate's
    step, so coordinates with a near-zero gradient (flat directions of a barely trained
    decoder) take full-size steps whose sign float rounding decides; the data term, the
    parts and the Gaussians do not depend on them.
    """
    from cryohet.methods.spire import train_spire

    run_a = train_spire(_spire_config(tmp / "spire_a", epochs_b=0))
    run = train_spire(_spire_config(tmp / "spire"))
    rows = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines() if x.strip()]
    g = np.load(run / "extras" / "gaussians.npz")
    return {
        "spire_stage_a_latents": np.load(run_a / "latents.npy"),
        "spire_epoch_data": np.array([r["data"] for r in rows]),
        "spire_part": g["part"],
        "spire_centres_A": g["centres_A"],
    }


def case_baselines(tmp: Path) -> dict[str, np.ndarray]:
    from cryohet.methods.base import load_run
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

    src = _source()
    out: dict[str, np.ndarray] = {}
    run = train_homogeneous(HomogeneousConfig(data=src, out=str(tmp / "homog")))
    out["homogeneous_map"] = load_run(run).volume(np.zeros(1))
    run = train_oracle(OracleConfig(data=src, out=str(tmp / "oracle"), labels=DATA / "gt" / "labels.npy"))
    out["oracle_maps"] = np.stack([load_run(run).volume(np.eye(2)[k]) for k in range(2)])
    run = train_classify3d(Classify3DConfig(data=src, out=str(tmp / "c3d"), classes=2, iterations=2, init_iterations=2))
    out["classify3d_latents"] = np.load(run / "latents.npy")
    run = train_pca(PCAConfig(data=src, out=str(tmp / "pca"), components=2, iterations=2))
    out["pca_latents"] = np.load(run / "latents.npy")
    return out


CASES = {"simulate": case_simulate, "batches": case_batches, "spire": case_spire, "baselines": case_baselines}


def run_case(name: str) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        return CASES[name](Path(d))


def write() -> None:
    if DATA.exists():
        shutil.rmtree(DATA)
    simulate_into(DATA)
    for sub in ("gt",):
        for f in (DATA / sub).iterdir():
            if f.name not in ("labels.npy", "state_000.mrc", "state_001.mrc", "mask.mrc"):
                f.unlink() if f.is_file() else shutil.rmtree(f)
    ref: dict[str, np.ndarray] = {}
    for name in CASES:
        if name != "simulate":
            ref.update(run_case(name))
        print(name, "done", flush=True)
    np.savez_compressed(REFERENCE, **ref)


if __name__ == "__main__":
    if "--write" in sys.argv:
        torch.set_num_threads(1)
        write()
