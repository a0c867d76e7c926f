"""Ground truth of a simulated dataset, as :mod:`cryohet.simulate.simulator` writes it.

``GTDIR`` may be the dataset folder (holding ``particles.star`` and ``gt/``) or its
``gt/`` folder. Read here:

* ``gt/labels.npy`` ``(N,)`` state of every particle (required);
* ``gt/state_NNN.mrc`` one map per state value ``NNN`` (required, same box and pixel size);
* ``gt/mask.mrc`` the soft evaluation mask (optional);
* ``particles.star`` the true poses (optional; for pose errors).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, file_error
from ..io.mrc import read_volume
from ..metrics.parts import GroundTruthAtoms

__all__ = ["GroundTruth", "load_ground_truth", "load_gt_atoms"]


@dataclass
class GroundTruth:
    """Labels, state maps (read lazily, cached), mask and true poses of a simulated set."""

    gt_dir: Path
    labels: np.ndarray
    map_paths: dict[int, Path]
    box: int
    apix: float
    mask_path: Path | None = None
    rotations: np.ndarray | None = None
    shifts_A: np.ndarray | None = None
    particles_apix: float | None = None
    #: (K, 3, 3) volume-frame rotations of a pseudo-symmetry of the particle (``gt/meta.json``'s
    #: ``pseudo_symmetry``): poses ``A`` and ``A S^T`` give the same image
    pseudo_symmetry: np.ndarray | None = None
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def states(self) -> np.ndarray:
        return np.array(sorted(self.map_paths), dtype=np.int64)

    @property
    def auc_ceiling(self) -> float:
        """The CryoBench AUC of identical maps, ``(D/2 - 1) / D``."""
        return (self.box // 2 - 1) / self.box

    def state_map(self, state: int) -> np.ndarray:
        s = int(state)
        if s not in self._cache:
            vol, _ = read_volume(self.map_paths[s])
            if vol.shape != (self.box,) * 3:
                raise file_error(self.map_paths[s], f"map is {vol.shape} but state maps are {self.box}^3")
            self._cache[s] = vol
        return self._cache[s]

    def read_mask(self, path: str | Path | None = None) -> np.ndarray:
        """The mask at ``path`` (default ``gt/mask.mrc``), checked against the maps' box."""
        p = Path(path) if path is not None else self.mask_path
        if p is None:
            raise InputError(f"{self.gt_dir}: no mask.mrc; give --mask or --no-mask")
        vol, _ = read_volume(p)
        if vol.shape != (self.box,) * 3:
            raise file_error(p, f"mask is {vol.shape[0]}^3 but the ground-truth maps are {self.box}^3")
        return vol


def _gt_folder(path: Path) -> tuple[Path, Path | None]:
    """(gt folder, dataset folder or None)."""
    if not path.exists():
        raise file_error(path, "ground-truth folder not found")
    if not path.is_dir():
        raise file_error(path, "is not a folder (give the simulated dataset folder or its gt/ folder)")
    if (path / "gt" / "labels.npy").exists():
        return path / "gt", path
    if (path / "labels.npy").exists():
        parent = path.parent if (path.parent / "particles.star").exists() else None
        return path, parent
    raise file_error(path, "no labels.npy here or in gt/ (expected a simulated dataset folder or its gt/ folder)")


def _true_poses(dataset: Path | None, n: int) -> tuple[np.ndarray | None, np.ndarray | None, float | None]:
    if dataset is None or not (dataset / "particles.star").exists():
        return None, None, None
    from ..io.star import read_star

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = read_star(dataset / "particles.star")
    if len(meta) != n or meta.rotations is None:
        return None, None, None
    shifts = meta.shifts_A if meta.shifts_A is not None else np.zeros((n, 2))
    return meta.rotations, shifts, float(np.median(meta.apix))


def _pseudo_symmetry(meta_path: Path) -> np.ndarray | None:
    """The ``pseudo_symmetry`` rotations ``(K, 3, 3)`` of a simulation's ``meta.json``, if any."""
    if not meta_path.exists():
        return None
    try:
        ops = json.loads(meta_path.read_text()).get("pseudo_symmetry")
    except (OSError, ValueError, AttributeError):
        raise file_error(meta_path, "not a readable JSON object") from None
    if ops is None:
        return None
    arr = np.asarray(ops, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (3, 3):
        raise file_error(meta_path, f"pseudo_symmetry must be a list of 3x3 rotations, got shape {arr.shape}")
    return arr


def load_ground_truth(gt_dir: str | Path) -> GroundTruth:
    """Read labels, find the state maps and the mask, read the true poses (one-line errors)."""
    gt, dataset = _gt_folder(Path(gt_dir))
    lp = gt / "labels.npy"
    try:
        labels = np.load(lp, allow_pickle=False)
    except Exception as err:  # noqa: BLE001
        raise file_error(lp, f"not a readable .npy array ({type(err).__name__})") from None
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) == 0:
        raise file_error(lp, f"expected a non-empty 1D integer array, got shape {labels.shape} ({labels.dtype})")
    paths = {int(s): gt / f"state_{int(s):03d}.mrc" for s in np.unique(labels)}
    missing = [p for p in paths.values() if not p.exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise file_error(missing[0], f"ground-truth map not found{more}")
    first = paths[min(paths)]
    vol, info = read_volume(first)
    if len(set(vol.shape)) != 1:
        raise file_error(first, f"map is not cubic (shape {vol.shape})")
    if vol.shape[0] % 2:
        raise file_error(first, f"odd box {vol.shape[0]}; the CryoBench FSC needs an even box")
    if not info.apix > 0:
        raise file_error(first, "header has no pixel size")
    rot, shifts, p_apix = _true_poses(dataset, len(labels))
    mask = gt / "mask.mrc"
    out = GroundTruth(
        gt_dir=gt,
        labels=labels.astype(np.int64),
        map_paths=paths,
        box=int(vol.shape[0]),
        apix=float(info.apix),
        mask_path=mask if mask.exists() else None,
        rotations=rot,
        shifts_A=shifts,
        particles_apix=p_apix,
        pseudo_symmetry=_pseudo_symmetry(gt / "meta.json"),
    )
    out._cache[min(paths)] = vol
    return out


def load_gt_atoms(gt_dir: str | Path) -> GroundTruthAtoms | None:
    """The simulation's ``gt/atoms.npz`` (per-state atoms in the maps' frame), or None."""
    path = Path(gt_dir) / "atoms.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as f:
        return GroundTruthAtoms(f["coords_A"], f["present"], f["chain_ids"], f["moving"])
