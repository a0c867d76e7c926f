"""The common method interface: what every trained model answers.

Analysis, metrics, ``cryohet volumes`` and ``cryohet evaluate`` only talk to
:class:`TrainedModel`, never to a particular method, so they do not branch on the
method. A method registers its subclass with :func:`register_method`; a run directory
names its method (and method version) in ``config.yaml`` and :func:`load_run` rebuilds
it from there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml

from ..errors import RunDirError
from ..training.rundir import RunDir

__all__ = ["TrainedModel", "register_method", "load_run", "registered_methods", "read_run_header"]

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
        self.box = int(box)
        self.apix = float(apix)
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
        """(N, zdim) float32, one row per particle in input order."""
        if self._latents is None:
            self._latents = self.run.load_latents()
        return self._latents

    @property
    def zdim(self) -> int:
        return int(self.latents.shape[1])

    def volumes(self, zs: np.ndarray, box: int | None = None, apix: float | None = None) -> Iterator[np.ndarray]:
        """Volumes for each row of ``zs``, in order."""
        for z in np.atleast_2d(zs):
            yield self.volume(z, box, apix)

    def poses(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(rotations (N,3,3) RELION A, shifts_A (N,2)) used or estimated, if any."""
        return self.run.load_poses()

    def part_volumes(
        self, z: np.ndarray, box: int | None = None, apix: float | None = None
    ) -> dict[str, np.ndarray] | None:
        """Per-part volumes at ``z`` for part-aware methods (None for the others)."""
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
    except yaml.YAMLError as err:
        raise RunDirError(f"{run.config}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict) or "method" not in raw:
        raise RunDirError(f"{run.config}: no 'method' entry; not a cryohet run directory")
    return raw


def load_run(run_dir: str | Path, device: str = "cpu", allow_unfinished: bool = False) -> TrainedModel:
    """Load any method's run directory through the common interface.

    A run that is still training, was killed or failed (no ``COMPLETED`` stamp) is a
    one-line error unless ``allow_unfinished`` (to look at a live run as it is).
    """
    raw = read_run_header(run_dir)
    _import_builtin_methods()
    name = str(raw["method"])
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise RunDirError(f"{run_dir}: unknown method '{name}' (this cryohet knows: {known})")
    cls = _REGISTRY[name]
    version = int(raw.get("method_version", 1))
    if version > cls.version:
        raise RunDirError(
            f"{run_dir}: written by a newer '{name}' format (version {version}); this cryohet reads up to {cls.version}"
        )
    RunDir(run_dir).require_complete(allow_unfinished)
    return cls.load(run_dir, device=device)


def _import_builtin_methods() -> None:
    """Import the modules whose classes register themselves (the spire package itself is
    lazy: importing it loads only its config)."""
    import importlib

    for module in ("cryohet.methods.baselines", "cryohet.methods.spire.model"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is None or not module.startswith(err.name):
                raise
