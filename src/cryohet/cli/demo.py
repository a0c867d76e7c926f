"""``cryohet demo --out DIR``: simulate -> train CryoSPIRE -> evaluate -> report (``make demo``)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from ..config import validation_message
from ..errors import ConfigError

__all__ = ["register"]


def demo(
    out: Path = typer.Option(Path("demo_run"), "--out", "-o", help="Output folder (a killed demo continues there)."),
    n_images: int = typer.Option(2000, "--n-images", "-n", help="Simulated particles."),
    box: int = typer.Option(40, "--box", "-D", help="Image size in pixels."),
    epochs_a: int = typer.Option(12, "--epochs-a", help="CryoSPIRE stage-A epochs."),
    epochs_b: int = typer.Option(12, "--epochs-b", help="CryoSPIRE stage-B epochs."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    analyze: bool = typer.Option(True, "--analyze/--no-analyze", help="Write the HTML report."),
) -> None:
    """Simulate a small igg-1d dataset, train CryoSPIRE and the consensus, evaluate both, print the table."""
    from ..workflows.demo import DemoConfig, run_demo

    try:
        cfg = DemoConfig(
            out=out, n_images=n_images, box=box, epochs_a=epochs_a, epochs_b=epochs_b, device=device, analyze=analyze
        )
    except ValidationError as err:
        raise ConfigError(validation_message(err)) from None
    run_demo(cfg)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
