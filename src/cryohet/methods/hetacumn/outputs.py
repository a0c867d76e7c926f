"""What a finished HetACUMN run leaves in its run directory (besides config and log).

* ``model.pt`` — weights only: ``field`` (the hypervolume) and ``encoder`` (pose + latent),
  and with ``latent_readout`` the seed's subspace (``latent_readout``: mean, components,
  band, noise, scale; tensors only);
* ``latents.npy`` — ``(N, zdim)``: the encoder's latent means of every particle (with
  ``latent_readout``, read at the poses of ``poses.npz``);
* ``poses.npz`` — the poses the field was trained at: the given ones (``fixed``), the
  searched poses refined through the amortised epochs (ab initio, semi-amortised: the
  default ``task1_poses=searched``), or the encoder's (``task1_poses=encoder``). A
  user's ``export`` and ``evaluate`` then see the poses that made the map;
* ``extras/encoder_poses.npz`` — ab initio: the encoder's poses of every particle
  (``rotations``, ``shifts_A``), what ``cryohet infer`` gives for these particles;
* ``map.mrc`` — the map at the mean latent;
* ``extras/encoder.npz`` — per particle the chosen pose head and its data term;
* ``extras/searched_poses.npz`` — ab initio: the warm start's searched poses (``rotations``,
  ``shifts_A``), refined through the amortised epochs with ``task1_poses=searched``.

On simulated igg-1d (D=64, 4 000 images, SNR 0.05) the searched poses were 9.1° from the
truth (median) and the encoder's 24.9°; before method version 5, ``poses.npz`` held the
encoder's.
"""

from __future__ import annotations

import numpy as np
import torch

from ...io.mrc import write_volume
from ...training.checkpoint import save_checkpoint
from .inference import EncodedDataset, encode_dataset

__all__ = ["write_model_files", "write_outputs"]


def write_model_files(trainer, run) -> EncodedDataset:
    """``model.pt``, ``latents.npy`` and ``poses.npz`` into ``run`` (a run directory or a
    view of one epoch); returns the encoder's pass over the particles. The networks are
    left in the mode they were in."""
    modes = trainer.field.training, trainer.encoder.training
    readout = trainer.latent_seed.readout
    weights = {
        "field": {k: v.detach().cpu() for k, v in trainer.field.state_dict().items()},
        "encoder": {k: v.detach().cpu() for k, v in trainer.encoder.state_dict().items()},
        **({"latent_readout": readout.state_dict()} if readout is not None else {}),
    }
    save_checkpoint(run.model, weights)
    meta = trainer.dataset.meta
    if trainer.cfg.poses_mode == "fixed":
        shifts = meta.shifts_A if meta.shifts_A is not None else np.zeros((trainer.n, 2))
        poses = np.asarray(meta.rotations, np.float32), np.asarray(shifts, np.float32)
    elif trainer.trained_at_searched_poses:
        rotations, shifts_A = trainer.searched.poses()
        poses = rotations.cpu().numpy().astype(np.float32), shifts_A.cpu().numpy().astype(np.float32)
    else:
        poses = None  # the encoder's
    # with the readout, the latents are read at the poses the field was trained at
    enc = encode_dataset(trainer.encoder, trainer.field, trainer.band, trainer.likelihood, trainer.dataset,
                         trainer.device, readout=readout, poses=poses if readout is not None else None,
                         encoder_part=trainer.cfg.latent_encoder_part)  # fmt: skip
    trainer.field.train(modes[0])
    trainer.encoder.train(modes[1])
    run.save_latents(enc.z)
    run.save_poses(*(poses if poses is not None else (enc.rotations, enc.shifts_A)))
    return enc


def write_outputs(trainer, session) -> None:
    """Final weights, latents, poses, the map at the mean latent and the encoder's extras (rank 0)."""
    if not session.is_main:
        return
    run = session.run
    enc = write_model_files(trainer, run)
    run.save_extra("encoder", head=enc.head, score=enc.score)
    if trainer.cfg.poses_mode != "fixed":
        run.save_extra("encoder_poses", rotations=enc.rotations, shifts_A=enc.shifts_A)
    if trainer.epochs.search_epochs:
        rotations, shifts_A = trainer.searched.poses()
        run.save_extra("searched_poses", rotations=rotations.cpu().numpy(), shifts_A=shifts_A.cpu().numpy())
    with torch.no_grad():
        z_mean = torch.as_tensor(enc.z.mean(axis=0, keepdims=True), device=trainer.device)
        vol = trainer.field.eval().to_volume(trainer.box, trainer.apix, z_mean).cpu().numpy().astype(np.float32)
    write_volume(run.path / "map.mrc", vol, trainer.apix)
