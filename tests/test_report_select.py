"""The report's particle selection (:mod:`cryohet.analysis.report_select`) in a real browser.

A page holding only the section is loaded in headless Chromium with a scripted lasso in
the URL fragment (``#view=..&lasso=x0,y0,...``); the page writes what it would download
into ``#sel-result``. The rows must be those inside the polygon (even-odd rule, computed
here with numpy), and the ``ind.pkl`` bytes the JavaScript wrote must load with
``pickle.loads`` and with cryohet's safe loader to the original indices, byte for byte
what Python's own pickler writes.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pytest
from select_helpers import check_pickle, inside, lasso, result

from cryohet.analysis.htmlcheck import check_html
from cryohet.analysis.report_select import SELECT_CSS, SelectData, cluster_colours, select_section

CENTRES = np.array([[-6.0, 0.0], [0.0, 5.0], [6.0, -1.0]])


def page(tmp: Path, d: SelectData) -> Path:
    path = tmp / "select.html"
    path.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><style>"
        + SELECT_CSS
        + "</style></head><body><main>"
        + select_section(d)
        + "</main></body></html>",
        encoding="utf-8",
    )
    return path


def around(centre, r: float) -> np.ndarray:
    """A 12-gon of radius ``r`` (a lasso is not a box)."""
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    return np.column_stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)])


@pytest.fixture(scope="module")
def blobs() -> SelectData:
    """300 shown points (a subsample of a 1000-particle run, as above POINT_LIMIT), three
    separated clusters; original indices far from the rows (a run trained with --ind),
    a UMAP of 120 of the points."""
    rng = np.random.default_rng(3)
    rows = np.sort(rng.choice(1000, size=300, replace=False))
    labels = rng.integers(0, 3, size=300)
    xy = (CENTRES[labels] + rng.normal(scale=0.5, size=(300, 2))).astype(np.float32)
    umap_pos = np.sort(rng.choice(300, size=120, replace=False))
    umap_xy = (xy[umap_pos] * np.float32(-2.0) + np.float32(10.0)).astype(np.float32)
    return SelectData(
        run="/data/run one",
        n_run=1000,
        rows=rows,
        pca_xy=xy,
        pca_axes=("PC1 (50.0 %)", "PC2 (20.0 %)"),
        labels=labels,
        colours=cluster_colours(3),
        original_index=70_000 + 3 * rows,
        umap_pos=umap_pos,
        umap_xy=umap_xy,
        notes=["subsample"],
    )


def test_section_is_self_contained(blobs, tmp_path):
    path = page(tmp_path, blobs)
    problems = [p for p in check_html(path) if p != "no images"]
    assert problems == []
    text = html.unescape(path.read_text())
    assert "cryohet select '/data/run one' --indices selection.txt --out subset.star" in text


def test_lasso_around_a_cluster_gives_its_rows_and_original_indices(blobs, tmp_path):
    poly = around(CENTRES[1], 3.2)
    out = result(page(tmp_path, blobs), "view=pca&" + lasso(poly))
    want = inside(poly, blobs.pca_xy)
    assert set(np.flatnonzero(want)) == set(np.flatnonzero(blobs.labels == 1))  # the cluster, nothing else
    np.testing.assert_array_equal(out["rows"], blobs.rows[want])
    np.testing.assert_array_equal(out["orig"], blobs.original_index[want])
    assert out["count"] == want.sum() and out["text"] == f"{want.sum()} of 1,000 particles selected"
    check_pickle(out["pkl"], blobs.original_index[want], tmp_path)
    lines = out["txt"].splitlines()
    assert lines[0].startswith("#") and [int(v) for v in lines[2:]] == blobs.rows[want].tolist()


def test_shift_adds_and_alt_removes(blobs, tmp_path):
    a, b, cut = around(CENTRES[0], 3.2), around(CENTRES[2], 3.2), around(CENTRES[2], 0.7)
    frag = "view=pca&" + "&".join([lasso(a), lasso(b, "add:"), lasso(cut, "remove:")])
    out = result(page(tmp_path, blobs), frag)
    want = (inside(a, blobs.pca_xy) | inside(b, blobs.pca_xy)) & ~inside(cut, blobs.pca_xy)
    assert 0 < inside(cut, blobs.pca_xy).sum() < (blobs.labels == 2).sum()
    np.testing.assert_array_equal(out["rows"], blobs.rows[want])
    check_pickle(out["pkl"], blobs.original_index[want], tmp_path)


def test_mouse_drags_with_modifier_keys(blobs, tmp_path):
    """The same through pointer events on the canvas (drag; Shift-drag adds; Alt-drag removes):
    the polygons the page built from the pointer positions select what the even-odd rule says."""
    a, b, cut = around(CENTRES[1], 3.2), around(CENTRES[2], 3.2), around(CENTRES[2], 0.7)
    drags = [lasso(a), lasso(b, "add:"), lasso(cut, "remove:")]
    frag = "view=pca&" + "&".join(d.replace("lasso=", "drag=") for d in drags)
    out = result(page(tmp_path, blobs), frag)
    drawn = [np.array(p) for p in out["dragged"]]
    assert len(drawn) == 3
    for given, got in zip((a, b, cut), drawn):
        np.testing.assert_allclose(got, given, atol=0.05)  # to a fraction of a screen pixel
    xy = blobs.pca_xy
    want = (inside(drawn[0], xy) | inside(drawn[1], xy)) & ~inside(drawn[2], xy)
    assert set(np.flatnonzero(inside(drawn[0], xy))) == set(np.flatnonzero(blobs.labels == 1))
    np.testing.assert_array_equal(out["rows"], blobs.rows[want])
    check_pickle(out["pkl"], blobs.original_index[want], tmp_path)


def test_umap_view_selects_among_its_points(blobs, tmp_path):
    poly = np.array([[-100.0, -100.0], [100.0, -100.0], [100.0, 100.0], [-100.0, 100.0]])
    out = result(page(tmp_path, blobs), "view=umap&" + lasso(poly))
    assert out["view"] == "umap"
    np.testing.assert_array_equal(out["rows"], blobs.rows[blobs.umap_pos])


def test_large_selection_pickle(tmp_path):
    """70 000 particles selected: the shape needs a 4-byte int in the pickle, the data bytes >= 0x80."""
    n = 70_000
    rng = np.random.default_rng(0)
    d = SelectData(
        run="run",
        n_run=n,
        rows=np.arange(n),
        pca_xy=rng.normal(size=(n, 2)).astype(np.float32),
        pca_axes=("PC1", "PC2"),
        labels=np.zeros(n, dtype=np.int64),
        colours=cluster_colours(1),
        original_index=np.arange(n) * 2 + 5,
    )
    poly = np.array([[-50.0, -50.0], [50.0, -50.0], [50.0, 50.0], [-50.0, 50.0]])
    out = result(page(tmp_path, d), lasso(poly))
    assert out["count"] == n and out["text"] == "70,000 of 70,000 particles selected"
    check_pickle(out["pkl"], d.original_index, tmp_path)


STAR = """# version 30001

data_optics

loop_
_rlnOpticsGroup #1
_rlnOpticsGroupName #2
_rlnAmplitudeContrast #3
_rlnSphericalAberration #4
_rlnVoltage #5
_rlnImagePixelSize #6
_rlnImageSize #7
_rlnImageDimensionality #8
1 opticsGroup1 0.1 2.7 300.0 1.5 64 2
2 opticsGroup2 0.1 2.7 300.0 1.5 64 2

# version 30001

data_particles

loop_
_rlnImageName #1
_rlnMicrographName #2
_rlnCoordinateX #3
_rlnCoordinateY #4
_rlnDefocusU #5
_rlnDefocusV #6
_rlnDefocusAngle #7
_rlnOpticsGroup #8
_rlnClassNumber #9
_rlnRandomSubset #10
"""


@pytest.fixture(scope="module")
def star_run(tmp_path_factory) -> dict:
    """A RELION source of 30 particles (two optics groups by parity, micrographs, classes,
    half sets) and a run trained with --ind on its 15 even rows (group 1) then rows 1 and 3
    (group 2); latents: run rows 0..9 at (0, 0), rows 10..16 at (10, 0)."""
    import yaml

    from cryohet.io.cryodrgn import write_ind_pkl

    tmp = tmp_path_factory.mktemp("starrun")
    rows = [
        f"{i + 1:06d}@stack.mrcs mic_{i % 4}.mrc {100 + i}.0 {200 + 2 * i}.0 {15000 + 10 * i}.0 "
        f"{14800 + 10 * i}.5 {i % 180}.25 {1 + i % 2} {1 + i % 3} {1 + i % 2}"
        for i in range(30)
    ]
    (tmp / "particles.star").write_text(STAR + "\n".join(rows) + "\n")
    ind = np.r_[np.arange(0, 30, 2), 1, 3]
    write_ind_pkl(tmp / "ind.pkl", ind)
    run = tmp / "run"
    run.mkdir()
    data = {"path": str(tmp / "particles.star"), "ind": str(tmp / "ind.pkl")}
    (run / "config.yaml").write_text(yaml.safe_dump({"method": "homogeneous", "method_version": 1, "data": data}))
    rng = np.random.default_rng(1)
    z = (np.repeat([[0.0, 0.0], [10.0, 0.0]], [10, 7], axis=0) + rng.normal(0, 0.3, (17, 2))).astype(np.float32)
    np.save(run / "latents.npy", z)
    return {"run": run, "ind": ind, "z": z, "source": tmp / "particles.star"}


@pytest.mark.parametrize(("centre", "want"), [((0.0, 0.0), np.arange(10)), ((10.0, 0.0), np.arange(10, 17))])
def test_star_download_is_what_cryohet_select_writes(star_run, tmp_path, centre, want):
    """subset.star from the page: the selected particles with every original column, the optics
    groups they use (one group for the first blob, both for the second), readable by starfile and
    read_star; the same tables as ``cryohet select --indices selection.txt --out subset.star``."""
    import starfile

    from cryohet.analysis.config import SelectConfig
    from cryohet.analysis.report_select import add_particle_source
    from cryohet.analysis.select import select_particles
    from cryohet.io.star import read_star, read_star_tables

    z = star_run["z"]
    d = add_particle_source(
        SelectData(
            run=str(star_run["run"]),
            n_run=len(z),
            rows=np.arange(len(z)),
            pca_xy=z,
            pca_axes=("z0", "z1"),
            labels=np.zeros(len(z), dtype=np.int64),
            colours=cluster_colours(1),
        ),
        star_run["run"],
    )
    assert d.star is not None and d.notes == []
    poly = around(centre, 2.5)
    out = result(page(tmp_path, d), lasso(poly))
    np.testing.assert_array_equal(out["rows"], want)
    np.testing.assert_array_equal(inside(poly, z), np.isin(np.arange(len(z)), want))
    check_pickle(out["pkl"], star_run["ind"][want], tmp_path)  # indices into the full 30-particle stack
    (tmp_path / "selection.txt").write_text(out["txt"])
    select_particles(SelectConfig(run=star_run["run"], indices=tmp_path / "selection.txt", out=tmp_path / "ref.star"))
    (tmp_path / "dl").mkdir()
    ours = tmp_path / "dl" / "subset.star"
    ours.write_text(out["star"])
    assert out["star"] == d.star.text(want)
    parts, optics = read_star_tables(ours)
    ref_parts, ref_optics = read_star_tables(tmp_path / "ref.star")
    assert optics.equals(ref_optics) and len(optics) == (1 if centre[0] == 0 else 2)
    cols = [c for c in ref_parts.columns if c != "rlnImageName"]
    assert list(parts.columns) == list(ref_parts.columns) and parts[cols].equals(ref_parts[cols])
    src, _ = read_star_tables(star_run["source"])
    mine = src.iloc[star_run["ind"][want]].reset_index(drop=True)
    for c in ("rlnMicrographName", "rlnCoordinateX", "rlnClassNumber", "rlnRandomSubset", "rlnDefocusV"):
        assert parts[c].tolist() == mine[c].tolist()  # the source's own values
    assert len(starfile.read(ours)["particles"]) == len(want)
    a = read_star(ours)
    assert {str(f) for f in a.image_files} == {str(star_run["source"].parent / "stack.mrcs")}
    np.testing.assert_array_equal(a.image_index, star_run["ind"][want])
