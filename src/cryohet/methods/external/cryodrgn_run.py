"""A cryoDRGN ``train_vae`` output folder through the common method interface (method ``cryodrgn``).

cryoDRGN runs in its own environment (its own torch), so cryohet never imports it: a
small *wrapper run directory* holds a cryohet ``config.yaml`` that points at the
cryoDRGN folder and at the ``cryodrgn`` executable of that environment::

    WRAP/config.yaml    method: cryodrgn, cryodrgn_dir, epoch, cryodrgn_bin, box, apix, flip, invert, data
    WRAP/latents.npy    z means from cryoDRGN's z.<epoch>.pkl (two pickles: mu, then logvar)
    WRAP/poses.npz      the (fixed) poses cryoDRGN trained with, when ``data`` is given

Volumes are decoded by running ``cryodrgn eval_vol`` on the chosen epoch's weights in
a subprocess (one call for many latents, :meth:`CryoDRGNRunModel.volumes`).

Conventions (checked against ground truth on simulated data, see
``benchmarks/peers/cryodrgn_vs_cryohet.py``):

* cryoDRGN's CTF is the negative of cryohet's/RELION's and ``train_vae`` inverts the
  images by default, so on protein-bright (RELION-like) particles its default training
  gives protein-positive maps: ``invert: false``.
* ``eval_vol`` writes ``(D, D, D)`` maps at the training box, indexed ``(z, y, x)`` with
  the centre at ``D // 2`` like cryohet's, and in the same hand for poses given in
  RELION's convention: ``flip: false``. ``flip`` (``eval_vol --flip``, a mirror along
  the first axis) exists for ab initio runs whose hand is arbitrary.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from ...config import StrictModel, load_config, save_config
from ...errors import InputError, RunDirError, file_error
from ...io.cryodrgn import poses_from_cryodrgn, read_poses_pkl
from ...io.mrc import read_volume
from ...io.safe_pickle import load_pickle
from ...io.source import ParticleSource
from ...representations.voxel import resample_volume
from ...training.rundir import RunDir
from ..base import TrainedModel, register_method

__all__ = ["CryoDRGNRunConfig", "CryoDRGNRunModel", "write_cryodrgn_wrapper", "read_cryodrgn_z", "last_epoch"]


class CryoDRGNRunConfig(StrictModel):
    """The cryohet-side config of a wrapped cryoDRGN run."""

    method: Literal["cryodrgn"] = "cryodrgn"
    method_version: int = 1
    cryodrgn_dir: Path = Field(
        ..., description="cryoDRGN train_vae output folder (config.yaml, weights.N.pkl, z.N.pkl)"
    )
    epoch: int | None = Field(
        None,
        ge=0,
        description="N of weights.N.pkl/z.N.pkl (cryoDRGN 4 counts epochs from 1); None: the final weights.pkl/z.pkl",
    )
    cryodrgn_bin: Path = Field(..., description="the cryodrgn executable of its environment")
    box: int = Field(..., gt=1, description="training box D (eval_vol writes D^3 maps)")
    apix: float = Field(..., gt=0, description="pixel size (Å) at the training box")
    flip: bool = Field(False, description="eval_vol --flip (mirror the hand)")
    invert: bool = Field(False, description="eval_vol --invert (negate the density)")
    timeout_s: float = Field(1800.0, gt=0, description="time limit of one eval_vol call")
    data: ParticleSource | None = Field(None, description="the particles cryoDRGN trained on (for poses)")
    poses_pkl: Path | None = Field(
        None, description="poses cryoDRGN estimated (abinit pose.N.pkl, cryoDRGN layout); default: the data's poses"
    )

    def files(self) -> tuple[Path, Path, Path]:
        """(weights, z pickle, cryoDRGN config.yaml) of the chosen epoch."""
        tag = "" if self.epoch is None else f".{self.epoch}"
        d = Path(self.cryodrgn_dir)
        return d / f"weights{tag}.pkl", d / f"z{tag}.pkl", d / "config.yaml"


def last_epoch(cryodrgn_dir: str | Path) -> int | None:
    """Highest N of ``weights.N.pkl`` in a cryoDRGN output folder (None when there is none)."""
    found = [
        int(m.group(1))
        for f in Path(cryodrgn_dir).glob("weights.*.pkl")
        if (m := re.fullmatch(r"weights\.(\d+)\.pkl", f.name))
    ]
    return max(found) if found else None


def read_cryodrgn_z(path: str | Path) -> np.ndarray:
    """Latent means ``(N, zdim)`` float32 from a cryoDRGN ``z.pkl`` (mu, logvar pickles)."""
    obj = load_pickle(path)
    mu = obj[0] if isinstance(obj, tuple) else obj
    mu = np.asarray(mu)
    if mu.ndim != 2 or mu.dtype.kind != "f":
        raise file_error(path, f"not a cryoDRGN z file (expected (N, zdim) floats, got shape {mu.shape})")
    return mu.astype(np.float32)


def write_cryodrgn_wrapper(cfg: CryoDRGNRunConfig, out: str | Path, overwrite: bool = False) -> Path:
    """Write the wrapper run directory ``out`` for ``cfg`` (config, latents, poses); returns it."""
    run = RunDir(out)
    weights, zfile, dconf = cfg.files()
    for f in (weights, zfile, dconf):
        if not f.exists():
            raise file_error(f, "not found (is this a finished cryoDRGN train_vae folder and the right --epoch?)")
    if not Path(cfg.cryodrgn_bin).exists():
        raise file_error(cfg.cryodrgn_bin, "cryodrgn executable not found")
    if run.path.exists() and any(run.path.iterdir()) and not overwrite:
        raise RunDirError(f"{run.path}: run directory exists and is not empty; pass --overwrite or choose another")
    run.create(overwrite=True)
    z = read_cryodrgn_z(zfile)
    run.save_latents(z)
    if cfg.poses_pkl is not None:
        rot, trans = read_poses_pkl(cfg.poses_pkl)
        if len(rot) != len(z):
            raise InputError(f"{cfg.poses_pkl}: {len(rot)} poses but {zfile} has {len(z)} latents")
        A, shifts = poses_from_cryodrgn(rot, trans, cfg.box, cfg.apix)
        run.save_poses(A, shifts if shifts is not None else np.zeros((len(z), 2)))
    elif cfg.data is not None:
        meta = cfg.data.load(stack_check="skip")
        if len(meta) != len(z):
            raise InputError(f"{zfile}: {len(z)} latents but {cfg.data.path} has {len(meta)} particles")
        if meta.rotations is not None:
            run.save_poses(meta.rotations, meta.shifts_A if meta.shifts_A is not None else np.zeros((len(z), 2)))
    save_config(run.config, cfg)
    run.mark_complete({"wrapper": "cryodrgn"})
    return run.path


@register_method
class CryoDRGNRunModel(TrainedModel):
    """Volumes from ``cryodrgn eval_vol`` (subprocess); latents from cryoDRGN's z pickle."""

    method = "cryodrgn"
    version = 1

    def __init__(self, run: RunDir, cfg: CryoDRGNRunConfig) -> None:
        super().__init__(run, cfg.box, cfg.apix)
        self.cfg = cfg

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> CryoDRGNRunModel:
        run = RunDir(run_dir)
        run.require("config.yaml", "latents.npy")
        cfg = load_config(run.config, CryoDRGNRunConfig)
        for f in cfg.files():
            if not f.exists():
                raise RunDirError(f"{run.config}: cryoDRGN file {f} not found")
        return cls(run, cfg)

    def _check(self, zs: np.ndarray) -> np.ndarray:
        z = np.atleast_2d(np.asarray(zs, dtype=np.float32))
        if z.shape[1] != self.zdim:
            raise InputError(f"latents have {z.shape[1]} values but the cryoDRGN run has zdim {self.zdim}")
        return z

    def _eval_vol(self, z: np.ndarray) -> list[np.ndarray]:
        weights, _, dconf = self.cfg.files()
        with tempfile.TemporaryDirectory(prefix="cryohet-evalvol-") as tmp:
            zfile = Path(tmp) / "z.txt"
            np.savetxt(zfile, z, fmt="%.8g")
            outdir = Path(tmp) / "vols"
            cmd = [
                str(self.cfg.cryodrgn_bin),
                "eval_vol",
                str(weights),
                "-c",
                str(dconf),
                "--zfile",
                str(zfile),
                "-o",
                str(outdir),
                "--Apix",
                f"{self.apix:.6g}",
                "--prefix",
                "vol_",
                "--vol-start-index",
                "0",
            ]
            cmd += ["--flip"] * self.cfg.flip + ["--invert"] * self.cfg.invert
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.cfg.timeout_s)
            except (OSError, subprocess.TimeoutExpired) as err:
                raise RunDirError(
                    f"{self.cfg.cryodrgn_bin}: eval_vol failed to run ({type(err).__name__}: {err})"
                ) from None
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()
                raise RunDirError(
                    f"{self.cfg.cryodrgn_bin} eval_vol exited {proc.returncode}: {tail[-1] if tail else ''}"
                )
            return [read_volume(outdir / f"vol_{i:03d}.mrc")[0] for i in range(len(z))]

    def _resample(self, vol: np.ndarray, box: int | None, apix: float | None) -> np.ndarray:
        if vol.shape[0] != self.box:
            raise RunDirError(f"cryoDRGN eval_vol wrote a {vol.shape[0]}^3 map; the wrapper config says box {self.box}")
        b = self.box if box is None else int(box)
        a = self.apix if apix is None else float(apix)
        if b == self.box and abs(a - self.apix) < 1e-9 * self.apix:
            return vol.astype(np.float32)
        return resample_volume(torch.from_numpy(np.ascontiguousarray(vol)), self.apix, b, a).numpy().astype(np.float32)

    def volume(self, z: np.ndarray, box: int | None = None, apix: float | None = None) -> np.ndarray:
        return self._resample(self._eval_vol(self._check(z))[0], box, apix)

    def volumes(self, zs: np.ndarray, box: int | None = None, apix: float | None = None):
        """All volumes from one ``eval_vol`` call (the subprocess start dominates)."""
        for vol in self._eval_vol(self._check(zs)):
            yield self._resample(vol, box, apix)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"cryodrgn_dir": str(self.cfg.cryodrgn_dir), "epoch": self.cfg.epoch})
        return d
