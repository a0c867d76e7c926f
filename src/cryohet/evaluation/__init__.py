"""Evaluation of a run directory or of map files against ground truth: it reads the files,
computes the numbers with :mod:`cryohet.metrics` (pure numbers), and writes
``metrics.json``, plots and reports.

Submodules: :mod:`.evaluate` (``cryohet evaluate``: CryoBench per-conformation AUC and
the rest for any method's run), :mod:`.evaluate_plots`, :mod:`.ground_truth` (the ground
truth a simulation wrote), :mod:`.fsc_report` (map pairs and files, behind ``cryohet fsc``).
"""

from .fsc_report import FSCReport, compare_map_files, compare_maps

__all__ = ["FSCReport", "compare_map_files", "compare_maps"]
