"""``cryohet analyze RUN``: latent plots, cluster maps, traversals, parts and an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def analyze(
    run: Path = typer.Argument(..., help="Run directory of any method."),
    k: int = typer.Option(20, "--k", help="Number of k-means clusters (one map each)."),
    pcs: int = typer.Option(2, "--pcs", help="Principal components to traverse (maps at percentiles 5..95)."),
    pc_steps: int = typer.Option(10, "--pc-steps", help="Maps per PC traversal."),
    pc_exact: bool = typer.Option(
        False, "--pc-exact", help="Decode PC points on the axis itself, not at the nearest particle."
    ),
    path: Optional[tuple[int, int]] = typer.Option(
        None,
        "--path",
        help="Two particle rows I J (0-based): maps along the straight latent path between them.",
        show_default=False,
    ),
    path_steps: int = typer.Option(10, "--path-steps", help="Maps along --path (ends included)."),
    umap: bool = typer.Option(
        True, "--umap/--no-umap", help="Also a UMAP embedding (needs the optional umap-learn package)."
    ),
    max_points: int = typer.Option(
        50_000, "--max-points", help="UMAP and scatter plots use a subsample above this size."
    ),
    gt: Optional[Path] = typer.Option(
        None, "--gt", help="Simulated dataset (or its gt/ folder): evaluation and true-state colours."
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: RUN/analyze)."),
    no_volumes: bool = typer.Option(
        False, "--no-volumes", help="Skip decoding maps (latent plots, clusters and report only)."
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    device: str = typer.Option("cpu", "--device", help="Device on which the method decodes volumes (cpu, cuda)."),
    seed: int = typer.Option(0, "--seed", help="Seed of k-means, subsampling and UMAP."),
) -> None:
    """Show what changes in a heterogeneity run: PCA/UMAP of the latents, k-means cluster maps,
    principal-component traversals, part maps and motions, and a single-file HTML report.

    Writes RUN/analyze/ (report.html, kmeans<k>/, pc1/ ..., parts/, plots/, summary.json);
    the run's own files are never changed.
    """
    from ..analysis.analyze import analyze_run
    from ..analysis.config import AnalyzeConfig, build_config

    if path is not None and None in path:  # older typer gives (None, None) for an absent tuple option
        path = None
    cfg = build_config(
        AnalyzeConfig,
        run=run,
        out=out,
        k=k,
        pcs=pcs,
        pc_steps=pc_steps,
        pc_on_data=not pc_exact,
        path=path,
        path_steps=path_steps,
        umap=umap,
        max_points=max_points,
        gt=gt,
        volumes=not no_volumes,
        report=not no_report,
        device=device,
        seed=seed,
    )
    res = analyze_run(cfg)
    typer.echo(f"wrote {res.report_path if cfg.report else res.out_dir}")


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
