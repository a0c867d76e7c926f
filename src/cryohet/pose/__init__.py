"""Per-image poses: the pose table and the hierarchical pose search (shared by methods that
estimate poses: DRGN-AI's search epochs and HetACUMN's ab initio warm start)."""

from .field_search import field_sources, latent_cluster_centres, search_against_field
from .scoring import ImageTerms, image_terms, score_each, score_shared
from .search import SearchResult, SearchSchedule, search_poses, shift_extent_px
from .table import PoseTable

__all__ = [
    "ImageTerms",
    "PoseTable",
    "SearchResult",
    "SearchSchedule",
    "field_sources",
    "image_terms",
    "latent_cluster_centres",
    "score_each",
    "score_shared",
    "search_against_field",
    "search_poses",
    "shift_extent_px",
]
