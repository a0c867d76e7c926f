"""Files cryohet writes travel: stack paths relative to the output file (as RELION writes
them), cryoSPARC's micrographs, coordinates and half sets kept in a converted STAR file,
stack paths of a ``.cs`` resolved against the cryoSPARC project, and no float32 artefacts
(``2.700000048``) in the text."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pandas as pd
import starfile

from cryohet.cli.app import main
from cryohet.io.particles import load_particles
from cryohet.io.paths import candidate_paths
from cryohet.io.star_tables import write_loop


def _with_location(arr: np.ndarray) -> np.ndarray:
    """``arr`` plus the ``location/*`` fields of a cryoSPARC extraction (micrographs 4096x3072)."""
    extra = [
        ("location/micrograph_path", "S64"),
        ("location/micrograph_shape", "<u4", (2,)),
        ("location/center_x_frac", "<f4"),
        ("location/center_y_frac", "<f4"),
        ("alignments3D/split", "<u4"),
    ]
    out = np.zeros(len(arr), dtype=arr.dtype.descr + extra)
    for name in arr.dtype.names:
        out[name] = arr[name]
    out["location/micrograph_path"] = [f"J2/motioncorrected/mic_{i % 2}.mrc".encode() for i in range(len(arr))]
    out["location/micrograph_shape"] = [3072, 4096]
    out["location/center_x_frac"] = np.linspace(0.1, 0.9, len(arr))
    out["location/center_y_frac"] = 0.5
    out["alignments3D/split"] = np.arange(len(arr)) % 2
    return out


def test_cs_to_star_keeps_relion_columns_and_relative_stack_paths(shared_fixtures, tmp_path, capsys):
    project = tmp_path / "P1"
    job = project / "J9"
    job.mkdir(parents=True)
    arr = np.load(shared_fixtures / "empiar_10076_7.cs")
    stack = np.unique(arr["blob/path"])[0].decode().lstrip(">")
    (project / stack).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_fixtures / "empiar_10076_7.mrc", project / stack)  # the stack where cryoSPARC keeps it
    cs = job / "J9_particles.cs"
    with open(cs, "wb") as fh:
        np.save(fh, _with_location(arr))
    out = tmp_path / "relion" / "particles.star"
    assert main(["convert", str(cs), "--star-out", str(out)]) == 0
    text = out.read_text()
    tables = starfile.read(out, always_dict=True)
    parts = tables["particles"]
    assert all(name.split("@")[1] == f"../P1/{stack}" for name in parts["rlnImageName"])
    assert list(parts["rlnRandomSubset"]) == [1 + i % 2 for i in range(len(arr))]
    assert set(parts["rlnMicrographName"]) == {f"../P1/J2/motioncorrected/mic_{k}.mrc" for k in (0, 1)}
    np.testing.assert_allclose(parts["rlnCoordinateX"], np.float32(np.linspace(0.1, 0.9, len(arr))) * 4096, rtol=1e-6)
    np.testing.assert_allclose(parts["rlnCoordinateY"], 1536.0)
    assert "0.0700000" not in text and "2.700000" not in text and "\t0.07\t" in text.replace("\n", "\t")
    # the file reads back to the same stack and images, from wherever it is read
    back = load_particles(out)
    assert back.image_files == load_particles(cs).image_files
    # a STAR subset moved together with its stacks still reads
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path, moved, ignore=shutil.ignore_patterns("moved"))
    assert load_particles(moved / "relion" / "particles.star").image_files[0] == (moved / "P1" / stack)


def test_cs_stack_paths_are_looked_up_in_the_project_first(tmp_path):
    job = tmp_path / "P3" / "J24"
    first = candidate_paths("J19/extract/a.mrc", job, None, layout="cs")[0]
    assert first == tmp_path / "P3" / "J19" / "extract" / "a.mrc"
    loose = candidate_paths("J19/extract/a.mrc", tmp_path / "exports", None, layout="cs")[0]
    assert loose == tmp_path / "exports" / "J19" / "extract" / "a.mrc"


def test_float32_values_print_as_typed():
    df = pd.DataFrame(
        {
            "rlnVoltage": np.float32([300.0, 300.0]).astype(np.float64),
            "rlnSphericalAberration": np.float32([2.7, 2.7]).astype(np.float64),
            "rlnAngleRot": [12.345678912345, -0.1],  # float64 values keep their precision
        }
    )
    fh = io.StringIO()
    write_loop(fh, "optics", df)
    rows = [line.split("\t") for line in fh.getvalue().splitlines() if line and line[0].isdigit() or "\t" in line]
    assert rows[0][1] == "2.7" and rows[0][0] in ("300", "300.0")
    assert rows[0][2] == "12.34567891"
