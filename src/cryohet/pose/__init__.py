"""Per-image poses: the pose table, the hierarchical pose search and the local refinement search
(shared by methods that estimate poses: DRGN-AI's search epochs and HetACUMN's ab initio warm start)."""

from .field_search import field_sources, latent_cluster_centres, search_against_field
from .local_search import LocalSchedule, local_search
from .scoring import ImageTerms, image_terms, score_each, score_shared
from .search import SearchResult, SearchSchedule, search_poses, shift_extent_px
from .search_tables import SearchTables
from .table import PoseTable

__all__ = [
    "ImageTerms",
    "LocalSchedule",
    "PoseTable",
    "SearchResult",
    "SearchSchedule",
    "SearchTables",
    "field_sources",
    "image_terms",
    "latent_cluster_centres",
    "local_search",
    "score_each",
    "score_shared",
    "search_against_field",
    "search_poses",
    "shift_extent_px",
]
