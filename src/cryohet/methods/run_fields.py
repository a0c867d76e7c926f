"""Config fields every training method has, declared once (pydantic ``Field``s with their
defaults and help), so the methods' configs and their ``--help`` pages cannot drift apart.
Pydantic only: the command line reads these as it starts."""

from __future__ import annotations

from typing import Any

from pydantic import Field

__all__ = ["invert_field", "load_field", "snapshot_every_field"]


def invert_field() -> Any:
    """``invert: bool | None``: multiply the images by -1 (None: decided from the data)."""
    return Field(
        None, description="multiply images by -1; default: decided from the data's contrast (protein must be bright)"
    )


def snapshot_every_field() -> Any:
    """``snapshot_every: int``: keep a snapshot after every N-th epoch (0: none)."""
    return Field(
        1,
        ge=0,
        description="keep the model, latents and poses after every N-th epoch in RUN/epochs/ (and after "
        "the last; 0: none), for --epoch in analyze, volumes and select",
    )


def load_field() -> Any:
    """``load: str | None``: start the networks from another run's weights."""
    return Field(
        None,
        description="start the network from another run's weights (its run directory or model.pt; same "
        "network options)",
    )
