"""The common method interface: what every trained model answers.

Analysis, metrics, ``cryohet volumes`` and ``cryohet evaluate`` only talk to
:class:`TrainedModel`, never to a particular method, so they do not branch on the
method. A method registers its subclass with :func:`register_method`; a run directory
names its method (and method version) in ``config.yaml`` and :func:`load_run` rebuilds
it from there.

A run directory may have been edited, copied half-way or damaged, so everything read
from it is checked here, against its own ``config.yaml``, and every problem is one
:class:`~cryohet.errors.RunDirError` line naming the file:

* ``method`` known and ``method_version`` a whole number this cryohet reads
  (:func:`check_run_method`, the same check for reading a run and for ``--resume``);
* the ``resolved`` geometry (:func:`resolved_geometry`): box a positive even number of
  pixels, pixel size a positive number of Å, ``n_particles`` a positive count;
* ``latents.npy``: 2-D float, finite, ``n_particles`` rows and the model's latent size;
* ``poses.npz``: readable, rotations ``(N, 3, 3)`` and shifts ``(N, 2)`` with N =
  ``n_particles`` (:meth:`TrainedModel.poses`); extras are checked by
  :meth:`~cryohet.training.rundir.RunDir.load_extra`;
* weights that do not fit the config (:func:`state_dict_mismatch` turns torch's
  many-line ``load_state_dict`` error into one line).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import yaml
from pydantic import BaseModel

from ..errors import RunDirError
from ..training.rundir import RunDir

__all__ = [
    "load_weights",
    "weights_mismatch",
    "TrainedModel",
    "register_method",
    "load_run",
    "load_run_latents",
    "registered_methods",
    "read_run_header",
    "check_run_method",
    "read_run_config",
    "resolved_geometry",
    "state_dict_mismatch",
    "check_train_out",
]

C = TypeVar("C", bound=BaseModel)

_REGISTRY: dict[str, type[TrainedModel]] = {}


class TrainedModel(ABC):
    """A reconstruction loaded from its run directory.

    Attributes set by subclasses:
        method: registry name (``"spire"``, ``"homogeneous"``, ...).
        version: run-directory format version the class reads.
        run: the :class:`RunDir`.
        box, apix: native box (pixels) and pixel size (Å) of the reconstruction.
    """

    method: ClassVar[str]
    version: ClassVar[int] = 1

    def __init__(self, run: RunDir, box: int, apix: float) -> None:
        self.run = run
        self.box = _check_box(box, run.config, "box")
        self.apix = _check_apix(apix, run.config, "apix")
        self._latents: np.ndarray | None = None

    # -- required ---------------------------------------------------------------
    @classmethod
    @abstractmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> TrainedModel:
        """Rebuild the model from ``run_dir`` (config.yaml + weights)."""

    @abstractmethod
    def volume(self, z: np.ndarray, box: int | None = None, apix: float | None = None) -> np.ndarray:
        """The volume ``(D, D, D)`` float32 at latent ``z`` (zdim,), centred at index D//2.

        ``box``/``apix`` default to the native sampling; other values resample (same
        physical centre, Å units preserved).
        """

    # -- provided -----------------------------------------------------------------
    @property
    def latents(self) -> np.ndarray:
        """(N, zdim) float32, one row per particle in input order (checked against the config)."""
        if self._latents is None:
            self._latents = _check_latents(self.run, self.run.load_latents(), self.n_particles, self.expected_zdim())
        return self._latents

    @property
    def n_particles(self) -> int | None:
        """``resolved.n_particles`` of the run's config (None when the run does not record it)."""
        if not hasattr(self, "_n_particles"):
            raw = read_run_header(self.run.path) if self.run.config.exists() else {}
            self._n_particles = _resolved_count(raw, self.run)
        return self._n_particles

    def expected_zdim(self) -> int | None:
        """The latent size the model takes (checked against ``latents.npy``); None: any."""
        return None

    @property
    def zdim(self) -> int:
        return int(self.latents.shape[1])

    def volumes(self, zs: np.ndarray, box: int | None = None, apix: float | None = None) -> Iterator[np.ndarray]:
        """Volumes for each row of ``zs``, in order."""
        for z in np.atleast_2d(zs):
            yield self.volume(z, box, apix)

    def poses(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(rotations (N,3,3) RELION A, shifts_A (N,2)) used or estimated, if any."""
        poses = self.run.load_poses()
        n = self.n_particles
        if poses is not None and n is not None and len(poses[0]) != n:
            raise RunDirError(
                f"{self.run.poses}: {len(poses[0])} poses but {self.run.config} says the run has {n} particles"
            )
        return poses

    def part_volumes(
        self, z: np.ndarray, box: int | None = None, apix: float | None = None
    ) -> dict[str, np.ndarray] | None:
        """Per-part volumes at ``z`` for part-aware methods (None for the others)."""
        return None

    def atomic_models(self, zs: np.ndarray) -> tuple[Any, np.ndarray] | None:
        """For atomic-model methods: the input :class:`~cryohet.io.atomic.AtomicModel` and
        ``(M, atoms, 3)`` coordinates (Å, the input model's frame) of every atom at each row
        of ``zs``; None for the others."""
        return None

    def gaussians_at(self, z: np.ndarray) -> dict[str, np.ndarray] | None:
        """For Gaussian-mixture methods: ``centres_A`` (G, 3), ``amplitudes`` (G,) (gated),
        ``occupancy`` (G,) gates, ``sigmas_A`` (G,), ``part`` (G,) at latent ``z``, and
        optionally ``base_amplitudes`` (G,) (ungated); else None."""
        return None

    def describe(self) -> dict[str, Any]:
        """A short summary for reports."""
        return {
            "method": self.method,
            "box": self.box,
            "apix": self.apix,
            "n_particles": len(self.latents),
            "zdim": self.zdim,
        }


def register_method(cls: type[TrainedModel]) -> type[TrainedModel]:
    """Class decorator: make ``cls`` loadable by :func:`load_run` under ``cls.method``."""
    _REGISTRY[cls.method] = cls
    return cls


def registered_methods() -> dict[str, type[TrainedModel]]:
    _import_builtin_methods()
    return dict(_REGISTRY)


def read_run_header(run_dir: str | Path) -> dict[str, Any]:
    """``method``, ``method_version`` and the raw config mapping of a run directory."""
    run = RunDir(run_dir)
    run.require("config.yaml")
    try:
        raw = yaml.safe_load(run.config.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RunDirError(f"{run.config}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict) or "method" not in raw:
        raise RunDirError(f"{run.config}: no 'method' entry; not a cryohet run directory")
    return raw


def check_run_method(
    run_dir: str | Path, raw: dict[str, Any] | None = None, expected: str | None = None
) -> type[TrainedModel]:
    """The class that reads ``run_dir``, after checking its ``method`` (registered; equal to
    ``expected`` when given) and ``method_version`` (a whole number from 1 to what that
    class reads). The one check for reading a run (:func:`load_run`, :func:`read_run_config`)
    and for continuing one (``cryohet train ... --resume``)."""
    raw = read_run_header(run_dir) if raw is None else raw
    _import_builtin_methods()
    name = str(raw["method"])
    if expected is not None and name != expected:
        raise RunDirError(
            f"{run_dir}: a '{name}' run, not a '{expected}' run (continue it with `cryohet train {name}`)"
        )
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise RunDirError(f"{run_dir}: unknown method '{name}' (this cryohet knows: {known})")
    cls = _REGISTRY[name]
    version = raw.get("method_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RunDirError(f"{Path(run_dir) / 'config.yaml'}: method_version {version!r} is not a version number")
    if version > cls.version:
        raise RunDirError(
            f"{run_dir}: written by a newer '{name}' format (version {version}); this cryohet reads up to {cls.version}"
        )
    return cls


def read_run_config(run_dir: str | Path, config_cls: type[C]) -> tuple[dict[str, Any], C]:
    """The raw mapping and the validated config of a run (method and version checked by
    :func:`check_run_method`; the ``resolved`` block is not part of the config)."""
    from ..config import load_config

    raw = read_run_header(run_dir)
    field = config_cls.model_fields.get("method")
    expected = field.default if field is not None and isinstance(field.default, str) else None
    check_run_method(run_dir, raw, expected)
    return raw, load_config(RunDir(run_dir).config, config_cls, drop=("resolved",))


def resolved_geometry(raw: dict[str, Any], run: RunDir, box: Any = None) -> tuple[int, float]:
    """``(box, apix)`` of a finished run from its ``resolved`` block (``box`` overrides the
    block's when the config itself holds it), checked: box a positive even number of
    pixels, apix a positive number of Å."""
    resolved = raw.get("resolved")
    resolved = resolved if isinstance(resolved, dict) else {}
    box = resolved.get("box") if box is None else box
    if box is None or resolved.get("apix") is None:
        raise RunDirError(f"{run.config}: missing the resolved box/pixel size; the run did not finish")
    return _check_box(box, run.config, "box"), _check_apix(resolved["apix"], run.config, "resolved.apix")


def state_dict_mismatch(path: str | Path, err: Exception) -> RunDirError:
    """One line for weights that do not fit the model the config describes (torch's
    ``load_state_dict`` error lists every tensor on its own line)."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    details = lines[1:] or lines or [type(err).__name__]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return RunDirError(
        f"{path}: the weights do not match the run's config.yaml (edited or from another run): {details[0][:200]}{more}"
    )


def check_train_out(out: str | Path, inputs: Iterable[str | Path], method: str, resume: bool = False) -> None:
    """What ``cryohet train METHOD ... --out OUT`` checks before anything is written: OUT is
    not one of the ``inputs`` (the particle file, pickles) nor another existing file, and with
    ``resume`` the run already there is a ``method`` run this cryohet reads
    (:func:`check_run_method`, the check :func:`load_run` makes)."""
    from ..io.paths import ensure_not_input

    path = Path(out)
    ensure_not_input(path, inputs)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path}: exists and is not a directory; --out names the run directory to create")
    if resume and RunDir(path).config.exists():
        check_run_method(path, expected=method)


def load_run(
    run_dir: str | Path, device: str = "cpu", allow_unfinished: bool = False, epoch: int | None = None
) -> TrainedModel:
    """Load any method's run directory through the common interface.

    A run that is still training, was killed or failed (no ``COMPLETED`` stamp) is a
    one-line error unless ``allow_unfinished`` (to look at a live run as it is).
    ``epoch`` (counted from 1) loads the run as it was after that epoch, from its snapshot
    (:mod:`cryohet.training.snapshots`; a one-line error names the epochs it has).
    """
    cls = check_run_method(run_dir)
    RunDir(run_dir).require_complete(allow_unfinished)
    if epoch is None:
        return cls.load(run_dir, device=device)
    run = RunDir(run_dir, epoch=epoch)
    run.require("model.pt", "latents.npy")
    return cls.load(run, device=device)


def load_run_latents(run_dir: str | Path, epoch: int | None = None) -> np.ndarray:
    """``latents.npy`` of a run without loading its model (method and version checked, rows
    equal to ``resolved.n_particles`` when the run records it); ``epoch``: its snapshot's."""
    raw = read_run_header(run_dir)
    check_run_method(run_dir, raw)
    run = RunDir(run_dir, epoch=epoch)
    if epoch is not None:
        run.require("latents.npy")
    return _check_latents(run, run.load_latents(), _resolved_count(raw, run), None)


# ----------------------------------------------------------------------------- checks
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return float(value)


def _check_box(value: Any, where: Path, name: str) -> int:
    v = _number(value)
    if v is None or not math.isfinite(v) or v != int(v) or v <= 0 or int(v) % 2:
        raise RunDirError(f"{where}: {name} {value!r} is not a positive even number of pixels")
    return int(v)


def _check_apix(value: Any, where: Path, name: str) -> float:
    v = _number(value)
    if v is None or not math.isfinite(v) or v <= 0:
        raise RunDirError(f"{where}: {name} {value!r} is not a positive pixel size in Å")
    return v


def _check_count(value: Any, where: Path, name: str) -> int:
    v = _number(value)
    if v is None or not math.isfinite(v) or v != int(v) or v < 1:
        raise RunDirError(f"{where}: {name} {value!r} is not a positive number of particles")
    return int(v)


def _resolved_count(raw: dict[str, Any], run: RunDir) -> int | None:
    resolved = raw.get("resolved")
    n = resolved.get("n_particles") if isinstance(resolved, dict) else None
    return None if n is None else _check_count(n, run.config, "resolved.n_particles")


def _check_latents(run: RunDir, z: np.ndarray, n: int | None, zdim: int | None) -> np.ndarray:
    path = run.latents
    if not isinstance(z, np.ndarray) or z.dtype.kind != "f" or z.ndim != 2 or z.shape[1] < 1:
        shape = getattr(z, "shape", None)
        raise RunDirError(f"{path}: expected (particles, zdim) floats, got {getattr(z, 'dtype', type(z))} {shape}")
    if n is not None and len(z) != n:
        raise RunDirError(f"{path}: {len(z)} rows but {run.config} says the run has {n} particles")
    if zdim is not None and z.shape[1] != zdim:
        raise RunDirError(f"{path}: latents of size {z.shape[1]} but the model in {run.model} takes {zdim}")
    if not np.isfinite(z).all():
        raise RunDirError(f"{path}: {int((~np.isfinite(z)).any(axis=1).sum())} rows hold NaN/Inf")
    return z.astype(np.float32, copy=False)


def _import_builtin_methods() -> None:
    """Import the modules whose classes register themselves (the method packages themselves
    are lazy: importing one loads only its config)."""
    import importlib

    for module in (
        "cryohet.methods.baselines.homogeneous",
        "cryohet.methods.baselines.oracle",
        "cryohet.methods.baselines.classify3d",
        "cryohet.methods.baselines.pca",
        "cryohet.methods.external",
        "cryohet.methods.spire.model",
        "cryohet.methods.drgnai.model",
        "cryohet.methods.sphere.model",
        "cryohet.methods.hetacumn.model",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is None or not module.startswith(err.name):
                raise


def load_weights(path: str | Path, method: str, key: str, device: str = "cpu") -> tuple[dict[str, Any], Path]:
    """The weights stored under ``key`` in another run's ``model.pt``, for ``--load``: ``path``
    is that run's directory (its method must be ``method``) or a ``model.pt`` file. Returns
    the state dict and the file read; every problem is one line."""
    from ..training.checkpoint import load_checkpoint

    p = Path(path)
    if p.is_dir():
        raw = read_run_header(p)
        if raw.get("method") != method:
            raise RunDirError(f"--load {p}: a '{raw.get('method')}' run; its weights do not fit a '{method}' run")
        p = RunDir(p).model
    state = load_checkpoint(p, map_location=device)
    if not isinstance(state.get(key), dict):
        raise RunDirError(f"--load {p}: not a {method} model file (no '{key}' weights)")
    return state[key], p


def weights_mismatch(path: Path, err: Exception) -> RunDirError:
    """One line for ``--load`` weights whose shapes do not fit the network this run builds."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return RunDirError(
        f"--load {path}: the weights do not fit this run's network ({first[:160]}); "
        "give the same network options (zdim, sizes) as the run they come from"
    )
