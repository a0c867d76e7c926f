"""The typed options of the hierarchical pose search (:func:`cryohet.pose.search_poses`)
against a neural field cached as Fourier grids, shared by the methods that search poses
(DRGN-AI's search epochs, HetACUMN's ab initio warm start). Pydantic only, so the command
line reads them without importing torch; :meth:`SearchConfig.schedule` builds the
:class:`~cryohet.pose.search.SearchSchedule` of a box.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ..config import StrictModel

if TYPE_CHECKING:
    from ..pose.local_search import LocalSchedule
    from ..pose.search import SearchSchedule

__all__ = ["SearchConfig"]


class SearchConfig(StrictModel):
    """The hierarchical pose search of the search epochs."""

    base_level: int = Field(2, ge=0, le=4, description="SO(3) grid level of the first round (2: 4 608 rotations)")
    rounds: int = Field(4, ge=0, description="refinement rounds (each one level finer)")
    keep: int = Field(8, gt=0, description="poses kept per image between rounds")
    shift_extent_px: float | None = Field(
        None, ge=0, description="shifts searched within +- this many pixels (default: 0.15 x the box, at most 20)"
    )
    shift_n: int = Field(14, gt=0, description="shift grid points per axis in the first round")
    radius_start_px: float | None = Field(
        None, gt=0, description="band radius of the first search round (default: the box's 32 Å resolution, "
        "box x apix / 32 Å, at least 6 px: DRGN-AI's 12 px at 128 px and ~2.7 Å/px; below 6 px a search from a blob "
        "did not converge at D=32. A fixed 6 px at D=64 and 6 Å/px (64 Å) missed the best pose of 20 % of the images "
        "by > 30° even against the true map; 10 px: none. On simulated assembly (2 000 images, SNR 0.1, D=32, "
        "9 Å/px) 10 search epochs from the default 9 px found the structure (50 % within 10°, 38 % at the dimer's "
        "180° mate), from 5 px they did not (96° median); on 300 images of one IgG at D=32 and 12 Å/px, where 32 Å "
        "is 12 of 16 px, 6 px converged for every seed tried and 12 px not always)",
    )  # fmt: skip
    radius_end_px: float | None = Field(
        None,
        gt=0,
        description="band radius the search epochs march to (default: the box's 12 Å resolution, box x apix / 12 Å, "
        "at least start + 6 px, at most Nyquist - 1: DRGN-AI's 32 px at 128 px and ~3 Å/px)",
    )
    clusters: int = Field(
        8, gt=0,
        description="heterogeneous search (ours): images are scored against the field at the centre of their "
        "latent's k-means cluster (one cached Fourier grid per cluster) instead of at their own latent",
    )  # fmt: skip
    refresh_batches: int = Field(
        4, gt=0, description="re-cache the field's Fourier grids every this many batches and search their images "
        "together: the search sees the field as trained so far (DRGN-AI queries its decoder for every batch; once "
        "per epoch did not converge; every 1 or 4 batches converged alike at D=32, 4.3 vs 5.0 deg)",
    )  # fmt: skip
    grid_oversample: int = Field(
        2, ge=1, le=2, description="sampling of the cached Fourier grids (2: half-voxel; 1: the field's voxel). "
        "At 1 with grid_from network, on simulated assembly (2 000 images, SNR 0.1, D=32) the search never found the "
        "structure (112 deg median error after 10 search epochs), where at 2 41 % of the poses sat at the dimer's "
        "180 deg mate after 7, i.e. found it"
    )  # fmt: skip
    grid_from: Literal["map", "network"] = Field(
        "map", description="how the cached grids are filled. map: the network on the field's own voxel lattice "
        "only, inverse-transformed to its real-space map, then padded and transformed with the gridding correction "
        "(the voxel volume's path): grid_oversample^3 fewer network evaluations, which were ~80 % of a "
        "heterogeneous search at D=64, for the same error against the field's own slices (trained field, D=32: "
        "4.0 % against 3.95 % at grid_oversample 2). network: the network at every node of the oversampled grid "
        "(the default before 2026-12-05)"
    )  # fmt: skip
    local_step_deg: float | None = Field(
        None, ge=0, le=20, description="joint epochs: before its training steps, every window of refresh_batches "
        "batches is searched locally around its current poses against the field's cached grids (a pattern search "
        "of 27 rotations x 9 shifts per image from this rotation step, halving to 0.25 deg; pose.local_search) and "
        "the poses move to the best; 0: poses move by gradient descent only. Default: 2 deg in refine mode; off in "
        "abinit, where on igg-1d (D=64, SNR 0.05) a local search against the field left the searched poses where "
        "they were (6.71 -> 6.62 deg median)"
    )  # fmt: skip
    local_after_images: int = Field(
        3000, ge=0, description="refine mode: the local search starts after the field has trained on this many "
        "images in gradient-only joint epochs (at least one epoch). On 300 IgG images at D=32 with poses 8 deg off, "
        "local searches after one epoch (19 steps: an untrained field) drove the poses to 12 deg (31 deg at the 90th "
        "percentile); after 10 epochs (3 000 images) 4 local epochs brought them to 2.1 deg, where gradient descent "
        "alone left 7.3 deg. Ab initio runs start it after the search epochs"
    )  # fmt: skip
    chunk_images: int | None = Field(
        None, gt=0, description="images scored at once in the first round (memory: chunk x rotations x shifts "
        "x 4 bytes, 116 MB per 32 images at level 2); default 32 on a CPU, 256 on a GPU",
    )  # fmt: skip

    def radii_px(self, box: int, apix: float) -> tuple[float, float]:
        """The search's start and end band radii (Fourier px) at ``box`` pixels of ``apix`` Å:
        by default the radii of 32 Å and 12 Å resolution (``box * apix / resolution``)."""
        extent_A = box * float(apix)
        start = self.radius_start_px if self.radius_start_px is not None else max(6.0, extent_A / 32.0)
        end = self.radius_end_px if self.radius_end_px is not None else max(extent_A / 12.0, start + 6.0)
        top = box / 2 - 1
        return min(start, top), min(max(end, start), top)

    def grid_options(self) -> dict:
        """How the cached grids are made: the keyword arguments of
        :func:`~cryohet.pose.field_search.field_sources` (``oversample``, ``from_map``)."""
        return {"oversample": self.grid_oversample, "from_map": self.grid_from == "map"}

    def local_schedule(self, refine: bool) -> LocalSchedule | None:
        """The local search of the joint epochs of a refine (``refine``) or ab initio run (None
        when off); the shift step starts at a quarter of a pixel per degree of rotation step."""
        step = self.local_step_deg if self.local_step_deg is not None else (2.0 if refine else 0.0)
        if step <= 0:
            return None
        from ..pose.local_search import LocalSchedule

        return LocalSchedule(step_deg=step, shift_step_px=step / 4.0)

    def schedule(self, box: int, apix: float) -> SearchSchedule:
        """The search's schedule at ``box`` pixels of ``apix`` Å (8 finer neighbours per kept pose)."""
        from ..pose.search import SearchSchedule, shift_extent_px

        extent = self.shift_extent_px if self.shift_extent_px is not None else shift_extent_px(box)
        start, end = self.radii_px(box, apix)
        return SearchSchedule(self.base_level, self.rounds, self.keep, 8, extent, self.shift_n, start, end)
