"""The pose search against a (heterogeneous) neural field, as the methods that train one run it.

A field is too slow to query per pose, so it is cached as Fourier grids once per search
window (:func:`field_sources`): one grid per latent cluster centre (the k-means of the
images' latents, :func:`latent_cluster_centres`), or one grid when the run is homogeneous.
:func:`search_against_field` then scores each image against the grid of its nearest
centre with the shared hierarchical search (:func:`~cryohet.pose.search.search_poses`),
on the band the caller is training at. Shared by DRGN-AI's search epochs (latents from
its per-image table) and HetACUMN's ab initio warm start (latents from its encoder).

Units: band radii in Fourier pixels of the image box; poses come back as RELION ``A``
rotations and origins in Å (:class:`~cryohet.pose.search.SearchResult`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..training.distributed import broadcast_object, get_dist
from .local_search import LocalSchedule, local_search
from .search import SearchResult, SearchSchedule, search_poses

__all__ = ["latent_cluster_centres", "field_sources", "search_against_field", "local_search_against_field"]


def latent_cluster_centres(z: torch.Tensor | None, clusters: int, seed: int = 0) -> np.ndarray | None:
    """k-means centres ``(k, zdim)`` of the latents ``z (N, zdim)`` with ``k = min(clusters, N)``;
    rank 0 decides and every rank gets its answer. None for a homogeneous run (``z`` None)."""
    if z is None:
        return None
    centres = None
    if get_dist().is_main:
        from sklearn.cluster import KMeans

        values = z.detach().cpu().numpy().astype(np.float64)
        k = int(min(clusters, len(values)))
        centres = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(values).cluster_centers_
    return np.asarray(broadcast_object(centres), dtype=np.float32)


@torch.no_grad()
def field_sources(
    field,
    radius_px: float,
    box: int,
    centres: np.ndarray | None,
    *,
    oversample: int = 2,
    from_map: bool = True,
    amp: bool = False,
) -> tuple[list, torch.Tensor | None]:
    """The field cached as Fourier grids out to ``radius_px + 2`` (below Nyquist): one per
    centre ``(k, zdim)``, or one for a homogeneous field, filled as ``from_map`` says
    (:meth:`~cryohet.representations.NeuralField.fourier_grid`); ``amp`` runs the network
    under bf16 autocast (CUDA only; phases and values stay float32)."""
    device = next(field.parameters()).device
    r = min(radius_px, box / 2 - 1) + 2
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
        if centres is None:
            return [field.fourier_grid(r, None, oversample=oversample, from_map=from_map)], None
        c = torch.as_tensor(centres, device=device)
        grids = [field.fourier_grid(r, c[i : i + 1], oversample=oversample, from_map=from_map) for i in range(len(c))]
    return grids, c


@torch.no_grad()
def search_against_field(
    observed: torch.Tensor,
    ctf: torch.Tensor,
    z: torch.Tensor | None,
    sources: tuple[list, torch.Tensor | None],
    likelihood,
    schedule: SearchSchedule,
    radius_px: float,
    chunk_images: int,
) -> SearchResult:
    """Search the images ``observed`` (their DFT on the full disc, CTFs ``ctf``) against
    ``sources`` (:func:`field_sources`), each against the grid of the centre nearest its
    latent ``z`` (all against the one grid when ``z`` or the centres are None); the last
    round's band is ``radius_px`` (at least the schedule's start radius)."""
    groups = _nearest_centre(observed, z, sources)
    schedule = replace(schedule, radius_end_px=max(radius_px, schedule.radius_start_px))
    return search_poses(observed, ctf, groups, sources[0], likelihood, schedule, chunk_images)


@torch.no_grad()
def local_search_against_field(
    observed: torch.Tensor,
    ctf: torch.Tensor,
    z: torch.Tensor | None,
    sources: tuple[list, torch.Tensor | None],
    likelihood,
    rotations: torch.Tensor,
    shifts_A: torch.Tensor,
    schedule: LocalSchedule,
) -> SearchResult:
    """Refine the poses ``rotations`` (RELION ``A``) and ``shifts_A`` (Å) of the images
    ``observed`` by a local search (:func:`~cryohet.pose.local_search.local_search`) against
    ``sources``, each image against the grid of the centre nearest its latent ``z``, on
    ``likelihood``'s band."""
    groups = _nearest_centre(observed, z, sources)
    return local_search(observed, ctf, groups, sources[0], likelihood, rotations, shifts_A, schedule)


def _nearest_centre(observed: torch.Tensor, z: torch.Tensor | None, sources: tuple[list, torch.Tensor | None]):
    """Index of each image's grid: the centre nearest its latent (0 when homogeneous)."""
    centres = sources[1]
    if centres is None or z is None:
        return torch.zeros(len(observed), dtype=torch.long, device=observed.device)
    return torch.cdist(z.to(centres.dtype), centres).argmin(dim=1)
