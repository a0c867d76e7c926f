"""The residue model and the network of a cryoSPHERE run, built the same way for training and reloading."""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import InputError
from ...io.atomic import read_atomic_model
from ...representations.residue_model import ResidueModel, residue_model
from .config import SphereConfig
from .network import SphereNetwork

__all__ = ["load_residues", "build_network", "model_frame_centre_A"]


def load_residues(cfg: SphereConfig, box: int, apix: float, path: str | Path | None = None) -> ResidueModel:
    """The residue model of ``cfg.model`` (or ``path``, a copy of it) in the map frame of a
    ``box``-pixel map at ``apix`` Å/px (a centred model moved to the box centre)."""
    atoms = read_atomic_model(path or cfg.model)
    if cfg.centred_model:
        atoms.coords_A = atoms.coords_A + model_frame_centre_A(box, apix)
    return residue_model(atoms, cfg.chains)


def model_frame_centre_A(box: int, apix: float) -> float:
    """Where a centred model's origin goes in the map frame: ``(box // 2) * apix`` Å per axis."""
    return (int(box) // 2) * float(apix)


def build_network(cfg: SphereConfig, residues: ResidueModel, box: int, apix: float) -> SphereNetwork:
    """The network of a run (the same on every rank and when a run is reloaded)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        try:
            return SphereNetwork(
                residues, box, apix, zdim=cfg.zdim, segments=cfg.segments, sigma_A=cfg.sigma_A,
                encoder_box=cfg.encoder_box, amortised=cfg.encoder == "amortised", rotation=cfg.rotation,
                turn_slots=cfg.zdim // 2 if cfg.domain_turns else 0,
            )  # fmt: skip
        except ValueError as err:  # segments vs chains and residues
            raise InputError(f"{cfg.model}: {err} (--segments, --chains)") from None
