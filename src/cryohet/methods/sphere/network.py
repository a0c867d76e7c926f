"""cryoSPHERE's network: image -> latent -> per-segment rigid motions -> moved residue Gaussians.

* encoder: the shared :class:`~cryohet.networks.encoders.ImageEncoder` (amortised), or a
  per-image latent table (auto-decoding) kept by the trainer;
* decoder: an MLP ``z -> (512, 512) -> 6 K`` (``9 K`` for ``"sixd"``; LeakyReLU), per
  segment a translation and three rotation numbers (an axis-angle vector, or the paper's
  quaternion vector part) or six (``"sixd"``: two columns of the rotation matrix;
  :mod:`.deformation`). Its last layer starts at zero, so training
  starts from the input model. Translations are ``10 Å`` per output unit (a Fab moves tens
  of Å; unit outputs keep Adam's steps in Å-sized units);
* segmentation: :class:`~.segmentation.ChainSegmentation` over the movable residues (one
  mixture per chain); residues of chains that are not movable keep membership 0 (they
  never move);
* the moved residues are a batched :class:`~cryohet.representations.GaussianMixture`
  (Å from the box centre, width ``sigma_A``, mass = electron count times a learned global
  scale): the render seam makes the images.
"""

from __future__ import annotations

import numpy as np
import roma
import torch
from torch import nn

from ...geometry.rigid import kabsch
from ...networks.encoders import ImageEncoder
from ...representations.gaussian_mixture import GaussianMixture, peak_from_mass
from ...representations.residue_model import ResidueModel
from .deformation import apply_transforms, decoded_rotvecs, residue_transforms, rotation_outputs
from .hinge_turns import HingeTurns
from .segmentation import ChainSegmentation

__all__ = ["SphereNetwork", "TRANSLATION_UNIT_A"]

TRANSLATION_UNIT_A = 10.0


class SphereNetwork(nn.Module):
    """The trainable parts of cryoSPHERE for one residue model (module docstring)."""

    def __init__(
        self,
        residues: ResidueModel,
        box: int,
        apix: float,
        zdim: int = 8,
        segments: int = 20,
        sigma_A: float = 2.0,
        encoder_box: int = 64,
        amortised: bool = True,
        rotation: str = "quaternion",
        turn_slots: int = 0,
    ) -> None:
        super().__init__()
        self.box, self.apix, self.zdim, self.sigma_A = int(box), float(apix), int(zdim), float(sigma_A)
        self.rotation = rotation
        self.per_segment = 3 + rotation_outputs(rotation)
        self.register_buffer("base_A", torch.as_tensor(residues.centres_A(box, apix), dtype=torch.float32))
        self.register_buffer("electrons", torch.as_tensor(residues.electrons, dtype=torch.float32))
        movable = torch.as_tensor(residues.movable)
        self.register_buffer("movable_index", torch.nonzero(movable).squeeze(1))
        self.n_segments = int(segments)
        _, chain_of = np.unique(np.asarray(residues.chain_ids)[residues.movable], return_inverse=True)
        self.segmentation = ChainSegmentation(torch.as_tensor(chain_of), self.n_segments)
        self.encoder = ImageEncoder(box, zdim, encoder_box) if amortised else None
        self.decoder = nn.Sequential(
            nn.Linear(zdim, 512),
            nn.LeakyReLU(),
            nn.Linear(512, 512),
            nn.LeakyReLU(),
            nn.Linear(512, self.per_segment * segments),
        )
        nn.init.zeros_(self.decoder[-1].weight)
        nn.init.zeros_(self.decoder[-1].bias)
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.turns = HingeTurns(turn_slots)

    @property
    def n_residues(self) -> int:
        return int(self.base_A.shape[0])

    def memberships(self, batch: int, sample: bool | None = None) -> torch.Tensor:
        """``(batch, R, K)``: the segmentation's rows for movable residues, 0 for the others."""
        w_mov = self.segmentation(batch, sample)
        w = w_mov.new_zeros(batch, self.n_residues, self.n_segments)
        return w.index_copy(1, self.movable_index, w_mov)

    def segment_labels(self) -> np.ndarray:
        """``(R,)`` each residue's segment at the segmentation's means (-1: may not move)."""
        labels = np.full(self.n_residues, -1, dtype=np.int64)
        w = self.segmentation(1, sample=False)[0]  # (movable residues, K)
        labels[self.movable_index.cpu().numpy()] = w.argmax(dim=-1).cpu().numpy()
        return labels

    def motions(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-segment axis-angle vectors ``(B, K, 3)`` (radians) and translations ``(B, K, 3)`` Å."""
        out = self.decoder(z).reshape(z.shape[0], self.n_segments, self.per_segment)
        return decoded_rotvecs(out[..., 3:], self.rotation), out[..., :3] * TRANSLATION_UNIT_A

    def piece_labels(self) -> np.ndarray:
        """``(R,)`` each residue's rigid piece: its segment, split where a turning domain
        (:mod:`.hinge_turns`) ends, so that one piece is all inside a domain that turns or all
        outside every one (``segment + n_segments * (j + 1)`` inside domain ``j``, the segment
        outside; -1: may not move). Without turns the pieces are the segments."""
        labels = self.segment_labels()
        for j, turn in enumerate(self.turns.turns):
            inside = np.zeros(self.n_residues, dtype=bool)
            inside[turn.residues.cpu().numpy()] = True
            labels = np.where(inside & (labels >= 0), labels % self.n_segments + self.n_segments * (j + 1), labels)
        return labels

    def segment_motions(self, z: torch.Tensor, groups: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Each segment's motion at latents ``z``: axis-angle vectors ``(B, K, 3)`` (radians)
        and translations ``(B, K, 3)`` Å, as :meth:`motions` gives them. With domain turns
        (:mod:`.hinge_turns`) the decoder's alone would leave the turns out, so each segment's
        is then the rigid motion that best fits its residues where they end up (Kabsch over
        the residues the segment holds most; identity for an empty segment). ``groups``
        (``(R,)``, -1 for none; e.g. :meth:`piece_labels`) fits the motion of each group of
        residues instead, ``K = groups.max() + 1``."""
        if groups is None and not len(self.turns):
            return self.motions(z)
        labels = torch.as_tensor(self.segment_labels() if groups is None else groups, device=z.device)
        n_groups = self.n_segments if groups is None else int(labels.max()) + 1
        moved = self.deformed(z, self.memberships(1, sample=False))
        rotvecs = z.new_zeros(len(z), n_groups, 3)
        shifts = z.new_zeros(len(z), n_groups, 3)
        for k in range(n_groups):
            sel = torch.nonzero(labels == k).squeeze(1)
            if len(sel) < 3:
                continue
            src = self.base_A[sel].expand(len(z), -1, -1).double()
            rot, t = kabsch(src, moved[:, sel].double(), torch.ones(src.shape[:2], dtype=src.dtype, device=z.device))
            rotvecs[:, k], shifts[:, k] = roma.rotmat_to_rotvec(rot).to(z), t.to(z)
        return rotvecs, shifts

    def residue_transforms(self, z: torch.Tensor, memberships: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-residue ``x -> R x + t`` at latents ``z``: rotations ``(B, R, 3, 3)`` and
        translations ``(B, R, 3)`` Å (about the box centre), the decoder's segment motions
        blended by ``memberships`` and then any searched domain's turn (:mod:`.hinge_turns`)."""
        rotvecs, shifts = self.motions(z)
        rot, shift = residue_transforms(memberships, rotvecs, shifts)
        return self.turns.compose(rot, shift, z)

    def deformed(self, z: torch.Tensor, memberships: torch.Tensor) -> torch.Tensor:
        """Moved residue centres ``(B, R, 3)`` Å from the box centre."""
        return apply_transforms(*self.residue_transforms(z, memberships), self.base_A)

    def load_weights(self, state: dict) -> None:
        """``load_state_dict`` that also reads networks saved before domain turns existed."""
        key = "turns._extra_state"
        self.load_state_dict(state if key in state else {**state, key: HingeTurns().get_extra_state()})

    def mixture(self, centres_A: torch.Tensor) -> GaussianMixture:
        """Residue Gaussians at ``centres_A`` (``(B, R, 3)`` or ``(R, 3)``)."""
        amp = peak_from_mass(self.electrons, self.sigma_A) * torch.exp(self.log_scale)
        amp = amp.expand(centres_A.shape[:-1])
        return GaussianMixture(centres_A, amp, torch.tensor(self.sigma_A, device=centres_A.device))
