"""What a run directory says about itself, for the report: source data, method, resolved
configuration, provenance stamp and the per-epoch training log (read only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import InputError, RunDirError
from ..training.rundir import RunDir

__all__ = ["RunInfo", "read_run_info", "gt_labels_for_run", "run_particle_source"]


@dataclass
class RunInfo:
    """``config`` is the run's config.yaml without ``_provenance``/``resolved``, which are
    kept apart; ``log`` holds the rows of ``train_log.jsonl``."""

    path: Path
    method: str
    config: dict[str, Any]
    provenance: dict[str, Any]
    resolved: dict[str, Any]
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def data_path(self) -> str | None:
        data = self.config.get("data")
        if isinstance(data, dict):
            return None if data.get("path") is None else str(data["path"])
        return None if data is None else str(data)

    def config_yaml(self) -> str:
        """The resolved config as YAML text (``resolved`` block included)."""
        body = dict(self.config)
        if self.resolved:
            body["resolved"] = self.resolved
        return yaml.safe_dump(body, sort_keys=False)


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Read ``config.yaml`` and ``train_log.jsonl`` of ``run_dir`` (nothing is written)."""
    from ..methods.base import read_run_header

    raw = read_run_header(run_dir)
    config = {k: v for k, v in raw.items() if not str(k).startswith("_") and k != "resolved"}
    return RunInfo(
        path=Path(run_dir),
        method=str(raw.get("method")),
        config=config,
        provenance=dict(raw.get("_provenance") or {}),
        resolved=dict(raw.get("resolved") or {}),
        log=RunDir(run_dir).read_log(),
    )


def run_particle_source(run_dir: str | Path, raw: dict[str, Any]):
    """The :class:`~cryohet.io.source.ParticleSource` a run was trained on (its config's
    ``data`` entry: the particle file, pickles, ``ind``, ...), from the raw config ``raw``."""
    from ..io.source import ParticleSource

    data = raw.get("data")
    if not isinstance(data, dict) or not data.get("path"):
        raise RunDirError(f"{run_dir}/config.yaml: no 'data' entry naming the particle file")
    return ParticleSource.build(**{k: v for k, v in data.items() if k in ParticleSource.model_fields})


def gt_labels_for_run(info: RunInfo, labels: np.ndarray, n: int) -> np.ndarray:
    """True labels of the run's ``n`` particles: all of them, or the run's ``ind.pkl`` subset."""
    if len(labels) == n:
        return labels
    data = info.config.get("data")
    ind = data.get("ind") if isinstance(data, dict) else None
    if ind:
        from ..io.cryodrgn import read_ind_pkl

        ix = read_ind_pkl(ind)
        if len(ix) == n and ix.max() < len(labels):
            return labels[ix]
    raise InputError(f"the ground truth labels {len(labels)} particles but the run {info.path} has {n}")
