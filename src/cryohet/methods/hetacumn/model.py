"""A trained HetACUMN run through the common method interface, with its encoder for new particles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import RunDirError
from ...training.checkpoint import load_checkpoint
from ...training.rundir import RunDir, as_run_dir
from ..base import TrainedModel, read_run_config, register_method, resolved_geometry, state_dict_mismatch
from .config import HetacumnConfig

__all__ = ["HetacumnModel"]


@register_method
class HetacumnModel(TrainedModel):
    """The field (maps at any latent) and the encoder (pose and latent of any image)."""

    method = "hetacumn"
    version = 10

    def __init__(self, run: RunDir, cfg: HetacumnConfig, field, encoder, box: int, apix: float, device: str) -> None:
        super().__init__(run, box, apix)
        self.cfg = cfg
        self.field = field.eval()
        self.encoder = encoder.eval()
        self.device = device
        self.readout = None  # the seed's subspace E-step (latent_readout), set by load

    @classmethod
    def load(cls, run_dir: str | Path | RunDir, device: str = "cpu") -> HetacumnModel:
        from .trainer import build_networks

        run = as_run_dir(run_dir)
        run.require("config.yaml", "model.pt", "latents.npy")
        raw, cfg = read_run_config(run.path, HetacumnConfig)
        box, apix = resolved_geometry(raw, run, cfg.box)
        state = load_checkpoint(run.model, map_location=device)
        if "field" not in state or "encoder" not in state:
            raise RunDirError(f"{run.model}: not a HetACUMN model file")
        field, encoder = build_networks(cfg, box, apix)
        try:
            field.load_state_dict(state["field"])
            encoder.load_state_dict(state["encoder"])
        except RuntimeError as err:
            raise state_dict_mismatch(run.model, err) from None
        model = cls(run, cfg, field.to(device), encoder.to(device), box, apix, device)
        model.image_std = float(raw.get("resolved", {}).get("image_std", 1.0))
        if cfg.latent_readout and cfg.latent_init == "subspace":
            if "latent_readout" not in state:
                raise RunDirError(f"{run.model}: the run reads latents from its seed's subspace, which is missing")
            from ...reconstruction.linear_subspace import SubspaceReadout

            model.readout = SubspaceReadout.from_state_dict(state["latent_readout"], device)
        return model

    def expected_zdim(self) -> int:
        return int(self.cfg.zdim)

    @torch.no_grad()
    def volume(self, z: np.ndarray, box: int | None = None, apix: float | None = None) -> np.ndarray:
        zz = np.asarray(z, dtype=np.float32).reshape(1, -1)
        if zz.shape[1] != self.cfg.zdim:
            raise RunDirError(f"latent has {zz.shape[1]} values but the run has zdim {self.cfg.zdim}")
        zt = torch.as_tensor(zz, device=self.device)
        return self.field.to_volume(box or self.box, apix or self.apix, zt).cpu().numpy().astype(np.float32)

    def encode_particles(self, meta, batch_size: int = 256, in_plane_views: int = 1, input_poses: bool = False):
        """The encoder's latents and poses for particles it never saw (:class:`EncodedDataset`,
        input order). The images are Fourier-cropped to the run's box, inverted as the run's
        were and scaled by the run's image std; particles that do not reach the run's pixel
        size at its box are refused in one line. ``input_poses``: the particles' own poses
        (``meta``'s, e.g. a consensus refinement of them) are their poses, and with the
        readout their latents are read at them."""
        from dataclasses import replace

        from ...errors import InputError
        from .inference import encode_dataset

        dataset, band, likelihood = self._particles(meta)
        poses = None
        if input_poses:
            if meta.rotations is None:
                raise InputError(f"{meta.source or 'particles'}: no poses to use (--poses input needs a refined "
                                 ".star/.cs; --poses encoder predicts them)")  # fmt: skip
            shifts = meta.shifts_A if meta.shifts_A is not None else np.zeros((len(meta), 2))
            poses = np.asarray(meta.rotations, np.float32), np.asarray(shifts, np.float32)
        enc = encode_dataset(self.encoder, self.field, band, likelihood, dataset, self.device, batch_size,
                             in_plane_views, self.readout, poses, self.cfg.latent_encoder_part)  # fmt: skip
        return enc if poses is None else replace(enc, rotations=poses[0], shifts_A=poses[1])

    def search_poses(self, meta, encoded, batch_size: int = 256):
        """Poses of the particles by the shared hierarchical pose search against the run's
        field (:func:`~cryohet.pose.field_search.search_against_field`, the warm start's search
        schedule, its last round on the band of ``warm_start.search.radius_end_px``), each image
        against the field at the centre nearest its encoder latent (:meth:`_field_grids`):
        not amortised (tens of images/s on a CPU) but independent of the encoder's poses, for
        particles the encoder cannot pose. Latents are kept; the score becomes the found
        pose's data term on the search's last band."""
        search = self.cfg.warm_start.search
        schedule = search.schedule(self.box, self.apix)
        chunk = search.chunk_images or (256 if torch.device(self.device).type == "cuda" else 32)

        def find(observed, ctf, z, sources, likelihood, start_rotations, start_shifts_A):
            from ...pose.field_search import search_against_field

            return search_against_field(observed, ctf, z, sources, likelihood, schedule, schedule.radius_end_px, chunk)

        return self._pose_pass(meta, encoded, batch_size, schedule.radius_end_px, find, "global pose search")

    def refine_poses(self, meta, encoded, step_deg: float, batch_size: int = 256):
        """The poses of ``encoded`` (:meth:`encode_particles` or :meth:`search_poses`) refined
        by a local search against the run's field
        (:func:`~cryohet.pose.field_search.local_search_against_field`) on the full band, each
        image against the field at the centre nearest its latent (:meth:`_field_grids`). The
        search starts at ``step_deg`` degrees (shift step ``min(1, step_deg / 4)`` px) and
        halves its steps down to half a pixel's arc at the box edge (``1 / D`` rad; at most
        1°). Latents are kept; the score becomes the refined pose's data term."""
        from ...pose.local_search import LocalSchedule

        schedule = LocalSchedule(
            step_deg=float(step_deg), shift_step_px=min(1.0, float(step_deg) / 4.0),
            min_step_deg=min(1.0, float(np.degrees(1.0 / self.box))),
        )  # fmt: skip

        def refine(observed, ctf, z, sources, likelihood, start_rotations, start_shifts_A):
            from ...pose.field_search import local_search_against_field

            return local_search_against_field(
                observed, ctf, z, sources, likelihood, start_rotations, start_shifts_A, schedule
            )

        return self._pose_pass(meta, encoded, batch_size, self.box / 2, refine, "local pose refinement")

    def refine_latents(self, meta, encoded, steps: int, batch_size: int = 256, lr: float = 0.05):
        """The latents of ``encoded`` fitted to each image at its pose, the field fixed
        (semi-amortised: :func:`~cryohet.latents.fit_latents`, ``steps`` Adam steps of ``lr``
        from the encoder's latent on the image's data term on the full band plus the run's
        ``beta * |z|^2 / 2``; each image keeps its best iterate). For particles whose latent
        the encoder does not generalise to. Poses are kept; the score becomes the fitted
        latent's data term. A homogeneous run (zdim 0) is returned as it is."""
        from dataclasses import replace

        from ...latents.fit import fit_latents
        from .inference import data_terms

        if not self.cfg.zdim or steps <= 0:
            return encoded
        dataset, band, likelihood = self._particles(meta)
        beta = float(self.cfg.optim.beta)
        z_all, score = encoded.z.copy(), np.asarray(encoded.score, np.float32).copy()
        for rows, observed, ctf, z0, rot, shifts in self._batches(dataset, band, encoded, batch_size,
                                                                   "latent refinement"):  # fmt: skip

            def data(z, observed=observed, ctf=ctf, rot=rot[:, None], shifts=shifts[:, None]):
                return data_terms(self.field, band, likelihood, observed, ctf, rot, shifts, z)[:, 0]

            z, value = fit_latents(data, z0, steps, lr, beta)
            z_all[rows] = z.cpu().numpy()
            score[rows] = (value - 0.5 * beta * (z**2).sum(dim=1)).cpu().numpy()
        return replace(encoded, z=z_all, score=score)

    def _field_grids(self, radius_px: float):
        """The run's field cached as Fourier grids out to ``radius_px`` at the k-means centres
        of the run's latents (``warm_start.search.clusters`` of them; one grid when homogeneous)."""
        from ...pose.field_search import field_sources, latent_cluster_centres

        search = self.cfg.warm_start.search
        z_run = torch.as_tensor(np.load(self.run.latents)) if self.cfg.zdim else None
        centres = latent_cluster_centres(z_run, search.clusters)
        with torch.no_grad():
            return field_sources(self.field, radius_px, self.box, centres, **search.grid_options())

    def _pose_pass(self, meta, encoded, batch_size: int, radius_px: float, find, description: str):
        """``encoded`` with the poses and scores that ``find(observed, ctf, z, sources,
        likelihood, start_rotations, start_shifts_A)`` returns batch by batch (a
        :class:`~cryohet.pose.search.SearchResult`; the start poses are the batch's in ``encoded``)."""
        from dataclasses import replace

        dataset, band, likelihood = self._particles(meta)
        sources = self._field_grids(radius_px)
        rotations, shifts_A = encoded.rotations.copy(), encoded.shifts_A.copy()
        score = np.empty(len(dataset), np.float32)
        for rows, observed, ctf, z, start_rotations, start_shifts_A in self._batches(
            dataset, band, encoded, batch_size, description
        ):
            with torch.no_grad():
                found = find(observed, ctf, z, sources, likelihood, start_rotations, start_shifts_A)
            rotations[rows] = found.rotations.cpu().numpy()
            shifts_A[rows] = found.shifts_A.cpu().numpy()
            score[rows] = found.scores.cpu().numpy()
        return self._read_at_poses(dataset, replace(encoded, rotations=rotations, shifts_A=shifts_A, score=score))

    def _read_at_poses(self, dataset, encoded):
        """``encoded`` with its latents read again at its (new) poses (with the readout: the
        encoder's own part plus the subspace coordinates at them); as it is without one."""
        from dataclasses import replace

        from .latent_seed import read_latents

        if self.readout is None or encoded.z_encoder is None:
            return encoded
        z = encoded.z.copy()
        for start in range(0, len(dataset), 256):
            rows = np.arange(start, min(len(dataset), start + 256))
            b = dataset.get_batch(rows).to(self.device)
            z[rows] = read_latents(
                self.readout, torch.as_tensor(encoded.z_encoder[rows], device=self.device), b.images, b.ctf_params,
                torch.as_tensor(encoded.rotations[rows], device=self.device),
                torch.as_tensor(encoded.shifts_A[rows], device=self.device),
            ).cpu().numpy()  # fmt: skip
        return replace(encoded, z=z)

    def _batches(self, dataset, band, encoded, batch_size: int, description: str):
        """Batch by batch, with a progress bar: ``(rows, observed, ctf, z, rotations, shifts_A)``,
        the images' DFTs and CTFs on ``band`` and ``encoded``'s latents (None when
        homogeneous), rotations ``(B, 3, 3)`` and origins ``(B, 2)`` Å of those rows, on the
        run's device."""
        from ...console import progress

        starts = range(0, len(dataset), batch_size)
        for start in progress(starts, total=len(starts), description=description, unit="batch"):
            rows = np.arange(start, min(len(dataset), start + batch_size))
            b = dataset.get_batch(rows).to(self.device)
            z = torch.as_tensor(encoded.z[rows], device=self.device) if self.cfg.zdim else None
            rotations = torch.as_tensor(encoded.rotations[rows], device=self.device)
            shifts_A = torch.as_tensor(encoded.shifts_A[rows], device=self.device)
            yield rows, band.observed(b.images), band.filters(b.ctf_params, None), z, rotations, shifts_A

    def _particles(self, meta):
        """``(dataset, band, likelihood)`` of ``meta`` as the run saw its own particles."""
        from ...data.dataset import ParticleDataset
        from ...errors import InputError
        from ...imaging.bands import FourierBand
        from ...imaging.likelihood import WeightedL2

        apix = float(np.median(np.asarray(meta.apix, dtype=np.float64)))
        src = meta.source or "particles"
        if meta.box < self.box or abs(apix * meta.box / self.box - self.apix) > 1e-3 * self.apix:
            raise InputError(
                f"{src}: {meta.box} px images at {apix:.4g} Å/px; this run expects images that give {self.apix:.4g} "
                f"Å/px at its box of {self.box} px (the pixel size it was trained at: {self.apix * self.box:.4g} Å "
                "across the box)"
            )
        dataset = ParticleDataset(
            meta, box=self.box, normalize=True, std=self.image_std, invert=bool(self.cfg.invert)
        )  # fmt: skip
        band = FourierBand.disc(self.box, self.apix, device=self.device)
        return dataset, band, WeightedL2.white_noise(band)

    def describe(self) -> dict:
        d = super().describe()
        d.update({"poses_mode": self.cfg.poses_mode, "pose_heads": self.cfg.encoder.heads,
                  "pose_task_weight": self.cfg.pose_task.weight})  # fmt: skip
        return d
