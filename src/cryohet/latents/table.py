"""Per-image latent table optimised by auto-decoding (CryoSPIRE, DRGN-AI), with row-wise Adam.

Each image's ``z`` is a free parameter updated only when the image is in the batch.
A plain ``torch.optim.Adam`` on the whole table would keep moving absent rows with
stale momentum; here each row keeps its own Adam moments and step count, so a row's
trajectory does not depend on what else was in the batch.
"""

from __future__ import annotations

import torch

from ..training.distributed import all_gather_rows, get_dist

__all__ = ["LatentTable"]


class LatentTable:
    """``(N, zdim)`` latents with per-row Adam state (``lr``, betas 0.9/0.999)."""

    def __init__(self, n: int, zdim: int, init_std: float = 0.1, seed: int = 0, device="cpu") -> None:
        gen = torch.Generator().manual_seed(seed)
        self.z = (torch.randn(n, zdim, generator=gen) * init_std).to(device)
        self.m = torch.zeros_like(self.z)
        self.v = torch.zeros_like(self.z)
        self.steps = torch.zeros(n, dtype=torch.int64, device=device)
        self.beta1, self.beta2, self.eps = 0.9, 0.999, 1e-8

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index`` as a leaf tensor that collects gradients."""
        return self.z[index].clone().requires_grad_(True)

    @torch.no_grad()
    def step(self, index: torch.Tensor, grad: torch.Tensor, lr: float | torch.Tensor) -> None:
        """One Adam step on rows ``index`` (unique) with gradient ``grad`` (B, zdim); ``lr`` a
        number or a ``(zdim,)`` tensor (one learning rate per column)."""
        self.steps[index] += 1
        t = self.steps[index].to(self.z.dtype)[:, None]
        m = self.beta1 * self.m[index] + (1 - self.beta1) * grad
        v = self.beta2 * self.v[index] + (1 - self.beta2) * grad * grad
        self.m[index], self.v[index] = m, v
        m_hat = m / (1 - self.beta1**t)
        v_hat = v / (1 - self.beta2**t)
        self.z[index] -= lr * m_hat / (torch.sqrt(v_hat) + self.eps)

    @torch.no_grad()
    def assign(self, index: torch.Tensor, values: torch.Tensor) -> None:
        """Set rows ``index`` to ``values`` and restart their Adam moments and step counts."""
        self.z[index] = values.to(self.z.dtype)
        self.m[index] = 0.0
        self.v[index] = 0.0
        self.steps[index] = 0

    @torch.no_grad()
    def sync_rows(self, index: torch.Tensor) -> None:
        """Make the rows ``index`` this rank updated identical on every rank.

        Every rank gathers every rank's updated rows (indices, values, Adam moments and step
        counts) and writes them into its table: ``O(rows x zdim)`` per step, never a dense
        ``N x zdim`` all-reduce. Ranks update disjoint rows (a sampler gives each image to
        one rank). No-op with one process.
        """
        if not get_dist().enabled:
            return
        idx = index.to(self.steps.device).long()
        ints = all_gather_rows(torch.stack([idx, self.steps[idx]], dim=1))
        floats = all_gather_rows(torch.cat([self.z[idx], self.m[idx], self.v[idx]], dim=1))
        rows = ints[:, 0]
        d = self.z.shape[1]
        self.steps[rows] = ints[:, 1]
        self.z[rows], self.m[rows], self.v[rows] = floats[:, :d], floats[:, d : 2 * d], floats[:, 2 * d :]

    def reset_optimizer(self) -> None:
        self.m.zero_()
        self.v.zero_()
        self.steps.zero_()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"z": self.z, "m": self.m, "v": self.v, "steps": self.steps}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        dev = self.z.device
        self.z, self.m, self.v = state["z"].to(dev), state["m"].to(dev), state["v"].to(dev)
        self.steps = state["steps"].to(dev)
