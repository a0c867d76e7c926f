"""``cryohet select``: chosen particles written back in the original format with original indices.

Run directories here are the selection contract only (config.yaml naming the method and
the particle file, latents.npy); the latents are constructed so the expected rows are
known. Round trips read the written files back and compare them with the source rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import starfile
import yaml

from cryohet.analysis.clustering import kmeans_latents
from cryohet.analysis.config import SelectConfig
from cryohet.analysis.select import choose_rows, parse_latent_box, select_particles
from cryohet.cli.app import main
from cryohet.errors import ConfigError, InputError
from cryohet.io.cryodrgn import write_ind_pkl
from cryohet.io.safe_pickle import load_pickle

N = 30

STAR = """
# version 30001

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


def _write_star(path, n=N):
    rows = [
        f"{i + 1:06d}@stack.mrcs mic_{i % 4}.mrc {100 + i}.0 {200 + 2 * i}.0 {15000 + 10 * i}.0 "
        f"{14800 + 10 * i}.0 {i % 180}.0 {1 + i % 2} {1 + i % 3} {1 + i % 2}"
        for i in range(n)
    ]
    path.write_text(STAR.lstrip() + "\n".join(rows) + "\n")
    return path


def _blob_latents(n=N, seed=0):
    """Three separated blobs along x: rows 0,3,6.. / 1,4,7.. / 2,5,8.."""
    rng = np.random.default_rng(seed)
    which = np.arange(n) % 3
    z = np.column_stack([which * 10.0, np.zeros(n)]) + rng.normal(0, 0.3, size=(n, 2))
    return z.astype(np.float32), which


def _run(tmp_path, data: dict, latents: np.ndarray, name="run"):
    run = tmp_path / name
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"method": "homogeneous", "method_version": 1, "data": data}))
    np.save(run / "latents.npy", latents)
    return run


def _analyze_clusters(run, z, k):
    """What ``cryohet analyze --k K`` leaves for select: ``analyze/kmeans{k}/labels.npy``."""
    (run / "analyze" / f"kmeans{k}").mkdir(parents=True)
    np.save(run / "analyze" / f"kmeans{k}" / "labels.npy", kmeans_latents(z, k, seed=0).labels)


def test_star_clusters_roundtrip_keeps_columns_and_optics(tmp_path):
    src = _write_star(tmp_path / "particles.star")
    z, which = _blob_latents()
    run = _run(tmp_path, {"path": str(src)}, z)
    _analyze_clusters(run, z, 3)
    sel = select_particles(SelectConfig(run=run, out=tmp_path / "sub.star", clusters=[1], k=3))
    blob = which[sel.rows[0]]
    np.testing.assert_array_equal(sel.rows, np.flatnonzero(which == blob))  # one whole blob
    original = starfile.read(src)
    written = starfile.read(tmp_path / "sub.star")
    p0, p1 = original["particles"], written["particles"]
    assert len(p1) == len(sel.rows)
    for col in (
        "rlnMicrographName",
        "rlnCoordinateX",
        "rlnCoordinateY",
        "rlnClassNumber",
        "rlnRandomSubset",
        "rlnDefocusU",
        "rlnOpticsGroup",
    ):
        np.testing.assert_array_equal(p1[col].to_numpy(), p0[col].to_numpy()[sel.rows], err_msg=col)
    assert [n.split("@")[0] for n in p1["rlnImageName"]] == [f"{i + 1:06d}" for i in sel.rows]
    assert sorted(written["optics"]["rlnOpticsGroup"].tolist()) == [1, 2]
    assert set(written["optics"]["rlnOpticsGroupName"]) == {"opticsGroup1", "opticsGroup2"}


def test_ind_pkl_maps_to_the_original_stack_through_a_training_subset(tmp_path):
    src = _write_star(tmp_path / "particles.star")
    ind = np.array([29, 3, 4, 10, 11, 12, 20, 21, 25, 27])  # the run was trained on these particles
    write_ind_pkl(tmp_path / "train_ind.pkl", ind)
    z = np.zeros((len(ind), 1), np.float32)
    z[[2, 5, 7], 0] = 5.0
    run = _run(tmp_path, {"path": str(src), "ind": str(tmp_path / "train_ind.pkl")}, z)
    sel = select_particles(SelectConfig(run=run, out=tmp_path / "sel.pkl", latent_box="z0:1:"))
    np.testing.assert_array_equal(sel.rows, [2, 5, 7])
    np.testing.assert_array_equal(load_pickle(tmp_path / "sel.pkl"), ind[[2, 5, 7]])
    inv = select_particles(SelectConfig(run=run, out=tmp_path / "inv.pkl", latent_box="z0:1:", complement=True))
    assert sorted(np.r_[inv.original_index, sel.original_index].tolist()) == sorted(ind.tolist())


def test_reuses_the_clusters_analyze_wrote(tmp_path):
    src = _write_star(tmp_path / "particles.star")
    z, _ = _blob_latents()
    run = _run(tmp_path, {"path": str(src)}, z)
    labels = np.arange(N) % 5  # not what k-means would give: proves the file is used
    (run / "analyze" / "kmeans5").mkdir(parents=True)
    np.save(run / "analyze" / "kmeans5" / "labels.npy", labels)
    sel = select_particles(SelectConfig(run=run, out=tmp_path / "a.pkl", clusters=[0, 4], k=5))
    np.testing.assert_array_equal(sel.rows, np.flatnonzero(np.isin(labels, [0, 4])))
    # without --k: the one clustering analyze wrote (not a k-means with some default k)
    sel = select_particles(SelectConfig(run=run, out=tmp_path / "b.pkl", clusters=[0, 4]))
    np.testing.assert_array_equal(sel.rows, np.flatnonzero(np.isin(labels, [0, 4])))
    # a clustering the user never looked at is refused, not recomputed
    with pytest.raises(ConfigError, match=r"no k-means clustering with k=8 .*k=5.*cryohet analyze"):
        select_particles(SelectConfig(run=run, out=tmp_path / "c.pkl", clusters=[0], k=8))
    (run / "analyze" / "kmeans8").mkdir()
    np.save(run / "analyze" / "kmeans8" / "labels.npy", np.arange(N) % 8)
    with pytest.raises(ConfigError, match=r"several clusterings \(k=5, k=8\); say which with --k"):
        select_particles(SelectConfig(run=run, out=tmp_path / "c.pkl", clusters=[0]))
    bare = _run(tmp_path, {"path": str(src)}, z, name="bare")
    with pytest.raises(ConfigError, match="holds no k-means clusters"):
        select_particles(SelectConfig(run=bare, out=tmp_path / "d.pkl", clusters=[0]))


def test_latent_box_on_pcs_and_indices_file(tmp_path):
    src = _write_star(tmp_path / "particles.star")
    z, which = _blob_latents()
    run = _run(tmp_path, {"path": str(src)}, z)
    cfg = SelectConfig(run=run, out=tmp_path / "x.pkl", latent_box="pc1:-3:3")
    rows = choose_rows(cfg, z)
    np.testing.assert_array_equal(rows, np.flatnonzero(which == 1))  # the middle blob sits at PC1 ~ 0
    (tmp_path / "rows.txt").write_text("7\n3 3\n12\n")
    sel = select_particles(SelectConfig(run=run, out=tmp_path / "i.star", indices=tmp_path / "rows.txt"))
    np.testing.assert_array_equal(sel.rows, [3, 7, 12])
    with pytest.raises(InputError, match="out of range"):
        (tmp_path / "bad.txt").write_text(f"{N}\n")
        select_particles(SelectConfig(run=run, out=tmp_path / "j.star", indices=tmp_path / "bad.txt"))


def test_parse_latent_box():
    assert parse_latent_box("pc1:-1:2, z0::3") == [("pc", 0, -1.0, 2.0), ("z", 0, -np.inf, 3.0)]
    for bad in ("pc0:0:1", "pc1:2:1", "q1:0:1", "pc1:a:b", ""):
        with pytest.raises(ConfigError):
            parse_latent_box(bad)


def test_cs_subset_keeps_original_rows(tmp_path, shared_fixtures):
    from cryohet.io.cryosparc import load_cs

    src = shared_fixtures / "cryosparc_P12_J24_001_particles.cs"
    n = len(load_cs(src))
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, 2)).astype(np.float32)
    z[::7, 0] += 50.0  # every 7th particle far along z0
    run = _run(tmp_path, {"path": str(src)}, z)
    sel = select_particles(SelectConfig(run=run, out=tmp_path / "subset.cs", latent_box="z0:25:"))
    np.testing.assert_array_equal(sel.rows, np.arange(0, n, 7))
    out = np.load(tmp_path / "subset.cs", allow_pickle=False)
    src_arr = load_cs(src)
    assert out.dtype == src_arr.dtype
    np.testing.assert_array_equal(out, src_arr[sel.rows])  # every field of the original rows
    select_particles(SelectConfig(run=run, out=tmp_path / "subset.pkl", latent_box="z0:25:"))
    np.testing.assert_array_equal(load_pickle(tmp_path / "subset.pkl"), np.arange(0, n, 7))


def test_star_fixture_with_six_optics_groups(tmp_path, shared_fixtures):
    src = shared_fixtures / "relion31.6opticsgroups.star"
    original = starfile.read(src)
    n = len(original["particles"])
    z = np.arange(n, dtype=np.float32)[:, None]
    run = _run(tmp_path, {"path": str(src)}, z)
    sel = select_particles(SelectConfig(run=run, out=tmp_path / "sub.star", latent_box=f"z0:{n - 40}:"))
    written = starfile.read(tmp_path / "sub.star")
    p0, p1 = original["particles"], written["particles"]
    np.testing.assert_array_equal(p1["rlnMicrographName"], p0["rlnMicrographName"].to_numpy()[sel.rows])
    np.testing.assert_allclose(p1["rlnCoordinateX"], p0["rlnCoordinateX"].to_numpy()[sel.rows])
    groups = set(p1["rlnOpticsGroup"])
    assert groups == set(written["optics"]["rlnOpticsGroup"])
    assert groups <= set(original["optics"]["rlnOpticsGroup"])


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def test_cli_refuses_inputs_and_bad_requests(tmp_path, capsys):
    src = _write_star(tmp_path / "particles.star")
    z, _ = _blob_latents()
    run = _run(tmp_path, {"path": str(src)}, z)
    _analyze_clusters(run, z, 3)
    before = src.read_bytes()
    assert main(["select", str(run), "--clusters", "0", "--k", "3", "--out", str(src)]) == 1
    assert "overwrite the input" in _one_error(capsys) and src.read_bytes() == before
    assert main(["select", str(run), "--clusters", "0", "--k", "3", "--out", str(tmp_path / "x.cs")]) == 1
    assert "needs a cryoSPARC .cs" in _one_error(capsys)
    assert main(["select", str(run), "--clusters", "7", "--k", "3", "--out", str(tmp_path / "x.star")]) == 1
    assert "no cluster 7" in _one_error(capsys)
    assert main(["select", str(run), "--latent-box", "z0:1000:", "--out", str(tmp_path / "x.star")]) == 1
    assert "empty" in _one_error(capsys)
    assert main(["select", str(run), "--out", str(tmp_path / "x.star")]) == 1
    assert "exactly one" in _one_error(capsys)
    assert main(["select", str(run), "--clusters", "0", "--out", str(tmp_path / "x.txt")]) == 1
    assert ".star, .cs or .pkl" in _one_error(capsys)
    assert main(["select", str(tmp_path / "nowhere"), "--clusters", "0", "--out", str(tmp_path / "x.star")]) == 1
    assert "not a run directory" in _one_error(capsys)
    assert not (tmp_path / "x.star").exists()


STACK_STAR = """
data_optics

loop_
_rlnOpticsGroup
_rlnOpticsGroupName
_rlnAmplitudeContrast
_rlnSphericalAberration
_rlnVoltage
_rlnImagePixelSize
_rlnImageSize
_rlnImageDimensionality
1 opticsGroup1 0.1 2.7 300.0 1.5 64 2

data_particles

loop_
_rlnImageName
_rlnMicrographName
_rlnDefocusU
_rlnDefocusV
_rlnDefocusAngle
_rlnOpticsGroup
"""


def _stack_of(name: str, folder) -> tuple[int, str]:
    """(0-based image index, resolved stack path) of an ``NNN@stack`` name written in ``folder``."""
    idx, stack = name.split("@", 1)
    return int(idx) - 1, str((folder / stack).resolve())


def test_star_with_several_stacks_maps_rows_to_their_images(tmp_path):
    """Particles of three stacks, interleaved and with gaps: every selected row of the subset
    (written into another folder, so stack paths are rewritten) is the same image as that
    row of the original file; ind.pkl holds the same rows."""
    src_dir = tmp_path / "project"
    (src_dir / "Extract").mkdir(parents=True)
    rng = np.random.default_rng(4)
    stacks = [f"Extract/mic_{m}.mrcs" for m in "abc"]
    names = [f"{1 + 2 * i + (i % 3):06d}@{stacks[(i * 7) % 3]}" for i in range(N)]
    lines = [f"{nm} mic_{i % 3}.mrc {15000 + 10 * i}.0 {14900 + 10 * i}.0 {i % 90}.0 1" for i, nm in enumerate(names)]
    src = src_dir / "particles.star"
    src.write_text(STACK_STAR.lstrip() + "\n".join(lines) + "\n")
    z = rng.normal(size=(N, 2)).astype(np.float32)
    run = _run(tmp_path, {"path": str(src)}, z)
    chosen = np.array([0, 2, 5, 6, 13, 14, 22, 29])
    (tmp_path / "rows.txt").write_text(" ".join(map(str, chosen[::-1])))  # any order: written in row order
    out = tmp_path / "elsewhere" / "subset.star"
    sel = select_particles(SelectConfig(run=run, out=out, indices=tmp_path / "rows.txt"))
    np.testing.assert_array_equal(sel.rows, chosen)
    written = starfile.read(out)["particles"]
    original = starfile.read(src)["particles"]
    assert len(written) == len(chosen)
    got = [_stack_of(nm, out.parent) for nm in written["rlnImageName"]]
    want = [_stack_of(original["rlnImageName"].iloc[r], src_dir) for r in chosen]
    assert got == want
    assert len({s for _, s in got}) == 3  # the subset spans all three stacks
    np.testing.assert_allclose(written["rlnDefocusU"], original["rlnDefocusU"].to_numpy()[chosen])
    np.testing.assert_array_equal(written["rlnMicrographName"], original["rlnMicrographName"].to_numpy()[chosen])
    select_particles(SelectConfig(run=run, out=tmp_path / "ind.pkl", indices=tmp_path / "rows.txt"))
    np.testing.assert_array_equal(load_pickle(tmp_path / "ind.pkl"), chosen)


def _split_cs(src, tmp_path):
    """A main .cs (uid, blob, alignments) and a shuffled passthrough (uid, ctf) from one file."""
    from cryohet.io.cryosparc import load_cs

    full = load_cs(src)
    main_fields = [f for f in full.dtype.names if f == "uid" or not f.startswith("ctf/")]
    pt_fields = [f for f in full.dtype.names if f == "uid" or f.startswith("ctf/")]
    main = np.empty(len(full), dtype=[(f, full.dtype[f]) for f in main_fields])
    for f in main_fields:
        main[f] = full[f]
    perm = np.random.default_rng(7).permutation(len(full))
    pt = np.empty(len(full), dtype=[(f, full.dtype[f]) for f in pt_fields])
    for f in pt_fields:
        pt[f] = full[f][perm]
    with open(tmp_path / "J5_particles.cs", "wb") as fh:
        np.save(fh, main)
    with open(tmp_path / "J5_passthrough.cs", "wb") as fh:
        np.save(fh, pt)
    return full, main, pt, tmp_path / "J5_particles.cs", tmp_path / "J5_passthrough.cs"


def test_cs_with_passthrough_roundtrip(tmp_path, shared_fixtures):
    """A .cs subset keeps the main rows unchanged and writes the passthrough rows of the same
    particles (matched on uid) beside it; .star and ind.pkl subsets map to the same rows."""
    full, main, pt, main_path, pt_path = _split_cs(shared_fixtures / "cryosparc_P12_J24_001_particles.cs", tmp_path)
    n = len(full)
    z = np.random.default_rng(1).normal(size=(n, 2)).astype(np.float32)
    z[5::11, 1] += 40.0  # every 11th particle from row 5 far along z1
    run = _run(tmp_path, {"path": str(main_path), "passthrough": str(pt_path)}, z)
    want = np.arange(5, n, 11)
    sel = select_particles(SelectConfig(run=run, out=tmp_path / "out" / "subset.cs", latent_box="z1:20:"))
    np.testing.assert_array_equal(sel.rows, want)
    got = np.load(tmp_path / "out" / "subset.cs", allow_pickle=False)
    assert got.dtype == main.dtype
    np.testing.assert_array_equal(got, main[want])
    assert sel.extra_files == (tmp_path / "out" / "subset_passthrough.cs",)
    got_pt = np.load(sel.extra_files[0], allow_pickle=False)
    assert got_pt.dtype == pt.dtype
    np.testing.assert_array_equal(got_pt["uid"], main["uid"][want])
    for f in pt.dtype.names:  # the passthrough rows are the original rows of these particles
        np.testing.assert_array_equal(got_pt[f], full[f][want], err_msg=f)
    select_particles(SelectConfig(run=run, out=tmp_path / "out" / "subset.star", latent_box="z1:20:"))
    star = starfile.read(tmp_path / "out" / "subset.star")["particles"]
    np.testing.assert_allclose(star["rlnDefocusU"], full["ctf/df1_A"][want], rtol=1e-6)  # from the passthrough
    np.testing.assert_array_equal([int(s.split("@")[0]) - 1 for s in star["rlnImageName"]], full["blob/idx"][want])
    select_particles(SelectConfig(run=run, out=tmp_path / "out" / "ind.pkl", latent_box="z1:20:"))
    np.testing.assert_array_equal(load_pickle(tmp_path / "out" / "ind.pkl"), want)
    before = pt_path.read_bytes()
    for out in (pt_path, tmp_path / "J5.cs"):  # J5.cs would put its passthrough rows over the input passthrough
        with pytest.raises(InputError, match="overwrite the input"):
            select_particles(SelectConfig(run=run, out=out, latent_box="z1:20:"))
    assert pt_path.read_bytes() == before and not (tmp_path / "J5.cs").exists()
