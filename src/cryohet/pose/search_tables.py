"""The per-image tables of an ab initio search: poses found, latents learnt beside them, scores.

A method that searches poses against a (heterogeneous) neural field keeps, per image,

* its pose (:class:`~cryohet.pose.table.PoseTable`: RELION ``A``, ``x_img = A @ x_vol``,
  and the origin shift in Å), set by each search and refined by gradient steps;
* its latent (:class:`~cryohet.latents.table.LatentTable`, auto-decoded; none when the
  run is homogeneous), which chooses the grid the image is searched against: the field
  is cached at the k-means centres of the latents (:func:`.field_search.latent_cluster_centres`)
  and each image meets the grid of the centre nearest its latent;
* the data term of its best pose (``best_scores``, NaN until searched).

DRGN-AI's search epochs and HetACUMN's warm start use these tables. A heterogeneous field
with a latent per image keeps the search working on data with several states: when the
field was homogeneous (``z = 0``) for the search, the search on simulated assembly
(2 000 images, 10 states, SNR 0.1, D=32) found 3 % of the poses, against 79-91 % with the
latent table.

The tables stay outside any DDP-wrapped module. Rows updated on a rank are gathered by
every rank (``sync``); with one process that is a no-op.
"""

from __future__ import annotations

import numpy as np
import torch

from ..latents.table import LatentTable
from ..training.distributed import all_gather_rows, get_dist
from .field_search import latent_cluster_centres, local_search_against_field, search_against_field
from .local_search import LocalSchedule
from .search import SearchResult, SearchSchedule
from .table import PoseTable

__all__ = ["SearchTables"]


class SearchTables:
    """Poses, latents (``zdim`` > 0) and best scores of ``n`` images.

    The latents start as ``N(0, 0.1^2)`` draws of generator ``seed`` (the same on every rank).
    """

    def __init__(self, n: int, zdim: int, seed: int = 0, device: torch.device | str = "cpu") -> None:
        self.poses = PoseTable(n, device=device)
        self.latents = LatentTable(n, zdim, seed=seed, device=device) if zdim else None
        self.best_scores = torch.full((n,), float("nan"), device=device)

    def __len__(self) -> int:
        return len(self.poses)

    def latents_of(self, index: torch.Tensor) -> torch.Tensor | None:
        """Latents ``(B, zdim)`` of the rows ``index`` (no gradient); None when homogeneous."""
        return None if self.latents is None else self.latents.z[index]

    def cluster_centres(self, clusters: int, seed: int = 0) -> np.ndarray | None:
        """k-means centres ``(k, zdim)`` of all the latents (rank 0 decides); None when homogeneous."""
        return latent_cluster_centres(None if self.latents is None else self.latents.z, clusters, seed)

    @torch.no_grad()
    def search(
        self,
        index: torch.Tensor,
        observed: torch.Tensor,
        ctf: torch.Tensor,
        sources: tuple[list, torch.Tensor | None],
        likelihood,
        schedule: SearchSchedule,
        radius_px: float,
        chunk_images: int,
    ) -> SearchResult:
        """Search the images ``index`` (their DFTs ``observed`` on the full disc, CTFs ``ctf``)
        against ``sources`` (:func:`~.field_search.field_sources`, one grid per centre), each
        against the grid nearest its latent, the last round on the band of ``radius_px``; the
        poses found and their scores go into the tables, on every rank."""
        res = search_against_field(
            observed, ctf, self.latents_of(index), sources, likelihood, schedule, radius_px, chunk_images
        )
        self.store(index, res)
        return res

    @torch.no_grad()
    def refine(
        self,
        index: torch.Tensor,
        observed: torch.Tensor,
        ctf: torch.Tensor,
        sources: tuple[list, torch.Tensor | None],
        likelihood,
        schedule: LocalSchedule,
    ) -> SearchResult:
        """Refine the table's poses of the images ``index`` by a local search against
        ``sources`` on ``likelihood``'s band; the refined poses go into the tables."""
        rotations, shifts_A = self.poses.poses(index)
        res = local_search_against_field(
            observed, ctf, self.latents_of(index), sources, likelihood, rotations, shifts_A, schedule
        )
        self.store(index, res)
        return res

    def store(self, index: torch.Tensor, res: SearchResult) -> None:
        """Poses and scores of ``res`` into rows ``index`` (every rank gets every rank's rows)."""
        self.poses.set(index, res.rotations, res.shifts_A)
        self.poses.sync_rows(index)
        self.best_scores[index] = res.scores
        if get_dist().enabled:
            rows = all_gather_rows(index)
            self.best_scores[rows] = all_gather_rows(self.best_scores[index])

    def step_latents(self, index: torch.Tensor, grad: torch.Tensor, lr: float, world_size: int = 1) -> None:
        """One row-wise Adam step on the latents ``index`` with the gradient of the loss of
        this rank (averaged over ``world_size`` ranks), then the rows synchronised."""
        if self.latents is None:
            return
        self.latents.step(index, grad / world_size if world_size > 1 else grad, lr)
        self.latents.sync_rows(index)

    def median_score(self) -> float | None:
        """Median best score of the searched images; None before any search."""
        found = torch.isfinite(self.best_scores)
        return float(self.best_scores[found].median()) if found.any() else None

    def state_dict(self) -> dict:
        """``poses``, ``best_scores`` and (heterogeneous) ``latents``: a checkpoint's keys."""
        state = {"poses": self.poses.state_dict(), "best_scores": self.best_scores.cpu()}
        if self.latents is not None:
            state["latents"] = self.latents.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.poses.load_state_dict(state["poses"])
        self.best_scores.copy_(state["best_scores"].to(self.best_scores.device))
        if self.latents is not None:
            self.latents.load_state_dict(state["latents"])
