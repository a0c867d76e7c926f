"""Method-agnostic analysis of run directories: see what moves.

* :func:`analyze_run` (``cryohet analyze``) — PCA/UMAP of the latents, k-means cluster maps,
  principal-component traversals and latent paths, part maps and part motion for
  part-aware methods, evaluation against a ground truth, and the single-file HTML report
  (modules :mod:`.embedding`, :mod:`.clustering`, :mod:`.series`, :mod:`.parts`,
  :mod:`.plots`, :mod:`.report`, :mod:`.runinfo`); the report's particle lasso and
  downloads (``ind.pkl``, ``selection.txt``, ``subset.star``) are :mod:`.report_select`;
* :func:`select_particles` (``cryohet select``) — particle subsets written back as STAR,
  cryoSPARC ``.cs`` or cryoDRGN ``ind.pkl`` with original indices (:mod:`.select`);
* :mod:`.htmlcheck` — self-containedness and headless-Chromium checks of a report;
* :mod:`.volumes` — ``cryohet volumes``: maps at given latents.
"""

from __future__ import annotations

from ..lazy import lazy_exports

__all__ = ["analyze_run", "AnalysisResult", "AnalyzeConfig", "select_particles", "Selection", "SelectConfig"]

# Imported on first use, so light modules (``htmlcheck`` for scripts/check_report.py) do not
# pull in torch and the method packages.
_LAZY = {
    "analyze_run": ".analyze",
    "AnalysisResult": ".analyze",
    "AnalyzeConfig": ".config",
    "SelectConfig": ".config",
    "select_particles": ".select",
    "Selection": ".select",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
