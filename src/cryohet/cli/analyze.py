"""``cryohet analyze RUN``: latent plots, cluster maps, traversals, parts and an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..analysis.config import AnalyzeConfig
from .options import build_config, config_option, examples

__all__ = ["register"]


def analyze(
    run: Path = typer.Argument(..., help="Run directory of any method."),
    k: int = config_option(AnalyzeConfig, "k", "--k", help="Number of k-means clusters (one map each)."),
    pcs: int = config_option(AnalyzeConfig, "pcs", "--pcs"),
    pc_steps: int = config_option(AnalyzeConfig, "pc_steps", "--pc-steps"),
    pc_exact: bool = typer.Option(
        False, "--pc-exact", help="Decode PC points on the axis itself, not at the nearest particle."
    ),
    path: Optional[tuple[int, int]] = config_option(
        AnalyzeConfig,
        "path",
        "--path",
        help="Two particle rows I J (0-based): maps along a latent path between them (see --path-mode).",
        show_default=False,
    ),
    path_steps: int = config_option(AnalyzeConfig, "path_steps", "--path-steps"),
    path_mode: str = config_option(AnalyzeConfig, "path_mode", "--path-mode"),
    path_neighbors: int = config_option(AnalyzeConfig, "path_neighbors", "--path-neighbors"),
    umap: bool = config_option(AnalyzeConfig, "umap", "--umap/--no-umap"),
    max_points: int = config_option(AnalyzeConfig, "max_points", "--max-points"),
    gt: Optional[Path] = config_option(AnalyzeConfig, "gt", "--gt"),
    out: Optional[Path] = config_option(AnalyzeConfig, "out", "--out", "-o"),
    no_volumes: bool = typer.Option(
        False, "--no-volumes", help="Skip decoding maps (latent plots, clusters and report only)."
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    device: str = config_option(AnalyzeConfig, "device", "--device"),
    seed: int = config_option(AnalyzeConfig, "seed", "--seed", help="Seed of k-means, subsampling and UMAP."),
    epoch: Optional[int] = config_option(AnalyzeConfig, "epoch", "--epoch", "-e"),
    overwrite: bool = config_option(
        AnalyzeConfig, "overwrite", "--overwrite", help="Replace an existing analysis folder (as a whole)."
    ),
    allow_unfinished: bool = config_option(
        AnalyzeConfig,
        "allow_unfinished",
        "--allow-unfinished",
        help="Use a run that is unfinished (still training, killed or failed) as it is.",
    ),
) -> None:
    """Show what changes in a heterogeneity run: PCA/UMAP of the latents, k-means cluster maps,
    principal-component traversals, part maps and motions, and a single-file HTML report.

    Writes RUN/analyze/ (report.html, kmeans<k>/, pc1/ ..., parts/, plots/, summary.json);
    the run's own files are never changed. An existing analysis folder is replaced only
    with --overwrite, and then as a whole (no file of the old analysis remains).
    """
    from ..analysis.analyze import analyze_run

    if path is not None and None in path:  # older typer gives (None, None) for an absent tuple option
        path = None
    # The negative flags only switch things off; unset, the config's defaults hold.
    switched_off = {
        name: False for name, flag in (("pc_on_data", pc_exact), ("volumes", no_volumes), ("report", no_report)) if flag
    }
    cfg = build_config(
        AnalyzeConfig,
        run=run,
        out=out,
        k=k,
        pcs=pcs,
        pc_steps=pc_steps,
        path=path,
        path_steps=path_steps,
        path_mode=path_mode,
        path_neighbors=path_neighbors,
        umap=umap,
        max_points=max_points,
        gt=gt,
        device=device,
        seed=seed,
        overwrite=overwrite,
        allow_unfinished=allow_unfinished,
        epoch=epoch,
        **switched_off,
    )
    res = analyze_run(cfg)
    typer.echo(f"wrote {res.report_path if cfg.report else res.out_dir}")


def register(app: typer.Typer) -> None:
    app.command(
        "analyze",
        epilog=examples(
            "cryohet analyze runs/spire",
            "cryohet analyze runs/spire --gt data/igg1d --k 10 --device cuda",
            "cryohet analyze runs/spire --path 12 345 --no-umap -o runs/spire/path",
        ),
    )(analyze)
