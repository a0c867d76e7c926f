"""cryoSPHERE's training objective on one batch, through the shared render seam.

    loss = mean_b [ data_b + beta_z KL_z,b ] + beta_seg KL_seg / n_images
           + n_pix (w_cont L_cont + w_clash L_clash + w_body L_body + w_rigid L_rigid)

* ``data_b``: the run's likelihood (white-noise Gaussian, the same object every method
  scores with) of image ``b`` against the moved residue Gaussians rendered with its pose,
  CTF and shift (:func:`~cryohet.representations.score_batch`). Decision: the paper's
  un-centred correlation is replaced by the likelihood, so that cryoSPHERE's maps and
  scores are comparable with every other method's; the global amplitude scale the
  correlation ignores is learned instead (``SphereNetwork.log_scale``).
* ``KL_z``: the amortised posterior against N(0, I); ``KL_seg``: the segmentation's
  variational terms against their priors, counted once per pass over the data.
* the restraints (:mod:`.restraints`) are per band pixel in the paper (its data term is a
  per-pixel correlation); here they are multiplied by ``n_pix``, the band's pixels, so
  that the paper's weights (0.1 and 0.1) keep their balance against a per-image
  likelihood summed over pixels.
* ``L_body``: after a domain search, the pull of each image's moving domains towards
  their searched placements (:class:`.body_targets.BodyTargets`, Å^2), weighted the same way.
* ``L_rigid``: after a domain search, how far each searched domain is from moving
  rigidly (:func:`.restraints.rigidity_loss`, Å^2), weighted the same way.
* ``L_ring``: while the pull lasts, the latent means' distance from the ring of their
  searched turns (:meth:`.body_targets.BodyTargets.latent_ring`, latent units^2), added
  per image with weight ``w_ring`` (not times ``n_pix``: it is in latent units, beside KL_z).

    loss += mean_b [ w_ring L_ring,b ]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...imaging.likelihood import ImageLikelihood
from ...networks.encoders import kl_standard_normal, reparameterise
from ...representations.render import BandBatch, score_batch
from .body_targets import BodyTargets
from .network import SphereNetwork
from .restraints import clash_loss, continuity_loss

__all__ = ["ObjectiveWeights", "BatchTerms", "batch_objective", "linear_beta", "cyclic_beta"]


def linear_beta(progress: float) -> float:
    """The paper's KL weight for the latent and the segment centres and widths: rising
    linearly from 0 to 1 at mid-training (``progress`` in [0, 1] of the whole run), then 1.
    Measured on the test hinge (tests/test_sphere_hinge.py): with beta 1 from the start
    the posterior collapsed (latent std 0.03, no motion learned in 12 epochs); annealed,
    the 40° hinge was found after 6 epochs."""
    return float(min(1.0, max(0.0, 2.0 * progress)))


def cyclic_beta(progress: float, cycles: int = 5) -> float:
    """The paper's KL weight for the segment proportions: ``cycles`` cycles over the run,
    each rising from 0 to 1 over its first half, then 1."""
    phase = (float(progress) * cycles) % 1.0
    return float(min(1.0, 2.0 * phase))


@dataclass(frozen=True)
class ObjectiveWeights:
    beta_z: float = 1.0
    beta_segmentation: float = 1.0
    beta_proportions: float = 1.0
    continuity: float = 0.1
    clash: float = 0.1
    body: float = 0.0
    rigidity: float = 0.0
    latent_ring: float = 0.0


@dataclass
class BatchTerms:
    """The loss and its parts for one batch (per-image tensors are detached)."""

    loss: torch.Tensor
    data: torch.Tensor
    kl_z: torch.Tensor
    continuity: torch.Tensor
    clash: torch.Tensor
    z_mean: torch.Tensor
    body: torch.Tensor
    rigidity: torch.Tensor
    latent_ring: torch.Tensor


def batch_objective(
    net: SphereNetwork,
    bb: BandBatch,
    images: torch.Tensor | None,
    likelihood: ImageLikelihood,
    weights: ObjectiveWeights,
    n_images: int,
    bonded_to_next: torch.Tensor,
    clash_candidates: torch.Tensor,
    z: torch.Tensor | None = None,
    targets: BodyTargets | None = None,
) -> BatchTerms:
    """The objective of one batch (module docstring). ``images (B, D, D)`` feed the encoder;
    an auto-decoding run passes its table's rows as ``z`` instead; ``targets`` (with
    ``weights.body > 0``) adds the pull towards the searched domain placements."""
    if z is None:
        if net.encoder is None or images is None:
            raise ValueError("an auto-decoding network needs the latents z")
        mean, std = net.encoder(images)
        z_used = reparameterise(mean, std) if net.training else mean
        kl_z = kl_standard_normal(mean, std)
    else:
        mean, z_used = z, z
        kl_z = torch.zeros(z.shape[0], device=z.device)
    w = net.memberships(len(bb))
    moved = net.deformed(z_used, w)
    data = score_batch(net.mixture(moved), bb, likelihood)
    cont = continuity_loss(moved, net.base_A, bonded_to_next)
    clash = clash_loss(moved, clash_candidates)
    n_pix = float((bb.band.weights > 0).sum())
    body = (
        targets.loss(moved, bb.index, net.base_A)
        if targets is not None and weights.body > 0
        else moved.new_zeros(moved.shape[0])
    )
    rigid = (
        targets.rigidity(moved, net.base_A)
        if targets is not None and weights.rigidity > 0
        else moved.new_zeros(moved.shape[0])
    )
    ring = (
        targets.latent_ring(mean, bb.index)
        if targets is not None and weights.latent_ring > 0
        else moved.new_zeros(moved.shape[0])
    )
    kl_centre, kl_width, kl_prop = net.segmentation.kl_terms()
    kl_seg = weights.beta_segmentation * (kl_centre + kl_width) + weights.beta_proportions * kl_prop
    loss = (
        (data + weights.beta_z * kl_z + weights.latent_ring * ring).mean()
        + kl_seg / max(1, n_images)
        + n_pix
        * (
            weights.continuity * cont.mean()
            + weights.clash * clash.mean()
            + weights.body * body.mean()
            + weights.rigidity * rigid.mean()
        )
    )
    return BatchTerms(
        loss,
        data.detach(),
        kl_z.detach(),
        cont.detach(),
        clash.detach(),
        mean.detach(),
        body.detach(),
        rigid.detach(),
        ring.detach(),
    )
