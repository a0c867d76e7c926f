"""The domain search steps of a cryoSPHERE run: bodies, hinges, turns and per-image targets.

At each epoch of ``domain_search_at`` (:meth:`DomainSearchSteps.search_bodies`):

* the first time, the moving domains ("bodies") are found from the decoded motions
  (:func:`.body_search.find_bodies`) and each one's hinge axis is chosen on a sample of
  images (:func:`.hinge_axis.choose_axis`); with ``domain_turns`` each body with a latent
  ring then turns by its ring angle and the decoder's last layer restarts from zero
  (:mod:`.hinge_turns`);
* later, the turning bodies are searched again, each one's hinge first chosen again on a
  sample of images turned by their ring angles (``domain_hinge_refine``, :mod:`.hinge_refine`);
* every image's turn of every body is searched (:mod:`.body_targets`); where a placement
  beats the image's current fit it becomes a target pulling the decoded motion.

Each rank searches its own rows; the target tables and the sample totals are summed over
ranks. Positions are Å from the box centre; rotations act on the left of column vectors.
"""

from __future__ import annotations

import numpy as np
import roma
import torch

from ...console import get_logger, progress
from ...representations.render import prepare_batch
from ...training.distributed import all_reduce_sum_
from .body_search import Body, body_volume, find_bodies
from .body_targets import BodyTargets, search_batch
from .hinge_axis import choose_axis
from .hinge_refine import refine_hinge
from .hinge_turns import HingeTurn
from .network import SphereNetwork

__all__ = ["DomainSearchSteps", "restart_decoder_output"]

log = get_logger("sphere")

#: Images whose summed fit chooses each domain's hinge axis (:mod:`.hinge_axis`).
_AXIS_SAMPLE = 256
_HINGE_SAMPLE = 512


def _vector(v: torch.Tensor, decimals: int = 2) -> str:
    return "(" + ", ".join(f"{float(x):.{decimals}f}" for x in v) + ")"


def _summed(t: torch.Tensor) -> torch.Tensor:
    all_reduce_sum_(t)
    return t


class DomainSearchSteps:
    """The domain search steps of :class:`~.trainer.SphereTrainer` (module docstring).

    Uses the trainer's ``cfg``, ``net``, ``opt``, ``dataset``, ``band``, ``likelihood``,
    ``residues``, ``bonded``, ``n``, ``box``, ``apix``, ``device``, ``dist`` and
    ``latent_means()``; sets ``targets`` and ``targets_epoch``."""

    @torch.no_grad()
    def search_bodies(self, epoch: int) -> None:
        """Search every image's moving domains (:mod:`.trainer`'s docstring); each rank searches its own
        rows and the target tables are summed over ranks."""
        self.net.eval()
        z = torch.as_tensor(self.latent_means(), device=self.device)
        sample = torch.as_tensor(np.linspace(0, self.n - 1, min(self.n, 2000)).round().astype(np.int64))
        min_residues = max(10, int(0.05 * self.residues.movable.sum()))
        chain = np.asarray(self.residues.chain_ids)
        same_chain = torch.as_tensor(np.append(chain[1:] == chain[:-1], False), device=self.device)
        turning = len(self.net.turns) > 0  # the bodies turn by their ring angle: search those again
        bodies = (
            [Body(t.residues, *(v.detach() for v in self.net.turns.hinge(j)))
             for j, t in enumerate(self.net.turns.turns)]
            if turning
            else find_bodies(self.net, self.net.segment_labels(), z[sample.to(self.device)], self.bonded,
                             min_residues, same_chain)
        )  # fmt: skip
        self.targets, self.targets_epoch = BodyTargets(bodies, self.n, self.device), epoch
        if not bodies:
            log.info("epoch %d: no domain bonded to the rest moves apart from the core; nothing to search", epoch + 1)
            return
        radius = min(self.box / 2, self.box * self.apix / self.cfg.domain_search_resolution_A)
        band = self.band.lowpass(min(1.0, radius / (self.box / 2)))
        likelihood = self.likelihood.on(band)
        if not turning:
            self._choose_axes(bodies, z, band, likelihood, epoch)
        elif self.cfg.domain_hinge_refine:
            self._refine_hinges(bodies, z, band, likelihood, epoch)
        in_body = torch.zeros(self.net.n_residues, dtype=torch.bool, device=self.device)
        for body in bodies:
            in_body[body.residues] = True
        movable = torch.as_tensor(self.residues.movable, device=self.device)
        self.targets = BodyTargets(bodies, self.n, self.device, torch.nonzero(movable & ~in_body).squeeze(1))
        rows = np.arange(self.dist.rank, self.n, self.dist.world_size)
        chunks = [rows[a : a + self.cfg.optim.batch_size] for a in range(0, len(rows), self.cfg.optim.batch_size)]
        volumes = [body_volume(self.net, body, band) for body in bodies]
        for chunk in progress(chunks, total=len(chunks), description="domain search", unit="batch"):
            bb = prepare_batch(self.dataset.get_batch(chunk), self.band, self.device).restrict(band)
            for j, body in enumerate(bodies):
                rot, better = search_batch(self.net, body, bb, z[bb.index], likelihood, volumes[j])
                self.targets.set(j, bb.index, rot, better)
        if self.dist.enabled:
            tables = self.targets.tables()
            for t in tables:
                all_reduce_sum_(t)
            self.targets.set_tables(tables)
        if turning:
            self.targets.ring_phase[: len(bodies)] = [t.phase for t in self.net.turns.turns]
            self.targets.ring_sign[: len(bodies)] = [t.sign for t in self.net.turns.turns]
        else:
            self.targets.fit_rings(z)
            if self.cfg.domain_turns and self.cfg.domain_latent_ring > 0:
                self._start_turns(epoch)
        for j, body in enumerate(bodies):
            act = self.targets.active[j]
            angles = torch.rad2deg(roma.rotmat_to_rotvec(self.targets.rotations[j][act]).norm(dim=-1))
            median = float(angles.median()) if len(angles) else 0.0
            log.info("epoch %d: domain %d (%d residues, hinge through %s Å along %s): %.0f %% of the images fit "
                     "better turned, by %.0f° (median)", epoch + 1, j + 1, len(body.residues),
                     _vector(body.pivot_A, 1), _vector(body.axis), 100.0 * float(act.float().mean()),
                     median)  # fmt: skip

    def _sample_batches(self, size: int, band, z: torch.Tensor) -> list[tuple]:
        """``size`` images spread evenly over the data set (this rank's share), as batches on
        ``band`` with their latents ``z``."""
        sample_rows = np.linspace(0, self.n - 1, min(self.n, size)).round().astype(np.int64)
        sample_rows = sample_rows[self.dist.rank :: self.dist.world_size]
        step = self.cfg.optim.batch_size
        batches = []
        for a in range(0, len(sample_rows), step):
            bb = prepare_batch(self.dataset.get_batch(sample_rows[a : a + step]), self.band, self.device)
            batches.append((bb.restrict(band), z[bb.index]))
        return batches

    def _choose_axes(self, bodies: list[Body], z: torch.Tensor, band, likelihood, epoch: int) -> None:
        """Each body's hinge axis chosen on a sample of images (:func:`.hinge_axis.choose_axis`), in place."""
        batches = self._sample_batches(_AXIS_SAMPLE, band, z)
        reduce = _summed if self.dist.enabled else None
        for j, body in enumerate(bodies):
            bodies[j] = choose_axis(self.net, body, batches, likelihood, reduce)
            log.info("epoch %d: domain %d's hinge axis %s (%.0f° from the decoded motions')", epoch + 1, j + 1,
                     _vector(bodies[j].axis),
                     float(np.degrees(np.arccos(min(1.0, abs(float(bodies[j].axis @ body.axis)))))))  # fmt: skip

    def _start_turns(self, epoch: int) -> None:
        """From now on each searched body with a latent ring turns by its ring angle
        (:mod:`.hinge_turns`), and the decoder's last layer restarts from zero (its Adam
        state too), so that it only adds what the turns leave."""
        t = self.targets
        turns = [
            HingeTurn(b.residues, b.pivot_A, b.axis, 2 * j, t.ring_phase[j], t.ring_sign[j])
            for j, b in enumerate(t.bodies)
            if 2 * j + 1 < self.cfg.zdim
        ]
        if not turns:
            return
        self.net.turns.set(turns)
        restart_decoder_output(self.net, self.opt)
        log.info("epoch %d: %d domain(s) now turn by the angle of their latent ring; the decoder's last layer "
                 "restarts from zero", epoch + 1, len(turns))  # fmt: skip

    def _refine_hinges(self, bodies: list[Body], z: torch.Tensor, band, likelihood, epoch: int) -> None:
        """Each turning body's pivot and axis chosen again on a sample of images turned by
        their ring angles (:func:`.hinge_refine.refine_hinge`), in place and in the turns; a hinge
        that moved less than ``domain_hinge_min_shift_A`` and ``domain_hinge_min_tilt_deg`` stays
        as it was. The decoder's last layer restarts from zero when a hinge was replaced (it had
        made up for the old one)."""
        batches = self._sample_batches(_HINGE_SAMPLE, band, z)
        reduce = _summed if self.dist.enabled else None
        turns, moved = list(self.net.turns.turns), False
        min_shift_A, min_tilt_deg = self.cfg.domain_hinge_min_shift_A, self.cfg.domain_hinge_min_tilt_deg
        for j, body in enumerate(bodies):
            angles = [torch.rad2deg(self.net.turns.angles(zb)[j]) for _, zb in batches]
            new = refine_hinge(self.net, body, batches, angles, likelihood, reduce)
            shift_A = float((new.pivot_A - body.pivot_A).norm())
            tilt_deg = float(np.degrees(np.arccos(min(1.0, float(new.axis @ body.axis)))))
            changed = not (torch.equal(new.pivot_A, body.pivot_A) and torch.equal(new.axis, body.axis))
            kept = changed and shift_A < min_shift_A and tilt_deg < min_tilt_deg
            note = f" (under {min_shift_A:g} Å and {min_tilt_deg:g}°: the current hinge stays)" if kept else ""
            log.info("epoch %d: domain %d's hinge chosen again on the data: pivot moved %.1f Å, axis %.1f°%s",
                     epoch + 1, j + 1, shift_A, tilt_deg, note)  # fmt: skip
            if not changed or kept:
                continue
            bodies[j], moved, t = new, True, turns[j]
            turns[j] = HingeTurn(t.residues, new.pivot_A, new.axis, t.coordinate, t.phase, t.sign)
        if moved:
            self.net.turns.set(turns)
            restart_decoder_output(self.net, self.opt)


def restart_decoder_output(net: SphereNetwork, opt: torch.optim.Optimizer) -> None:
    """The decoder's last layer (and its Adam state) back to zero: no motion on top of the turns."""
    last = net.decoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    for p in (last.weight, last.bias):
        opt.state.pop(p, None)
