"""Per-epoch snapshots: what a run's top-level files would hold had training stopped there.

cryoDRGN users look at ``z.N.pkl`` and ``weights.N.pkl`` to see how a run converged and to
analyse an earlier epoch. cryohet keeps, every ``snapshot_every`` epochs (and always after
the last), the method's own ``model.pt``, ``latents.npy`` and ``poses.npz`` in::

    RUN/epochs/epoch_0005/    model.pt  latents.npy  poses.npz   (after epoch 5, counted from 1)

Unlike ``checkpoints/`` (the trainer's whole state, for ``--resume``, pruned), snapshots
are what :class:`~cryohet.training.rundir.RunDir` ``(run, epoch=5)`` reads, so every
command that takes ``--epoch`` (``analyze``, ``volumes``, ``select``) sees the run as it
was after that epoch, through the method's ordinary loader. A method takes part by giving
its trainer a ``snapshot(run_view)`` method that writes those files into the view (rank 0).
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["snapshot_dir", "snapshot_epochs", "wants_snapshot", "SNAPSHOT_FOLDER"]

SNAPSHOT_FOLDER = "epochs"
_PATTERN = re.compile(r"^epoch_(\d{4,})$")


def snapshot_dir(run_dir: str | Path, epoch: int) -> Path:
    """``RUN/epochs/epoch_0005``: the snapshot after epoch 5 (epochs counted from 1)."""
    return Path(run_dir) / SNAPSHOT_FOLDER / f"epoch_{int(epoch):04d}"


def snapshot_epochs(run_dir: str | Path) -> list[int]:
    """The epochs that have a complete snapshot (``model.pt`` and ``latents.npy``), ascending."""
    folder = Path(run_dir) / SNAPSHOT_FOLDER
    if not folder.is_dir():
        return []
    found = []
    for d in folder.iterdir():
        m = _PATTERN.match(d.name)
        if m and (d / "model.pt").exists() and (d / "latents.npy").exists():
            found.append(int(m.group(1)))
    return sorted(found)


def wants_snapshot(epoch: int, n_epochs: int, every: int) -> bool:
    """Whether epoch ``epoch`` (counted from 1) of ``n_epochs`` gets a snapshot: every
    ``every`` epochs and the last one; never with ``every`` 0."""
    return every > 0 and (epoch % every == 0 or epoch == n_epochs)
