"""What every method does first with the particles a user gave: read them, check what the
method needs (CTF, poses, a large enough box), decide the contrast, and open the dataset.

Shared by DRGN-AI, HetACUMN, cryoSPHERE and the baselines (each wrote the same lines
before). A missing need is one :class:`~cryohet.errors.InputError` line that says what to
pass; the contrast is measured (:func:`~cryohet.data.contrast.decide_invert`: protein
bright after ``invert``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.contrast import decide_invert
from ..data.dataset import ParticleDataset
from ..errors import InputError
from ..reconstruction.from_particles import dataset_pixel_size

__all__ = ["OpenedParticles", "open_particles"]


@dataclass
class OpenedParticles:
    """The dataset of a run: ``box`` (px, after ``--box`` cropping) and ``apix`` (Å/px) at
    that box, ``invert`` (images multiplied by -1) and the contrast measurement behind it."""

    meta: Any
    dataset: ParticleDataset
    invert: bool
    contrast: Any
    box: int
    apix: float

    @property
    def n(self) -> int:
        return len(self.dataset)


def open_particles(
    cfg,
    method_name: str,
    *,
    poses_needed: str | None = None,
    normalize: bool = True,
    min_box: int | None = None,
    box_advice: str = "use at least {min_box}, -D/--box",
) -> OpenedParticles:
    """Open ``cfg.data`` for ``method_name`` (as users know it: "DRGN-AI", "the pca
    baseline"); ``poses_needed`` is the end of the one-line error when the particles have
    no poses (None: poses optional); ``min_box`` the smallest working box (px), refused
    with ``box_advice``. ``cfg`` has ``data``, ``invert``, ``box`` and ``seed``."""
    meta = cfg.data.load()
    if meta.ctf is None:
        raise InputError(f"{cfg.data.path}: {method_name} needs CTF parameters (a .star/.cs, or --ctf ctf.pkl)")
    if poses_needed is not None and not meta.has_poses:
        raise InputError(f"{cfg.data.path}: {method_name} {poses_needed}")
    invert, contrast = decide_invert(meta, cfg.invert, cfg.box, cfg.seed)
    dataset = ParticleDataset(meta, box=cfg.box, normalize=normalize, invert=invert, seed=cfg.seed)
    box = int(dataset.box)
    if min_box is not None and box < min_box:
        raise InputError(f"{cfg.data.path}: a box of {box} px is too small ({box_advice.format(min_box=min_box)})")
    return OpenedParticles(meta, dataset, bool(invert), contrast, box, float(dataset_pixel_size(dataset)))
