"""``cryohet select RUN ... --out subset.star|subset.cs|ind.pkl``: particle subsets in the user's format."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..analysis.config import SelectConfig
from .options import build_config, config_option, examples

__all__ = ["register"]


def _int_list(text: str) -> list[int]:
    from ..errors import ConfigError

    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"--clusters: expected cluster numbers like 3,5 (got '{text}')") from None


def select(
    run: Path = typer.Argument(..., help="Run directory of any method."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="subset.star (RELION), subset.cs (cryoSPARC) or ind.pkl (cryoDRGN)."
    ),
    clusters: Optional[str] = config_option(
        SelectConfig,
        "clusters",
        "--clusters",
        help="k-means clusters to keep, e.g. 3,5 (as cryohet analyze numbered them).",
    ),
    k: Optional[int] = config_option(SelectConfig, "k", "--k"),
    latent_box: Optional[str] = config_option(
        SelectConfig,
        "latent_box",
        "--latent-box",
        help="Ranges to keep, e.g. 'pc1:-2.5:2,pc2:0:3' (PCs count from 1) "
        "or 'z0:0:' (latent dim 0, open upper bound).",
    ),
    indices: Optional[Path] = config_option(SelectConfig, "indices", "--indices"),
    complement: bool = config_option(SelectConfig, "complement", "--complement"),
    analyze_dir: Optional[Path] = config_option(SelectConfig, "analyze_dir", "--analyze-dir"),
    epoch: Optional[int] = config_option(SelectConfig, "epoch", "--epoch", "-e"),
    overwrite: bool = config_option(SelectConfig, "overwrite", "--overwrite", help="Replace existing output files."),
    allow_unfinished: bool = config_option(
        SelectConfig,
        "allow_unfinished",
        "--allow-unfinished",
        help="Use a run that is unfinished (still training, killed or failed) as it is.",
    ),
) -> None:
    """Write the chosen particles back in their original format with their original indices.

    .star keeps every column of a STAR source and its optics table; .cs keeps the source
    .cs rows unchanged (and writes OUT_passthrough.cs when the run used a passthrough
    file); .pkl is a cryoDRGN ind.pkl of 0-based indices into the original particle stack.
    """
    from ..analysis.select import select_particles

    cfg = build_config(
        SelectConfig,
        run=run,
        out=out,
        clusters=_int_list(clusters) if clusters is not None else None,
        k=k,
        latent_box=latent_box,
        indices=indices,
        complement=complement,
        analyze_dir=analyze_dir,
        epoch=epoch,
        overwrite=overwrite,
        allow_unfinished=allow_unfinished,
    )
    sel = select_particles(cfg)
    typer.echo(f"wrote {len(sel.rows)} of {sel.n_run} particles to {sel.out}")
    for extra in sel.extra_files:
        typer.echo(f"wrote the matching passthrough rows to {extra}")


def register(app: typer.Typer) -> None:
    app.command(
        "select",
        epilog=examples(
            "cryohet select runs/spire --clusters 3,5 --out subset.star",
            "cryohet select runs/spire --latent-box 'pc1:-2.5:2' --out subset.cs",
            "cryohet select runs/spire --clusters 0 --complement -o ind.pkl",
        ),
    )(select)
