"""Auto-decoding: the latents of given images fitted against a fixed decoder.

An amortised encoder gives each image a latent in one pass, but on images it never saw
that latent is only as good as the encoder generalises. Semi-amortised inference (Kim et
al. 2018) starts from the encoder's latent and takes a few gradient steps on the image's
own objective, the decoder fixed: the data term of the image at its pose plus the prior's
``prior_weight * |z|^2 / 2`` (the mean's part of ``beta * KL(q || N(0, I))``). Rows are
independent: each image's latent moves only with its own objective.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["fit_latents"]


def fit_latents(
    objective: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    steps: int,
    lr: float = 0.05,
    prior_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents ``(B, zdim)`` minimising ``objective(z) + prior_weight * |z|^2 / 2`` row by row.

    Args:
        objective: per-image data term ``(B,)`` of latents ``(B, zdim)``, differentiable in
            them (the decoder's own parameters are not changed: only the latents get
            gradients).
        z0: the starting latents (the encoder's means).
        steps: Adam steps (0 returns ``z0``).
        lr: Adam's step size, in latent units per step.
        prior_weight: weight of the Gaussian prior's ``|z|^2 / 2``.

    Returns:
        Each image's best latent among the iterates (``z0`` included) and its objective
        ``(B,)`` (prior included), both detached: no image ends worse than it started.
    """
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)

    def total(zz: torch.Tensor) -> torch.Tensor:
        return objective(zz) + 0.5 * prior_weight * (zz**2).sum(dim=1)

    best_z = z.detach().clone()
    best = torch.full((len(z),), float("inf"), dtype=z.dtype, device=z.device)
    for _ in range(max(0, int(steps))):
        value = total(z)
        _keep_better(best_z, best, z.detach(), value.detach())
        (grad,) = torch.autograd.grad(value.sum(), z)
        z.grad = grad
        opt.step()
    with torch.no_grad():
        _keep_better(best_z, best, z.detach(), total(z))
    return best_z, best


def _keep_better(best_z: torch.Tensor, best: torch.Tensor, z: torch.Tensor, value: torch.Tensor) -> None:
    """Rows where ``value`` beats ``best``: ``best_z`` and ``best`` take ``z`` and ``value`` (in place)."""
    better = value < best
    best_z[better] = z[better]
    best[better] = value[better]
