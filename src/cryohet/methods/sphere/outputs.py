"""What a finished cryoSPHERE run leaves in its run directory (besides config and log).

* ``model.pt`` — weights only: ``network`` (encoder, decoder, segmentation, amplitude scale);
* ``input_model.*`` — the run's copy of the atomic model it started from;
* ``latents.npy`` — ``(N, zdim)``: the encoder's mean per image (or the latent table);
* ``poses.npz`` — the input poses the run used (RELION ``A``, origins in Å);
* ``model_mean.pdb`` (``.cif`` for an mmCIF input) — every atom at the mean latent;
* ``extras/motions.npz`` — per image and segment: ``rotvecs`` (axis-angle, radians, about
  the box centre), ``translations_A``, and ``displacement_A`` (RMS displacement of the
  segment's residues from the input model);
* ``extras/segmentation.npz`` — per residue ``segment`` (-1: not movable),
  ``chain_ids``, ``residue_numbers``, ``insertion_codes`` and ``residue_domain`` (the
  residues that move together, :mod:`.domains`; a segment that runs past the end of a
  turning domain is split there, :func:`residue_domains`); per segment ``domain`` (the one
  holding most of its residues), ``median_displacement_A`` and ``p95_displacement_A``;
* ``extras/domain_search.npz`` — when the last domain search found a turning domain
  (:mod:`.body_search`): per domain ``residues`` (a padded ``(n_domains, R)`` bool mask),
  ``pivot_A`` and ``axis`` (the hinge, Å from the box centre), and per image
  ``turn_deg`` (signed turn about the axis that fitted best) and ``fits_better``;
* ``segmentation.cxc`` — ChimeraX script: opens ``input_model.*`` and colours it by segment.
"""

from __future__ import annotations

import numpy as np
import roma
import torch

from ...console import get_logger
from ...io.atomic import model_suffix, write_atomic_models
from ...training.checkpoint import save_checkpoint
from .domains import motion_domains, segment_displacements_A
from .model import SphereModel, input_model_path

__all__ = ["write_outputs", "write_model_files", "chimerax_segment_script", "residue_domains"]

log = get_logger("sphere")

#: Colours of the segments (ChimeraX names cycle through them).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip


def chimerax_segment_script(model_file: str, chain_ids, residue_numbers, labels: np.ndarray) -> str:
    """A ChimeraX script colouring ``model_file`` by segment (runs of residues per chain)."""
    lines = [f"# cryohet: the learned segments of {model_file} (open with: chimerax segmentation.cxc)",
             f"open {model_file}", "color #1 lightgray"]  # fmt: skip
    chain_ids, residue_numbers = np.asarray(chain_ids), np.asarray(residue_numbers)
    i, n = 0, len(labels)
    while i < n:
        j = i
        while j + 1 < n and labels[j + 1] == labels[i] and chain_ids[j + 1] == chain_ids[i]:
            j += 1
        if labels[i] >= 0:
            colour = PALETTE[int(labels[i]) % len(PALETTE)]
            lines.append(f"color #1/{chain_ids[i]}:{int(residue_numbers[i])}-{int(residue_numbers[j])} {colour}")
        i = j + 1
    return "\n".join(lines) + "\n"


def write_model_files(trainer, run) -> np.ndarray:
    """``model.pt`` (the network), ``latents.npy`` (the encoder's means of every image) and
    ``poses.npz`` into ``run`` (a run directory or a view of one epoch); returns the latents.
    The network is left in the mode it was in."""
    net = trainer.net
    training = net.training
    save_checkpoint(
        run.model, {"network": {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in net.state_dict().items()}}
    )
    with torch.no_grad():
        z = trainer.latent_means()
    net.train(training)
    run.save_latents(z)
    meta = trainer.dataset.meta
    shifts = meta.shifts_A if meta.shifts_A is not None else np.zeros((trainer.n, 2))
    run.save_poses(np.asarray(meta.rotations, np.float32), np.asarray(shifts, np.float32))
    return z


def residue_domains(
    net, base_A: np.ndarray, labels: np.ndarray, z: np.ndarray, device
) -> tuple[np.ndarray, np.ndarray]:
    """``(residue_domain (R,), segment_domain (K,))``: the domains (:func:`.domains.motion_domains`)
    of the network's rigid pieces (:meth:`~.network.SphereNetwork.piece_labels`: the segments,
    split where a turning domain ends) over the latents ``z``, per residue (-1: may not move),
    and per segment the domain holding most of its residues (-1: empty). Without turns the
    pieces are the segments and both are the segments' domains."""
    pieces = net.piece_labels()
    groups = pieces if len(net.turns) else None  # without turns: the decoder's own motions
    rv, tr = [], []
    with torch.no_grad():
        for a in range(0, len(z), 256):
            r, t = net.segment_motions(torch.as_tensor(z[a : a + 256], device=device), groups=groups)
            rv.append(r.cpu().numpy())
            tr.append(t.cpu().numpy())
    piece_domain = motion_domains(base_A, pieces, np.concatenate(rv), np.concatenate(tr))
    residue_domain = np.where(pieces >= 0, piece_domain[np.maximum(pieces, 0)], -1)
    segment_domain = np.full(net.n_segments, -1, dtype=np.int64)
    for k in range(net.n_segments):
        values, counts = np.unique(residue_domain[labels == k], return_counts=True)
        if len(values):
            segment_domain[k] = values[np.argmax(counts)]
    return residue_domain.astype(np.int64), segment_domain


def write_outputs(trainer, session) -> None:
    """Weights, latents, poses, motions, segmentation and the mean model (rank 0 writes)."""
    if not session.is_main:
        return
    run = session.run
    net = trainer.net.eval()
    z = write_model_files(trainer, run)
    model = SphereModel(run, trainer.cfg, trainer.residues, net, trainer.box, trainer.apix)
    labels = model.segment_labels()
    rotvecs, trans = [], []
    with torch.no_grad():
        for a in range(0, len(z), 1024):
            r, t = net.segment_motions(torch.as_tensor(z[a : a + 1024], device=trainer.device))
            rotvecs.append(r.cpu().numpy())
            trans.append(t.cpu().numpy())
    rotvecs_np, trans_np = np.concatenate(rotvecs), np.concatenate(trans)
    base = net.base_A.cpu().numpy()
    disp = segment_displacements_A(base, labels, rotvecs_np, trans_np)
    run.save_extra("motions", rotvecs=rotvecs_np, translations_A=trans_np, displacement_A=disp.astype(np.float32))
    sample = np.linspace(0, len(z) - 1, min(len(z), 2000)).round().astype(np.int64)
    residue_domain, domains = residue_domains(net, base, labels, z[sample], trainer.device)
    r = trainer.residues
    run.save_extra(
        "segmentation",
        segment=labels,
        chain_ids=np.asarray(r.chain_ids, dtype=str),
        residue_numbers=np.asarray(r.residue_numbers, dtype=np.int64),
        insertion_codes=np.asarray(r.insertion_codes, dtype=str),
        domain=domains,
        residue_domain=residue_domain,
        median_displacement_A=np.median(disp, axis=0),
        p95_displacement_A=np.percentile(disp, 95, axis=0),
    )
    if trainer.targets is not None and trainer.targets.bodies:
        t = trainer.targets
        mask = np.zeros((len(t.bodies), len(base)), dtype=bool)
        for j, body in enumerate(t.bodies):
            mask[j, body.residues.cpu().numpy()] = True
        turns = [
            np.rad2deg((roma.rotmat_to_rotvec(rot) @ body.axis).cpu().numpy())
            for rot, body in zip(t.rotations, t.bodies)
        ]
        run.save_extra(
            "domain_search",
            residues=mask,
            pivot_A=np.stack([b.pivot_A.cpu().numpy() for b in t.bodies]),
            axis=np.stack([b.axis.cpu().numpy() for b in t.bodies]),
            turn_deg=np.stack(turns).astype(np.float32),
            fits_better=np.stack([a.cpu().numpy() for a in t.active]),
        )
    src = input_model_path(run)
    (run.path / "segmentation.cxc").write_text(
        chimerax_segment_script(src.name, r.chain_ids, r.residue_numbers, labels)
    )
    atoms, coords = model.atomic_models(z.mean(axis=0, keepdims=True))
    write_atomic_models(atoms, coords, run.path / f"model_mean{model_suffix(src)}")
    for k in np.argsort(-np.median(disp, axis=0))[: min(5, disp.shape[1])]:
        chains = ",".join(sorted(set(np.asarray(r.chain_ids)[labels == k].tolist())))
        log.info("segment %d (chains %s, %d residues, domain %d): median %.1f Å, 95%% %.1f Å from the input model",
                 k, chains, int((labels == k).sum()), domains[k], float(np.median(disp[:, k])),
                 float(np.percentile(disp[:, k], 95)))  # fmt: skip
