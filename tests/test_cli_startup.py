"""A quick, consistent command line (issue 18, point 7).

* The CLI builds without the heavy libraries: ``cryohet --help``, ``--version`` and every
  command's ``--help`` import no torch, scipy, matplotlib, scikit-learn, umap, pandas,
  healpy, roma, mrcfile, gemmi or starfile (checked in a fresh interpreter through
  ``sys.modules``, not by timing: a slow, shared machine cannot make it flaky).
* Options read their defaults from API functions' sources without importing them
  (``param_default("cryohet.mod:func", name)``): those agree with the real signatures.
* A Python warning reaches the console as one log line, never ``UserWarning`` with a
  file name and a source line.
* Hints name the flags the user types (``-D/--box``), not config fields (``box``).
* Each output is announced once.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryohet import __version__
from cryohet.cli.options import param_default

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = (
    "torch",
    "scipy",
    "matplotlib",
    "sklearn",
    "umap",
    "pandas",
    "healpy",
    "roma",
    "mrcfile",
    "gemmi",
    "starfile",
)


def _python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh interpreter that imports this checkout's cryohet."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


_HELP_RUNS = """
import contextlib, io, json, sys
import cryohet.cli.app as cli
runs = [[], ["--help"], ["--version"], ["train", "--help"]]
runs += [[name, "--help"] for name in cli.COMMAND_MODULES if name != "train"]
runs += [["train", m, "--help"] for m in ("spire", "drgnai", "sphere", "homogeneous", "oracle", "classify3d", "pca")]
codes = {}
for argv in runs:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        codes[" ".join(argv)] = (cli.main(argv), len(out.getvalue()))
heavy = sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)
print(json.dumps({"heavy": heavy, "codes": codes}))
"""


def test_the_command_line_starts_without_heavy_libraries():
    """Building the CLI and printing every help page import none of the heavy libraries."""
    done = _python(_HELP_RUNS, json.dumps(HEAVY))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], f"imported while building the CLI: {result['heavy']}"
    for argv, (code, n_chars) in result["codes"].items():
        assert code in (0, 2) and n_chars > 0, f"cryohet {argv}: exit {code}, {n_chars} characters"  # no args: usage


def test_version_and_help_through_python_m():
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "cryohet", "--version"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == f"cryohet {__version__}" and done.stderr == ""
    done = subprocess.run([sys.executable, "-m", "cryohet", "--help"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "simulate" in done.stdout and "train" in done.stdout


#: The API functions whose defaults commands read from source, and the parameters they read.
SOURCE_DEFAULTS = {
    "cryohet.io.particles:save_converted": ("overwrite",),
    "cryohet.data.downsample:downsample_particles": ("chunk", "overwrite"),
    "cryohet.evaluation.evaluate:evaluate_run": ("mask", "per_image", "align", "device", "allow_unfinished"),
    "cryohet.evaluation.evaluate:write_evaluation": ("overwrite",),
    "cryohet.evaluation.fsc_report:compare_map_files": ("mask", "apix"),
    "cryohet.analysis.volumes:write_volumes": ("box", "apix", "parts", "flip", "device", "overwrite"),
}


@pytest.mark.parametrize("ref", sorted(SOURCE_DEFAULTS))
def test_defaults_read_from_source_match_the_functions(ref):
    import importlib

    module, func = ref.split(":")
    params = inspect.signature(getattr(importlib.import_module(module), func)).parameters
    for name in SOURCE_DEFAULTS[ref]:
        assert param_default(ref, name) == params[name].default, (ref, name)


def test_param_default_from_source_errors():
    with pytest.raises(ValueError, match="no parameter"):
        param_default("cryohet.io.particles:save_converted", "nope")
    with pytest.raises(ValueError, match="no default"):
        param_default("cryohet.io.particles:save_converted", "meta")
    with pytest.raises(ValueError, match="no function"):
        param_default("cryohet.io.particles:nope", "x")


_WARN = """
import sys, warnings
from cryohet.cli.app import app, main

@app.command("warn-twice")
def warn_twice() -> None:
    warnings.warn("a test warning\\n   over two lines")
    warnings.warn("a deprecated thing", DeprecationWarning)
    print("done")

sys.exit(main(["warn-twice"]))
"""


def test_a_warning_is_one_log_line():
    done = _python(_WARN)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert "WARNING a test warning over two lines" in lines[0]
    assert "WARNING DeprecationWarning: a deprecated thing" in lines[1]
    for text in ("UserWarning", ".py:", "warnings.warn("):
        assert text not in done.stderr


def test_hints_name_the_flags(tmp_path):
    code = "import sys; from cryohet.cli.app import main; sys.exit(main(sys.argv[1:]))"
    done = _python(code, "simulate", "igg-1d", "--out", str(tmp_path / "sim"), "-D", "33", "-n", "0")
    assert done.returncode != 0
    assert done.stderr.strip() == (
        "error: -n/--n-images: Input should be greater than 0; -D/--box: box must be even, got 33"
    )
    done = _python(code, "info", str(tmp_path / "p.star"), "--apix", "0")
    assert done.returncode != 0 and done.stderr.strip() == "error: --apix: Input should be greater than 0"


def test_igg1d_defaults_to_twenty_states():
    from cryohet.simulate.catalog import PRESETS

    assert PRESETS["igg-1d"].default_states == 20


def test_each_output_is_announced_once(tmp_path):
    """The command says ``wrote PATH`` once; its log lines do not name the path again."""
    code = "import sys; from cryohet.cli.app import main; sys.exit(main(sys.argv[1:]))"
    sim, run, ds = tmp_path / "sim", tmp_path / "run", tmp_path / "ds"
    commands = {
        str(sim): ["simulate", "assembly", "-o", str(sim), "-n", "40", "-D", "24", "--apix", "14", "--n-states", "2"],
        str(run): ["train", "homogeneous", str(sim / "particles.star"), "-o", str(run)],
        str(ds / "particles.16.star"): ["downsample", str(sim / "particles.star"), "-D", "16", "--out", str(ds)],
        str(tmp_path / "p.pkl"): ["convert", str(sim / "particles.star"), "--poses-out", str(tmp_path / "p.pkl")],
    }
    for out, argv in commands.items():
        done = _python(code, *argv)
        assert done.returncode == 0, done.stderr
        said = (done.stdout + done.stderr).splitlines()
        assert [line for line in said if line.endswith(out) or f"{out} " in line] == [f"wrote {out}"], said
