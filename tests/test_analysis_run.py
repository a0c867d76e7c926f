"""``cryohet analyze`` end to end on a real (tiny) run: a simulated assembly and the PCA baseline.

One analysis runs per module (with --gt and --path); the tests check what it wrote: the
listed files, valid MRCs decoded at the right latents, an untouched run, a self-contained
report that headless Chromium renders, and one-line errors for bad input.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryohet.analysis.analyze import analyze_run
from cryohet.analysis.config import AnalyzeConfig
from cryohet.analysis.htmlcheck import check_html, dump_dom, parse_report
from cryohet.cli.app import main
from cryohet.io.mrc import read_mrc_header, read_volume

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
K, STEPS, PATH = 4, 3, (0, 5)


def _checksums(run: Path) -> dict[str, str]:
    """Every file of the run except its log and the analysis output."""
    out = {}
    for f in sorted(run.rglob("*")):
        rel = f.relative_to(run)
        if f.is_file() and rel.parts[0] != "analyze" and rel.name != "run.log":
            out[rel.as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def pca_run(tmp_path_factory) -> dict:
    from cryohet.io.source import ParticleSource
    from cryohet.methods.baselines import PCAConfig, train_pca
    from cryohet.simulate.config import SimulationConfig
    from cryohet.simulate.simulator import simulate_dataset

    root = tmp_path_factory.mktemp("analysis")
    data = simulate_dataset(
        SimulationConfig(preset="assembly", out=root / "data", n_images=160, box=24, apix=15.0, n_states=4, seed=0)
    )
    run = train_pca(
        PCAConfig(data=ParticleSource(path=data / "particles.star"), out=str(root / "run"), components=2, iterations=2)
    )
    before = _checksums(run)
    log_before = (run / "run.log").read_text() if (run / "run.log").exists() else ""
    res = analyze_run(
        AnalyzeConfig(run=run, k=K, pcs=2, pc_steps=STEPS, path=PATH, path_steps=STEPS, umap=False, gt=data)
    )
    return {"run": run, "data": data, "res": res, "before": before, "log_before": log_before}


def test_analysis_leaves_run_files_unchanged_and_logs(pca_run):
    run = pca_run["run"]
    assert _checksums(run) == pca_run["before"]
    log = (run / "run.log").read_text()
    assert log.startswith(pca_run["log_before"]) and "analyze" in log[len(pca_run["log_before"]) :]


def test_listed_files_exist(pca_run):
    out = pca_run["run"] / "analyze"
    expected = [
        "report.html",
        "summary.json",
        "analyze.log",
        "pca.npz",
        "pca_coords.npy",
        f"kmeans{K}/labels.npy",
        f"kmeans{K}/centres.txt",
        f"kmeans{K}/centres_ind.txt",
        f"kmeans{K}/centres_z.txt",
        f"kmeans{K}/movie.cxc",
        "pc1/movie.cxc",
        "pc2/latents.txt",
        "path_0_5/movie.cxc",
        f"kmeans{K}/movie.gif",
        "pc1/movie.gif",
        "path_0_5/movie.gif",
        "eval/metrics.json",
        "plots/latent_pca.png",
        "plots/training.png",
        f"plots/kmeans{K}.png",
    ]
    expected += [f"kmeans{K}/vol_{i:03d}.mrc" for i in range(K)]
    expected += [f"{s}/vol_{i:03d}.mrc" for s in ("pc1", "pc2", "path_0_5") for i in range(STEPS)]
    missing = [e for e in expected if not (out / e).is_file()]
    assert not missing
    assert not (out / "parts").exists()  # the PCA baseline has no parts
    assert not (out / f"kmeans{K}/vol_{K:03d}.mrc").exists()
    script = (out / "pc1" / "movie.cxc").read_text()
    assert "open vol_*.mrc vseries true" in script and "vseries play #1" in script and "volume #1 level" in script


def test_cluster_volumes_are_the_method_maps_at_the_representatives(pca_run):
    from cryohet.methods.base import load_run

    run, res = pca_run["run"], pca_run["res"]
    model = load_run(run)
    z = model.latents
    labels = np.load(run / "analyze" / f"kmeans{K}" / "labels.npy")
    reps = np.loadtxt(run / "analyze" / f"kmeans{K}" / "centres_ind.txt").astype(int)
    assert labels.shape == (len(z),) and set(np.unique(labels)) == set(range(K))
    np.testing.assert_array_equal(reps, res.kmeans.representatives)
    for i, r in enumerate(reps):
        path = run / "analyze" / f"kmeans{K}" / f"vol_{i:03d}.mrc"
        vol, info = read_volume(path)
        assert vol.shape == (model.box,) * 3
        assert read_mrc_header(path).apix == pytest.approx(model.apix)
        np.testing.assert_allclose(vol, model.volume(z[r]), rtol=1e-5, atol=1e-5 * float(np.abs(vol).max()))
        assert labels[r] == i
    # the path ends are the two particles' maps
    first, _ = read_volume(run / "analyze" / "path_0_5" / "vol_000.mrc")
    last, _ = read_volume(run / "analyze" / "path_0_5" / f"vol_{STEPS - 1:03d}.mrc")
    np.testing.assert_allclose(first, model.volume(z[0]), atol=1e-4 * float(np.abs(first).max()))
    np.testing.assert_allclose(last, model.volume(z[5]), atol=1e-4 * float(np.abs(last).max()))


def test_pc_traversal_rows_follow_the_percentiles(pca_run):
    run, res = pca_run["run"], pca_run["res"]
    rows = np.loadtxt(run / "analyze" / "pc1" / "latents.txt")[:, 0].astype(int)
    coords = np.load(run / "analyze" / "pca_coords.npy")
    assert np.all(np.diff(coords[rows, 0]) >= 0)  # maps ordered along PC1
    assert coords[rows[0], 0] < np.percentile(coords[:, 0], 25) < np.percentile(coords[:, 0], 75) < coords[rows[-1], 0]
    assert res.pca.explained_ratio[0] >= res.pca.explained_ratio[1]


def test_report_is_self_contained_html(pca_run):
    report = pca_run["run"] / "analyze" / "report.html"
    assert check_html(report) == []
    rep = parse_report(report)
    assert len(rep.images) >= 6 and all(src.startswith("data:image/png;base64,") for src in rep.images)
    assert {"run", "latent", "clusters", "select", "traversals", "evaluation", "files"} <= set(rep.sections)
    assert "parts" not in rep.sections
    text = report.read_text()
    ceiling = (24 // 2 - 1) / 24
    assert f"{ceiling:.4f}" in text and "mean AUC" in text
    assert str(pca_run["data"] / "particles.star") in text  # data source
    assert "mean_sq_residual" in text or "training" in text


def test_report_renders_in_headless_chromium(pca_run, tmp_path):
    """Not skipped: ``make test`` installs chromium (``make browser``, the Debian package)."""
    from cryohet.analysis.htmlcheck import blank_reason

    assert CHROMIUM.exists(), "the report test needs /usr/bin/chromium: run `make browser` as root (apt-get)"
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "check_report.py"),
            str(pca_run["run"] / "analyze" / "report.html"),
            "--screenshot",
            str(shot),
            "--chromium",
            str(CHROMIUM),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert blank_reason(shot) is None
    dom = dump_dom(pca_run["run"] / "analyze" / "report.html", str(CHROMIUM))  # the selection's script ran
    assert '<section id="select" data-ready="1">' in dom and "0 of 160 particles selected" in dom
    assert dom.count("<canvas") == 2 and dom.count('id="sel-legend"><span>') == 1


def test_lasso_downloads_match_cryohet_select(pca_run, tmp_path):
    """A scripted lasso around one k-means cluster in the report: its ind.pkl, selection.txt
    and subset.star are the particles inside the polygon, and subset.star holds what
    ``cryohet select --indices selection.txt --out subset.star`` writes (stack paths absolute)."""
    import starfile
    from scipy.spatial import ConvexHull
    from select_helpers import check_pickle, inside, lasso, result

    from cryohet.analysis.config import SelectConfig
    from cryohet.analysis.report_select import select_data
    from cryohet.analysis.select import select_particles
    from cryohet.io.star import read_star, read_star_tables

    out = pca_run["run"] / "analyze"
    xy = np.load(out / "pca_coords.npy")[:, :2]
    labels = np.load(out / f"kmeans{K}" / "labels.npy")
    c = int(np.argmax(np.bincount(labels)))
    pts = xy[labels == c].astype(np.float64)
    hull = pts[ConvexHull(pts).vertices]
    poly = hull.mean(0) + 1.03 * (hull - hull.mean(0))  # the cluster with a margin, as a hand would draw it
    page = result(out / "report.html", "view=pca&" + lasso(poly))
    want = np.flatnonzero(inside(poly, xy))
    assert set(np.flatnonzero(labels == c)) <= set(want) and len(want) < len(xy)
    assert page["rows"] == want.tolist() and page["orig"] == want.tolist()  # trained without --ind
    check_pickle(page["pkl"], want, tmp_path)

    (tmp_path / "selection.txt").write_text(page["txt"])
    ref = select_particles(
        SelectConfig(run=pca_run["run"], indices=tmp_path / "selection.txt", out=tmp_path / "select.star")
    )
    np.testing.assert_array_equal(ref.rows, want)
    ours = tmp_path / "page" / "subset.star"  # saved elsewhere than the report: absolute stack paths
    ours.parent.mkdir()
    ours.write_text(page["star"])
    assert len(starfile.read(ours)["particles"]) == len(want)
    parts, optics = read_star_tables(ours)
    ref_parts, ref_optics = read_star_tables(tmp_path / "select.star")
    assert list(parts.columns) == list(ref_parts.columns)
    cols = [col for col in parts.columns if col != "rlnImageName"]
    assert parts[cols].equals(ref_parts[cols]) and optics.equals(ref_optics)
    src, _ = read_star_tables(pca_run["data"] / "particles.star")
    same = [col for col in src.columns if col in parts.columns and col != "rlnImageName"]
    assert parts[same].equals(src.iloc[want][same].reset_index(drop=True))  # the source's own values
    a, b = read_star(ours), read_star(tmp_path / "select.star")
    assert [a.image_files[i] for i in a.file_index] == [b.image_files[i] for i in b.file_index]
    np.testing.assert_array_equal(a.image_index, b.image_index)
    assert page["star"] == select_data(pca_run["res"]).star.text(want)  # the page writes what Python would


def test_select_data_of_a_large_run_is_a_subsample(pca_run, monkeypatch):
    """Above POINT_LIMIT particles the page holds a random subsample (and says so); the
    STAR rows are embedded up to STAR_LIMIT only."""
    import cryohet.analysis.report_select as rs

    full = rs.select_data(pca_run["res"])
    assert len(full.rows) == 160 and full.star is not None and full.notes == []
    np.testing.assert_array_equal(full.original_index, np.arange(160))
    monkeypatch.setattr(rs, "POINT_LIMIT", 50)
    monkeypatch.setattr(rs, "STAR_LIMIT", 100)
    d = rs.select_data(pca_run["res"])
    assert len(d.rows) == 50 and np.all(np.diff(d.rows) > 0) and d.star is None
    np.testing.assert_array_equal(d.pca_xy, np.load(pca_run["run"] / "analyze" / "pca_coords.npy")[d.rows, :2])
    np.testing.assert_array_equal(d.labels, pca_run["res"].kmeans.labels[d.rows])
    assert any("random subsample of 50" in n for n in d.notes) and any("more than 100" in n for n in d.notes)
    assert rs.payload(d)["rows"] is not None and rs.payload(full)["rows"] is None


def test_check_report_fails_on_a_blank_page(tmp_path):
    from cryohet.analysis.htmlcheck import blank_reason

    page = tmp_path / "blank.html"
    page.write_text("<!DOCTYPE html><html><body></body></html>")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_report.py"), str(page), "--no-browser"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "no images" in proc.stderr
    from PIL import Image

    Image.new("RGB", (200, 300), "white").save(tmp_path / "white.png")
    assert "blank" in (blank_reason(tmp_path / "white.png") or "")
    assert "no screenshot" in (blank_reason(tmp_path / "missing.png") or "")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def test_bad_run_directories_give_one_line(tmp_path, capsys, pca_run):
    assert main(["analyze", str(tmp_path / "nowhere")]) == 1
    assert "not a run directory" in _error_line(capsys)
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.yaml").write_text((pca_run["run"] / "config.yaml").read_text())
    assert main(["analyze", str(incomplete), "--no-umap"]) == 1
    assert "unfinished" in _error_line(capsys)  # no COMPLETED stamp
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.yaml").write_text("method: cryofancy\nmethod_version: 1\n")
    assert main(["analyze", str(unknown)]) == 1
    assert "unknown method 'cryofancy'" in _error_line(capsys)
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "config.yaml").write_text("method: pca\nmethod_version: 99\n")
    assert main(["analyze", str(newer)]) == 1
    assert "newer" in _error_line(capsys)


def test_bad_gt_folder_gives_one_line(tmp_path, capsys, pca_run):
    gt = tmp_path / "gt"
    gt.mkdir()
    assert main(["analyze", str(pca_run["run"]), "--gt", str(gt), "--out", str(tmp_path / "a")]) == 1
    assert "labels.npy" in _error_line(capsys)
    np.save(gt / "labels.npy", np.zeros(160, dtype=np.int64))
    assert main(["analyze", str(pca_run["run"]), "--gt", str(gt), "--out", str(tmp_path / "a")]) == 1
    assert "state_000.mrc" in _error_line(capsys)
    assert not (tmp_path / "a").exists()  # checked before any work


def test_summary_and_log_record_the_command(pca_run):
    import json

    out = pca_run["run"] / "analyze"
    summary = json.loads((out / "summary.json").read_text())
    cmd = summary["command"]
    assert cmd.startswith(f"cryohet analyze {pca_run['run']}") and f"--k {K}" in cmd and "--no-umap" in cmd
    assert "--path 0 5" in cmd and f"--gt {pca_run['data']}" in cmd
    assert summary["method"] == "pca" and summary["kmeans"]["k"] == K
    log = (out / "analyze.log").read_text()
    assert cmd in log and "[1/" in log and "analysis done" in log


def test_a_failing_evaluation_leaves_a_note_not_a_crash(pca_run, tmp_path, monkeypatch):
    import cryohet.evaluation.evaluate as evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation exploded\nsecond line")

    monkeypatch.setattr(evaluate, "evaluate_run", broken)
    res = analyze_run(
        AnalyzeConfig(run=pca_run["run"], out=tmp_path / "a", k=2, pcs=0, umap=False, volumes=False, gt=pca_run["data"])
    )
    assert res.evaluation is None and "evaluation exploded second line" in res.eval_note
    report = tmp_path / "a" / "report.html"
    assert check_html(report) == []
    assert "evaluation" in parse_report(report).sections and "could not be computed" in report.read_text()
    assert not (tmp_path / "a" / "eval").exists()


def test_out_cannot_be_the_run_itself(pca_run, capsys):
    assert main(["analyze", str(pca_run["run"]), "--out", str(pca_run["run"]), "--no-umap"]) == 1
    assert "run directory itself" in _error_line(capsys)
