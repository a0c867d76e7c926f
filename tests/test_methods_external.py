"""The ``cryodrgn`` wrapper method (with a stand-in ``cryodrgn`` executable) and
``load_run`` errors on broken run directories."""

from __future__ import annotations

import pickle
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from cryohet.errors import RunDirError
from cryohet.methods.base import load_run
from cryohet.methods.external import CryoDRGNRunConfig, last_epoch, write_cryodrgn_wrapper

BOX = 8

# A stand-in for `cryodrgn eval_vol ... --zfile Z -o DIR --prefix P --vol-start-index S [--flip] [--invert]`:
# writes one map per z row with value z0 + 10 z1 (and a gradient along the first axis, so --flip shows),
# and appends one line per call to calls.txt next to itself.
FAKE = f"""#!{sys.executable}
import sys, numpy as np, mrcfile
from pathlib import Path
a = sys.argv[1:]
assert a[0] == "eval_vol", a
opt = lambda k: a[a.index(k) + 1]
z = np.loadtxt(opt("--zfile"), ndmin=2)
out = Path(opt("-o")); out.mkdir(parents=True, exist_ok=True)
for i, zz in enumerate(z, start=int(opt("--vol-start-index"))):
    vol = np.full(({BOX},) * 3, zz[0] + 10 * zz[1], np.float32) + np.arange({BOX}, dtype=np.float32)[:, None, None]
    if "--flip" in a:
        vol = vol[::-1]
    if "--invert" in a:
        vol = -vol
    with mrcfile.new(out / f"{{opt('--prefix')}}{{i:03d}}.mrc") as m:
        m.set_data(np.ascontiguousarray(vol)); m.voxel_size = float(opt("--Apix"))
with open(Path(sys.argv[0]).parent / "calls.txt", "a") as fh:
    fh.write(" ".join(a) + "\\n")
"""


@pytest.fixture
def fake_cryodrgn(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """(cryoDRGN output folder, fake executable, z means)."""
    out = tmp_path / "train_vae"
    out.mkdir()
    mu = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    for name in ("z.3.pkl", "z.pkl"):
        with open(out / name, "wb") as fh:  # cryoDRGN: two pickles in a row, mu then logvar
            pickle.dump(mu, fh)
            pickle.dump(np.zeros_like(mu), fh)
    for name in ("weights.1.pkl", "weights.3.pkl", "weights.pkl", "config.yaml"):
        (out / name).write_text("stand-in\n")
    exe = tmp_path / "bin" / "cryodrgn"
    exe.parent.mkdir()
    exe.write_text(FAKE)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return out, exe, mu


def test_cryodrgn_wrapper_latents_and_volumes(fake_cryodrgn, tmp_path):
    out, exe, mu = fake_cryodrgn
    assert last_epoch(out) == 3
    cfg = CryoDRGNRunConfig(cryodrgn_dir=out, epoch=3, cryodrgn_bin=exe, box=BOX, apix=4.0)
    run = write_cryodrgn_wrapper(cfg, tmp_path / "wrap")
    model = load_run(run)
    assert model.method == "cryodrgn" and model.box == BOX and model.apix == 4.0
    np.testing.assert_array_equal(model.latents, mu)
    ramp = np.arange(BOX, dtype=np.float32)[:, None, None]
    vol = model.volume(np.array([1.0, 2.0]))
    np.testing.assert_allclose(vol, 21.0 + ramp + 0 * vol)
    vols = list(model.volumes(mu[:3]))
    for v, z in zip(vols, mu[:3]):
        np.testing.assert_allclose(v, z[0] + 10 * z[1] + ramp + 0 * v, rtol=1e-5)
    calls = (exe.parent / "calls.txt").read_text().splitlines()
    assert len(calls) == 2 and "weights.3.pkl" in calls[1]  # one eval_vol call for the three volumes
    small = model.volume(np.zeros(2), box=4, apix=8.0)
    assert small.shape == (4, 4, 4)


def test_cryodrgn_wrapper_flip_invert_and_errors(fake_cryodrgn, tmp_path):
    out, exe, mu = fake_cryodrgn
    cfg = CryoDRGNRunConfig(cryodrgn_dir=out, cryodrgn_bin=exe, box=BOX, apix=4.0, flip=True, invert=True)
    model = load_run(write_cryodrgn_wrapper(cfg, tmp_path / "wrap"))
    vol = model.volume(np.zeros(2))
    np.testing.assert_allclose(vol[:, 0, 0], -np.arange(BOX)[::-1])
    with pytest.raises(Exception, match="zdim 2"):
        model.volume(np.zeros(3))
    # a non-empty wrapper folder, a missing epoch, a vanished cryoDRGN folder
    with pytest.raises(RunDirError, match="not empty"):
        write_cryodrgn_wrapper(cfg, tmp_path / "wrap")
    with pytest.raises(Exception, match="weights.7.pkl"):
        write_cryodrgn_wrapper(cfg.model_copy(update={"epoch": 7}), tmp_path / "wrap7")
    (out / "weights.pkl").unlink()
    with pytest.raises(RunDirError, match="weights.pkl"):
        load_run(tmp_path / "wrap")


def test_load_run_errors_are_one_line(tmp_path):
    with pytest.raises(RunDirError, match="folder not found"):
        load_run(tmp_path / "missing")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(RunDirError, match="missing config.yaml"):
        load_run(run)
    (run / "config.yaml").write_text("method: no-such-method\n")
    with pytest.raises(RunDirError, match="unknown method 'no-such-method'") as err:
        load_run(run)
    assert "\n" not in str(err.value) and "homogeneous" in str(err.value)
    (run / "config.yaml").write_text("method: homogeneous\nmethod_version: 1\n")
    with pytest.raises(RunDirError, match="unfinished"):
        load_run(run)
    with pytest.raises(RunDirError, match="incomplete run directory, missing model.pt, latents.npy"):
        load_run(run, allow_unfinished=True)
    (run / "config.yaml").write_text("method: pca\nmethod_version: 9\n")
    with pytest.raises(RunDirError, match="newer 'pca' format"):
        load_run(run)
