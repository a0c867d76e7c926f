"""cryoSPHERE (Ducrocq et al. 2025): an atomic model's residues as Gaussians, a learned
segmentation over residue index, and rigid per-image segment motions decoded from a latent.

``train_sphere(SphereConfig)`` trains into a run directory; :class:`SphereModel` loads one
through the common method interface (maps and atomic models at any latent). The residue
model is shared (:mod:`cryohet.representations.residue_model`), as are the encoder
(:mod:`cryohet.networks.encoders`) and the check that the model sits in the consensus map
(:mod:`cryohet.reconstruction.model_fit`). Only the config is imported eagerly (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports
from .config import SphereConfig, SphereOptimConfig

if TYPE_CHECKING:
    from .model import SphereModel
    from .trainer import train_sphere

__all__ = ["SphereConfig", "SphereOptimConfig", "SphereModel", "train_sphere"]

_LAZY = {"SphereModel": ".model", "train_sphere": ".trainer"}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
