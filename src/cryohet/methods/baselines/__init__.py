"""Baselines with run directories like any other method: the yardsticks of evaluation.

* :mod:`.homogeneous` — one consensus map (latents zeros ``(N, 1)``);
* :mod:`.oracle` — per-state maps from the true labels (latents one-hot ``(N, K)``);
* :mod:`.classify3d` — K-class EM 3D classification with fixed poses (latents = posteriors);
* :mod:`.pca` — probabilistic PCA / 3DVA-like EM (latents = component coordinates).

Each has a config (``*Config``, a :class:`~cryohet.config.StrictModel` embedding
``data: ParticleSource``), a ``train_*`` API function returning the run directory, and a
registered :class:`~cryohet.methods.base.TrainedModel` so ``load_run`` works.

Importing this package also registers the wrappers of external programs
(:mod:`cryohet.methods.external`), since :func:`cryohet.methods.base._import_builtin_methods`
imports only the built-in method packages.
"""

from .. import external as _external  # noqa: E402,F401  (registers the 'cryodrgn' wrapper)
from .classify3d import Classify3DConfig, Classify3DModel, train_classify3d
from .homogeneous import HomogeneousConfig, HomogeneousModel, train_homogeneous
from .oracle import OracleConfig, OracleModel, train_oracle
from .pca import PCAConfig, PCAModel, train_pca

__all__ = [
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
