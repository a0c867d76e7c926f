"""Method-agnostic metrics: FSC and CryoBench AUC, per-conformation protocols,
map alignment, pose errors after global alignment, clustering scores.

Pure numbers on arrays (no file is read or written here; :mod:`cryohet.evaluation` does
that). Submodules: :mod:`.fsc` (curves, AUC, resolution), :mod:`.per_conformation`,
:mod:`.alignment`, :mod:`.pose_error`, :mod:`.clustering`, :mod:`.parts`.
"""

from .alignment import AlignmentResult, RigidTransform, align_maps, masked_correlation, transform_volume
from .clustering import (
    ClusterMatch,
    ClusterScores,
    cluster_scores,
    kmeans_scores,
    latent_spread,
    match_clusters,
)
from .fsc import FSCCurve, auc, crossing_frequency, fsc_cryobench, fsc_standard, resolution_A
from .per_conformation import PerConformationResult, PerImageResult, per_conformation_fsc, per_image_fsc
from .pose_error import (
    GlobalAlignment,
    RotationErrors,
    TranslationErrors,
    align_rotations,
    class_average,
    per_state_rotation_errors,
    rotation_errors,
    rotation_errors_per_class,
    translation_errors,
)

__all__ = [
    "AlignmentResult",
    "RigidTransform",
    "align_maps",
    "masked_correlation",
    "transform_volume",
    "ClusterMatch",
    "ClusterScores",
    "cluster_scores",
    "kmeans_scores",
    "latent_spread",
    "match_clusters",
    "FSCCurve",
    "auc",
    "crossing_frequency",
    "fsc_cryobench",
    "fsc_standard",
    "resolution_A",
    "PerConformationResult",
    "PerImageResult",
    "per_conformation_fsc",
    "per_image_fsc",
    "GlobalAlignment",
    "RotationErrors",
    "TranslationErrors",
    "align_rotations",
    "class_average",
    "rotation_errors",
    "per_state_rotation_errors",
    "rotation_errors_per_class",
    "translation_errors",
]
