"""Per-image poses: the pose table and the hierarchical pose search (shared by methods that
estimate poses: DRGN-AI, and later HetACUMN's pose head checks)."""

from .scoring import ImageTerms, image_terms, score_each, score_shared
from .search import SearchResult, SearchSchedule, search_poses, shift_extent_px
from .table import PoseTable

__all__ = [
    "ImageTerms",
    "PoseTable",
    "SearchResult",
    "SearchSchedule",
    "image_terms",
    "score_each",
    "score_shared",
    "search_poses",
    "shift_extent_px",
]
