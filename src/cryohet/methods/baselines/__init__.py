"""Baselines with run directories like any other method: the yardsticks of evaluation.

* :mod:`.homogeneous` — one consensus map (latents zeros ``(N, 1)``);
* :mod:`.oracle` — per-state maps from the true labels (latents one-hot ``(N, K)``);
* :mod:`.classify3d` — K-class EM 3D classification with fixed poses (latents = posteriors);
* :mod:`.pca` — probabilistic PCA / 3DVA-like EM (latents = component coordinates).

Each has a config (``*Config``, a :class:`~cryohet.config.StrictModel` embedding
``data: ParticleSource``), a ``train_*`` API function returning the run directory, and a
registered :class:`~cryohet.methods.base.TrainedModel` so ``load_run`` works.

Only the configs are imported eagerly (:mod:`.config`, pure pydantic); models and
``train_*`` load on first use (PEP 562), so the CLI reads the defaults without torch.
:func:`cryohet.methods.base._import_builtin_methods` imports the modules that register
themselves (the four baselines and :mod:`cryohet.methods.external`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports
from .config import BaselineConfig, Classify3DConfig, HomogeneousConfig, OracleConfig, PCAConfig

if TYPE_CHECKING:
    from .classify3d import Classify3DModel, train_classify3d
    from .homogeneous import HomogeneousModel, train_homogeneous
    from .oracle import OracleModel, train_oracle
    from .pca import PCAModel, train_pca

__all__ = [
    "BaselineConfig",
    "HomogeneousConfig",
    "HomogeneousModel",
    "train_homogeneous",
    "OracleConfig",
    "OracleModel",
    "train_oracle",
    "Classify3DConfig",
    "Classify3DModel",
    "train_classify3d",
    "PCAConfig",
    "PCAModel",
    "train_pca",
]

_LAZY = {
    "HomogeneousModel": ".homogeneous",
    "train_homogeneous": ".homogeneous",
    "OracleModel": ".oracle",
    "train_oracle": ".oracle",
    "Classify3DModel": ".classify3d",
    "train_classify3d": ".classify3d",
    "PCAModel": ".pca",
    "train_pca": ".pca",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
