"""A trained cryoSPHERE run through the common method interface: maps and atomic models at any latent.

The run keeps its own copy of the input model (``input_model.*``), so it reloads after the
original file moved. Positions inside the network are Å from the box centre; atomic
models come out in the input model's frame (a ``centred_model`` run writes them centred
at 0 again), every atom moved with its residue's transform.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import RunDirError
from ...io.atomic import AtomicModel
from ...representations.residue_model import ResidueModel
from ...training.checkpoint import load_checkpoint
from ...training.rundir import RunDir, as_run_dir
from ..base import TrainedModel, read_run_config, register_method, resolved_geometry, state_dict_mismatch
from .build import build_network, load_residues, model_frame_centre_A
from .config import SphereConfig
from .network import SphereNetwork

__all__ = ["SphereModel", "input_model_path"]


def input_model_path(run: RunDir) -> Path:
    """The run's copy of its input model."""
    found = sorted(run.path.glob("input_model.*"))
    if not found:
        raise RunDirError(f"{run.path}: no input_model.* (the run's copy of its atomic model)")
    return found[0]


@register_method
class SphereModel(TrainedModel):
    """Maps are the moved residue Gaussians at a latent; models are the moved input atoms."""

    method = "sphere"
    version = 7

    def __init__(
        self, run: RunDir, cfg: SphereConfig, residues: ResidueModel, net: SphereNetwork, box: int, apix: float
    ) -> None:
        super().__init__(run, box, apix)
        self.cfg = cfg
        self.residues = residues
        self.net = net.eval()
        self.device = net.base_A.device

    @classmethod
    def load(cls, run_dir: str | Path | RunDir, device: str = "cpu") -> SphereModel:
        run = as_run_dir(run_dir)
        run.require("config.yaml", "model.pt", "latents.npy")
        raw, cfg = read_run_config(run.path, SphereConfig)
        box, apix = resolved_geometry(raw, run, cfg.box)
        residues = load_residues(cfg, box, apix, input_model_path(run))
        state = load_checkpoint(run.model, map_location=device)
        if "network" not in state:
            raise RunDirError(f"{run.model}: not a cryoSPHERE model file")
        net = build_network(cfg, residues, box, apix)
        try:
            net.load_weights(state["network"])
        except RuntimeError as err:
            raise state_dict_mismatch(run.model, err) from None
        return cls(run, cfg, residues, net.to(device), box, apix)

    def expected_zdim(self) -> int | None:
        return self.cfg.zdim

    def _z(self, zs: np.ndarray) -> torch.Tensor:
        z = np.atleast_2d(np.asarray(zs, dtype=np.float32))
        if z.shape[1] != self.cfg.zdim:
            raise RunDirError(f"latent has {z.shape[1]} values but the run has zdim {self.cfg.zdim}")
        return torch.as_tensor(z, device=self.device)

    @torch.no_grad()
    def residue_positions_A(self, zs: np.ndarray) -> np.ndarray:
        """``(M, R, 3)`` residue centres, Å from the box centre, at each latent row."""
        z = self._z(zs)
        return self.net.deformed(z, self.net.memberships(len(z), sample=False)).cpu().numpy()

    @torch.no_grad()
    def volume(self, z: np.ndarray, box: int | None = None, apix: float | None = None) -> np.ndarray:
        moved = self.net.deformed(self._z(z), self.net.memberships(1, sample=False))[0]
        vol = self.net.mixture(moved).to_volume(box or self.box, apix or self.apix)
        return vol.cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def atomic_models(self, zs: np.ndarray, chunk: int = 16) -> tuple[AtomicModel, np.ndarray]:
        """Every atom at each latent row, in the input model's frame (module docstring)."""
        z = self._z(zs)
        frame = model_frame_centre_A(self.box, self.apix)  # box centre in the map frame
        shift = frame if self.cfg.centred_model else 0.0  # what was added to the file's coordinates
        atoms = self.residues.atoms
        out = np.empty((len(z), len(atoms), 3))
        w = self.net.memberships(1, sample=False)
        for a in range(0, len(z), chunk):
            rot, t = self.net.residue_transforms(z[a : a + chunk], w)  # about the box centre
            for j in range(len(rot)):
                r, tt = rot[j].double().cpu().numpy(), t[j].double().cpu().numpy()
                # x' = R (x - c) + t + c in the map frame, c the box centre; back to the file's frame
                moved = self.residues.move_atoms(r, tt + frame - np.einsum("nij,j->ni", r, np.full(3, frame)))
                out[a + j] = moved - shift
        source = _file_frame(atoms, shift)
        return source, out

    def segment_labels(self) -> np.ndarray:
        """``(R,)`` segment of each residue (-1 for residues that may not move)."""
        return self.net.segment_labels()

    def residue_parts(self) -> np.ndarray:
        """``(R,)`` the domain of each residue (residues that move together, from
        ``extras/segmentation.npz``: ``residue_domain``, or for runs written before it the
        segment's ``domain``; the segment itself before the run wrote it); residues that may
        not move form one more part."""
        labels = self.segment_labels()
        seg = self.run.load_extra("segmentation")
        if seg is not None and "residue_domain" in seg:
            part = np.asarray(seg["residue_domain"])
        else:
            domain = np.asarray(seg["domain"]) if seg is not None and "domain" in seg else np.arange(self.cfg.segments)
            part = np.where(labels >= 0, domain[np.maximum(labels, 0)], -1)
        return np.where(part >= 0, part, part.max(initial=-1) + 1).astype(np.int64)

    @torch.no_grad()
    def gaussians_at(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """The residue Gaussians at ``z`` (Å from the box centre), with their domain as the part."""
        moved = self.residue_positions_A(np.atleast_2d(z))[0]
        mix = self.net.mixture(torch.as_tensor(moved, device=self.device))
        n = len(moved)
        amps = mix.amplitudes.reshape(-1)[-n:].cpu().numpy()
        return {
            "centres_A": moved,
            "amplitudes": amps,
            "occupancy": np.ones(n),
            "sigmas_A": np.full(n, self.cfg.sigma_A),
            "part": self.residue_parts(),
        }

    def describe(self) -> dict:
        d = super().describe()
        d.update({"segments": self.cfg.segments, "residues": len(self.residues), "atoms": len(self.residues.atoms)})
        return d


def _file_frame(atoms: AtomicModel, shift: float) -> AtomicModel:
    """``atoms`` with the centring shift taken off again (the input file's coordinates)."""
    if not shift:
        return atoms
    import copy

    out = copy.copy(atoms)
    out.coords_A = atoms.coords_A - shift
    return out
