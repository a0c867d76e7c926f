"""``cryohet demo --out DIR``: simulate -> train CryoSPIRE -> evaluate -> report (``make demo``)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from ..workflows.demo import DemoConfig
from .options import config_error, config_option, examples

__all__ = ["register"]


def demo(
    out: Path = typer.Option(Path("demo_run"), "--out", "-o", help="Output folder (a killed demo continues there)."),
    n_images: int = config_option(DemoConfig, "n_images", "--n-images", "-n", help="Simulated particles."),
    box: int = config_option(DemoConfig, "box", "--box", "-D"),
    epochs_a: int = config_option(DemoConfig, "epochs_a", "--epochs-a", help="CryoSPIRE stage-A epochs."),
    epochs_b: int = config_option(DemoConfig, "epochs_b", "--epochs-b", help="CryoSPIRE stage-B epochs."),
    device: str = config_option(DemoConfig, "device", "--device", help="cpu or cuda."),
    analyze: bool = config_option(DemoConfig, "analyze", "--analyze/--no-analyze"),
) -> None:
    """Simulate a small igg-1d dataset, train CryoSPIRE and the consensus, evaluate both, print the table."""
    from ..workflows.demo import run_demo

    try:
        cfg = DemoConfig(
            out=out, n_images=n_images, box=box, epochs_a=epochs_a, epochs_b=epochs_b, device=device, analyze=analyze
        )
    except ValidationError as err:
        raise config_error(err, DemoConfig) from None
    run_demo(cfg)


def register(app: typer.Typer) -> None:
    app.command(
        "demo",
        epilog=examples("cryohet demo --out demo_run", "cryohet demo -o demo_gpu --device cuda -n 20000 -D 64"),
    )(demo)
