"""What HetACUMN's training and its amortised inference share: the data term of every pose
head, the encoder run over a whole dataset, and the noise level of the images.

Poses are RELION ``A`` and origins in Å; images are normalised (the dataset's std), protein
bright; the data term is the shared likelihood on the run's band through the render seam
(slice x CTF x shift phase).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...data.dataset import ParticleDataset
from ...geometry.rotations import rotation_angle_deg
from ...imaging.in_plane import quarter_turn, rotate_images, rotate_poses_in_plane
from ...imaging.shifts import phase_ramp

__all__ = ["data_terms", "background_std", "EncodedDataset", "encode_dataset", "consensus_pose"]


def data_terms(field, band, likelihood, observed, ctf, rotations, shifts_A, z) -> torch.Tensor:
    """Per image and head ``(B, H)``: the likelihood of the image (``observed`` on ``band``,
    its ``ctf``) given the field's slice at each head's rotation ``(B, H, 3, 3)`` and
    shift ``(B, H, 2)`` Å, at latent ``z (B, zdim)`` or per head ``(B, H, zdim)``
    (differentiable in all of them)."""
    heads = rotations.shape[1]
    out = []
    for h in range(heads):
        slices = field.slices(rotations[:, h], band, z[:, h] if z is not None and z.dim() == 3 else z)
        model = slices * ctf * phase_ramp(band.kx_per_A, band.ky_per_A, shifts_A[:, h])
        out.append(likelihood.score(observed, model))
    return torch.stack(out, dim=1)


@torch.no_grad()
def background_std(dataset: ParticleDataset, n_sample: int = 500, seed: int = 0) -> float:
    """Per-pixel noise std of the (normalised) images: the std of the ring 0.42-0.5 D around
    the box centre, where a centred particle has no density."""
    d = dataset.box
    c = torch.arange(d, dtype=torch.float32) - d // 2
    r = torch.sqrt(c[None, :] ** 2 + c[:, None] ** 2)
    ring = (r >= 0.42 * d) & (r < 0.5 * d)
    n = min(n_sample, len(dataset))
    rows = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    values = [dataset.get_batch(rows[s : s + 256]).images[:, ring] for s in range(0, n, 256)]
    return float(torch.cat(values).std())


@dataclass
class EncodedDataset:
    """The encoder's answer for every particle, in input order: latent means ``(N, zdim)``,
    the chosen head's rotation ``(N, 3, 3)`` (RELION ``A``) and origin ``(N, 2)`` Å, the
    chosen head ``(N,)`` and its data term ``(N,)`` (lower fits better); with a subspace
    readout (``latent_readout``) also the encoder's own part of the latents ``(N, zdim)``
    (the latent is it plus the subspace coordinates at the pose)."""

    z: np.ndarray
    rotations: np.ndarray
    shifts_A: np.ndarray
    head: np.ndarray
    score: np.ndarray
    z_encoder: np.ndarray | None = None


def _turned_views(encoder, images: torch.Tensor, views: int):
    """The encoder on ``images`` turned in plane by ``2 pi k / views`` (k = 0 the images as
    they are), each answer's poses turned back to the untouched image
    (:func:`~cryohet.imaging.in_plane.rotate_poses_in_plane` by ``-alpha``): rotations
    ``(B, views * H, 3, 3)`` (RELION ``A``) and origins ``(B, views * H, 2)`` Å, view-major,
    and the latent means ``(B, views, zdim)``."""
    rots, shifts, zs = [], [], []
    turned: dict[int, torch.Tensor] = {}  # images resampled once per angle below a quarter turn
    for k in range(views):
        quarters, rest = divmod(4 * k, views)  # 2 pi k / views = quarters * 90° + rest * 90° / views
        if rest not in turned:
            below_quarter = images.new_full((len(images),), 0.5 * np.pi * rest / views)
            turned[rest] = images if rest == 0 else rotate_images(images, below_quarter)
        enc = encoder(quarter_turn(turned[rest], quarters))
        h = enc.heads
        back = images.new_full((len(images) * h,), -2 * np.pi * k / views)  # the view's angle, undone
        r, t = rotate_poses_in_plane(enc.rotations.reshape(-1, 3, 3), enc.shifts_A.reshape(-1, 2), back)
        rots.append(r.reshape(len(images), h, 3, 3))
        shifts.append(t.reshape(len(images), h, 2))
        zs.append(enc.z_mean)
    return torch.cat(rots, dim=1), torch.cat(shifts, dim=1), torch.stack(zs, dim=1)


def consensus_pose(rotations: torch.Tensor, within_deg: float = 15.0) -> torch.Tensor:
    """``(B,)`` per image the candidate rotation (of ``rotations (B, C, 3, 3)``) that most
    other candidates agree with (geodesic angle under ``within_deg``); ties go to the
    earlier candidate."""
    apart_deg = rotation_angle_deg(rotations[:, :, None], rotations[:, None])  # (B, C, C)
    agree = (apart_deg < within_deg).sum(-1)  # (B, C), each counts itself
    return agree.argmax(dim=1)  # torch returns the first of equal maxima


@torch.no_grad()
def encode_dataset(
    encoder, field, band, likelihood, dataset: ParticleDataset, device, batch_size: int = 256, in_plane_views: int = 1,
    readout=None, poses: tuple[np.ndarray, np.ndarray] | None = None, encoder_part: bool = True,
):  # fmt: skip
    """Run the encoder over ``dataset``; each image keeps the head whose pose the field
    explains best (the only head when there is one). With ``in_plane_views > 1`` the
    encoder also sees each image turned in plane by ``2 pi k / in_plane_views``; each
    image keeps the candidate pose (of every view and head, turned back) that most others
    agree with (:func:`consensus_pose`); its latent stays the untouched image's (an encoder
    trained without in-plane augmentation, as with fixed poses, need not give the same
    latent for a turned image); ``head`` is then the chosen candidate (``view * heads + head``).

    With a subspace ``readout`` (:class:`~cryohet.reconstruction.linear_subspace.SubspaceReadout`,
    ``latent_readout``) each latent is the encoder's plus the image's subspace coordinates at
    its chosen pose (at each head's, to choose the head), or at ``poses`` (rotations
    ``(N, 3, 3)`` RELION ``A``, origins ``(N, 2)`` Å: the run's own, or the particles' given
    ones; the poses returned stay the encoder's); ``encoder_part`` False
    (``latent_encoder_part``): the coordinates alone (``z_encoder`` is then 0)."""
    from .latent_seed import own_latent, read_latents

    encoder.eval()
    field.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("z", "z_encoder", "rot", "shift", "head", "score")}
    for start in range(0, len(dataset), batch_size):
        rows_np = np.arange(start, min(len(dataset), start + batch_size))
        b = dataset.get_batch(rows_np).to(device)
        if in_plane_views > 1:
            rotations, shifts_A, z_views = _turned_views(encoder, b.images, in_plane_views)
            head = consensus_pose(rotations)
            rows = torch.arange(len(head), device=head.device)
            rot, shift = rotations[rows, head], shifts_A[rows, head]
            z_own = own_latent(z_views[:, 0], readout, encoder_part)
            score = torch.full((len(b.images),), float("nan"), device=rot.device)
        else:
            enc = encoder(b.images)
            z_own, z_heads = own_latent(enc.z_mean, readout, encoder_part), None
            if enc.heads > 1 and b.ctf_params is not None:
                z_heads = read_latents(readout, z_own, b.images, b.ctf_params, enc.rotations, enc.shifts_A)
                terms = data_terms(
                    field, band, likelihood, band.observed(b.images), band.filters(b.ctf_params, None),
                    enc.rotations, enc.shifts_A, z_heads,
                )  # fmt: skip
                score, head = terms.min(dim=1)
            else:
                head = torch.zeros(len(b.images), dtype=torch.long, device=enc.rotations.device)
                score = torch.full((len(b.images),), float("nan"), device=enc.rotations.device)
            rot, shift = enc.pick(head)
        if poses is not None:
            at = torch.as_tensor(poses[0][rows_np], dtype=torch.float32, device=rot.device), torch.as_tensor(
                poses[1][rows_np], dtype=torch.float32, device=rot.device
            )  # fmt: skip
            z = read_latents(readout, z_own, b.images, b.ctf_params, *at)
        elif in_plane_views == 1 and z_heads is not None:  # the chosen head's, read above
            z = z_heads[torch.arange(len(head), device=head.device), head]
        else:
            z = read_latents(readout, z_own, b.images, b.ctf_params, rot, shift)
        values = (("z", z), ("z_encoder", z_own), ("rot", rot), ("shift", shift), ("head", head), ("score", score))
        for key, value in values:
            parts[key].append(value.float().cpu().numpy() if key != "head" else value.cpu().numpy())
    return EncodedDataset(
        z=np.concatenate(parts["z"]).astype(np.float32),
        rotations=np.concatenate(parts["rot"]).astype(np.float32),
        shifts_A=np.concatenate(parts["shift"]).astype(np.float32),
        head=np.concatenate(parts["head"]).astype(np.int64),
        score=np.concatenate(parts["score"]).astype(np.float32),
        z_encoder=None if readout is None else np.concatenate(parts["z_encoder"]).astype(np.float32),
    )
