"""Part sections of ``cryohet analyze``: motion per cluster and part maps of a part-aware run.

The run directory is a real CryoSPIRE one (config.yaml, model.pt with a stage-B model,
latents, extras/part_motion.npz written by the method's own ``part_motion_table``) holding
a small, randomly initialised model with non-trivial part motions, so the common
interface, ``SpireModel.part_volumes`` and the analysis all run for real without training.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cryohet.analysis.analyze import analyze_run
from cryohet.analysis.config import AnalyzeConfig
from cryohet.analysis.htmlcheck import check_html, parse_report
from cryohet.analysis.parts import part_colours, part_motion_summary, rotation_angles_deg
from cryohet.io.mrc import read_mrc_header, read_volume

BOX, APIX, N, ZDIM, PARTS = 20, 8.0, 120, 2, 3


@pytest.fixture(scope="module")
def spire_run(tmp_path_factory):
    from cryohet.config import save_config
    from cryohet.io.source import ParticleSource
    from cryohet.methods.spire.config import SpireConfig, StageBConfig
    from cryohet.methods.spire.outputs import part_motion_table
    from cryohet.methods.spire.stage_b import StageBModel
    from cryohet.training.checkpoint import save_checkpoint
    from cryohet.training.rundir import RunDir

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("spire")
    g = torch.Generator().manual_seed(1)
    anchors = torch.tensor([[-4.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 2.0]])
    anchor_of = torch.arange(60) % PARTS
    centres = anchors[anchor_of] + torch.randn(60, 3, generator=g) * 1.2
    cfg = SpireConfig(
        data=ParticleSource(path=root / "particles.star"),
        out=str(root / "run"),
        box=BOX,
        zdim=ZDIM,
        stage_b=StageBConfig(hidden=16, layers=2, rank=4),
    )
    model = StageBModel(
        anchor_centres_px=anchors,
        anchor_features=torch.randn(PARTS, 6, generator=g),
        anchor_of=anchor_of,
        centres_px=centres,
        amplitudes=torch.ones(60),
        sigmas_px=torch.full((60,), 1.2),
        zdim=ZDIM,
        hidden=16,
        layers=2,
        apix=APIX,
        decoder="factorized",
        rank=4,
    )
    with torch.no_grad():  # non-trivial rigid motions (the trained-from-scratch init is the identity)
        for p in model.motion.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    run = RunDir(root / "run")
    run.create()
    save_config(run.config, cfg, extra={"resolved": {"apix": APIX, "n_particles": N}})
    save_checkpoint(run.model, {"model_b": model.state_dict(), "model_a": {}})
    z = torch.randn(N, ZDIM, generator=g)
    run.save_latents(z.numpy())
    run.save_extra("part_motion", **part_motion_table(model, z, APIX))
    before = _checksums(run.path)
    res = analyze_run(AnalyzeConfig(run=run.path, k=3, pcs=1, pc_steps=2, umap=False))
    return {"run": run, "res": res, "z": z.numpy(), "before": before}


def _checksums(run) -> dict[str, str]:
    """Every file of the run (weights, latents, extras, config) except the log and the analysis."""
    return {
        f.relative_to(run).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(run.rglob("*"))
        if f.is_file() and f.relative_to(run).parts[0] != "analyze" and f.name != "run.log"
    }


def test_analysis_leaves_the_spire_run_unchanged(spire_run):
    after = _checksums(spire_run["run"].path)
    assert after == spire_run["before"]
    assert {"model.pt", "latents.npy", "extras/part_motion.npz", "config.yaml"} <= set(after)


def test_part_motion_summary_matches_independent_angles(spire_run):
    run, res = spire_run["run"], spire_run["res"]
    motion = run.load_extra("part_motion")
    labels = np.load(run.path / "analyze" / "kmeans3" / "labels.npy")
    angles = Rotation.from_matrix(motion["rotations"].reshape(-1, 3, 3).astype(np.float64)).magnitude()
    angles = np.degrees(angles).reshape(N, PARTS)
    trans = np.linalg.norm(motion["translations_A"], axis=-1)
    pm = res.part_motion
    assert pm is not None and pm.angle_deg.shape == (3, PARTS)
    for c in range(3):
        np.testing.assert_allclose(pm.angle_deg[c], angles[labels == c].mean(0), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(pm.translation_A[c], trans[labels == c].mean(0), rtol=1e-5)
        np.testing.assert_allclose(pm.occupancy[c], motion["occupancy"][labels == c].mean(0), rtol=1e-5)
    assert pm.angle_deg.max() > 1.0  # the motions are not trivial
    csv = (run.path / "analyze" / "parts" / "motion_per_cluster.csv").read_text().splitlines()
    assert csv[0].startswith("cluster,n_particles,part,rotation_deg,translation_A") and len(csv) == 1 + 3 * PARTS


def test_part_maps_sum_to_the_map_at_the_representative(spire_run):
    from cryohet.methods.base import load_run

    run, res = spire_run["run"], spire_run["res"]
    model = load_run(run.path)
    folder = run.path / "analyze" / "parts"
    files = sorted(folder.glob("part_*.mrc"))
    assert [f.name for f in files] == [f"part_{k:02d}.mrc" for k in range(PARTS)]
    total = sum(read_volume(f)[0] for f in files)
    assert read_mrc_header(files[0]).apix == pytest.approx(APIX) and total.shape == (BOX,) * 3
    row = res.part_maps.row
    z = spire_run["z"]
    assert row == int(np.argmin(((z - z.mean(0)) ** 2).sum(1)))  # particle nearest the mean latent
    full = model.volume(z[row])
    np.testing.assert_allclose(total, full, atol=1e-4 * float(np.abs(full).max()))
    script = (folder / "parts.cxc").read_text()
    colours = part_colours(PARTS)
    assert all(f"open part_{k:02d}.mrc" in script and colours[k] in script for k in range(PARTS))


def test_report_has_the_parts_section(spire_run):
    report = spire_run["run"].path / "analyze" / "report.html"
    assert check_html(report) == []
    rep = parse_report(report)
    assert "parts" in rep.sections and "evaluation" not in rep.sections
    text = report.read_text()
    assert "Largest changes between clusters" in text and "motion_per_cluster.csv" in text
    plots = spire_run["run"].path / "analyze" / "plots"
    assert all((plots / f).is_file() for f in ("parts.png", "part_motion.png", "part_movers.png"))


def test_rotation_angles_and_summary_on_known_rotations():
    true = np.array([[10.0, 0.0], [30.0, 90.0], [50.0, 170.0], [70.0, 0.0]])  # (N=4, K=2) degrees
    axes = np.random.default_rng(0).normal(size=(4, 2, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    rots = Rotation.from_rotvec((axes * np.radians(true)[..., None]).reshape(-1, 3)).as_matrix().reshape(4, 2, 3, 3)
    np.testing.assert_allclose(rotation_angles_deg(rots), true, atol=1e-6)
    trans = np.zeros((4, 2, 3))
    trans[:, 1, 0] = [1.0, 2.0, 3.0, 4.0]
    pm = part_motion_summary({"rotations": rots, "translations_A": trans}, np.array([0, 0, 1, 1]), 2)
    np.testing.assert_allclose(pm.angle_deg, [[20.0, 45.0], [60.0, 85.0]], atol=1e-6)
    np.testing.assert_allclose(pm.translation_A, [[0.0, 1.5], [0.0, 3.5]])
    assert pm.occupancy is None and pm.counts.tolist() == [2, 2]
    assert pm.movers()[0] == 1  # part 1 changes most between the clusters


def test_part_colours_are_distinct():
    for n in (3, 16, 40):
        c = part_colours(n)
        assert len(c) == n and len(set(c)) == n and all(len(x) == 7 and x.startswith("#") for x in c)
