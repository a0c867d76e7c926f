"""``cryohet fsc``: output, JSON/plot files, one-line errors for bad input."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest

from cryohet.cli.app import main
from cryohet.io.mrc import write_volume

D = 32


@pytest.fixture
def maps(tmp_path, rng):
    a = rng.standard_normal((D, D, D)).astype(np.float32)
    b = a + 0.5 * rng.standard_normal((D, D, D)).astype(np.float32)
    p1 = write_volume(tmp_path / "a.mrc", a, apix=2.5)
    p2 = write_volume(tmp_path / "b.mrc", b, apix=2.5)
    c = np.arange(D) - D // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    pm = write_volume(tmp_path / "mask.mrc", (x * x + y * y + z * z < 100).astype(np.float32), apix=2.5)
    return p1, p2, pm


def test_fsc_prints_summary_and_writes_files(maps, tmp_path, capsys):
    p1, p2, pm = maps
    out_json, out_png = tmp_path / "out" / "fsc.json", tmp_path / "fsc.png"
    rc = main(["fsc", str(p1), str(p2), "--mask", str(pm), "--json", str(out_json), "--plot", str(out_png)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "CryoBench AUC" in out and "0.143" in out and "masked" in out
    data = json.loads(out_json.read_text())
    assert data["apix"] == pytest.approx(2.5) and data["box"] == D
    assert f"{data['unmasked']['cryobench_auc']:.4f}" in out
    assert 0.0 < data["masked"]["cryobench_auc"] <= (D / 2 - 1) / D
    assert len(data["unmasked"]["cryobench_curve"]["fsc"]) == D // 2
    assert out_png.stat().st_size > 1000


def test_fsc_identical_maps(maps, capsys):
    p1, _, _ = maps
    assert main(["fsc", str(p1), str(p1)]) == 0
    out = capsys.readouterr().out
    assert f"{(D / 2 - 1) / D:.4f}" in out
    assert "5.00 Å" in out  # never crosses: reported at Nyquist (2 x 2.5 Å)


def _check_error(argv, capsys, *words):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    for w in words:
        assert w in err


def test_bad_input_exits_1_with_one_line(maps, tmp_path, rng, capsys):
    p1, p2, _ = maps
    _check_error(["fsc", str(p1), str(tmp_path / "missing.mrc")], capsys, "missing.mrc", "not found")
    flat = tmp_path / "flat.mrc"
    with mrcfile.new(flat) as m:
        m.set_data(np.zeros((D, D), np.float32))
    _check_error(["fsc", str(p1), str(flat)], capsys, "flat.mrc")
    small = write_volume(tmp_path / "small.mrc", np.zeros((16, 16, 16), np.float32), apix=2.5)
    _check_error(["fsc", str(p1), str(small)], capsys, "box size")
    other = write_volume(tmp_path / "other.mrc", rng.standard_normal((D, D, D)).astype(np.float32), apix=3.0)
    _check_error(["fsc", str(p1), str(other)], capsys, "pixel size")
    _check_error(["fsc", str(p1), str(p2), "--json", str(p2)], capsys, "would overwrite the input")
    assert main(["fsc", str(p1), str(other), "--apix", "2.5"]) == 0  # explicit pixel size
