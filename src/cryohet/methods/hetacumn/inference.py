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
from ...imaging.shifts import phase_ramp

__all__ = ["data_terms", "background_std", "EncodedDataset", "encode_dataset"]


def data_terms(field, band, likelihood, observed, ctf, rotations, shifts_A, z) -> torch.Tensor:
    """Per image and head ``(B, H)``: the likelihood of the image (``observed`` on ``band``,
    its ``ctf``) given the field's slice at each head's rotation ``(B, H, 3, 3)`` and
    shift ``(B, H, 2)`` Å, at latent ``z (B, zdim)`` (differentiable in all of them)."""
    heads = rotations.shape[1]
    out = []
    for h in range(heads):
        slices = field.slices(rotations[:, h], band, z)
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
    chosen head ``(N,)`` and its data term ``(N,)`` (lower fits better)."""

    z: np.ndarray
    rotations: np.ndarray
    shifts_A: np.ndarray
    head: np.ndarray
    score: np.ndarray


@torch.no_grad()
def encode_dataset(encoder, field, band, likelihood, dataset: ParticleDataset, device, batch_size: int = 256):
    """Run the encoder over ``dataset``; each image keeps the head whose pose the field
    explains best (the only head when there is one)."""
    encoder.eval()
    field.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("z", "rot", "shift", "head", "score")}
    for start in range(0, len(dataset), batch_size):
        b = dataset.get_batch(np.arange(start, min(len(dataset), start + batch_size))).to(device)
        enc = encoder(b.images)
        if enc.heads > 1 and b.ctf_params is not None:
            terms = data_terms(
                field, band, likelihood, band.observed(b.images), band.filters(b.ctf_params, None),
                enc.rotations, enc.shifts_A, enc.z_mean,
            )  # fmt: skip
            score, head = terms.min(dim=1)
        else:
            head = torch.zeros(len(b.images), dtype=torch.long, device=enc.rotations.device)
            score = torch.full((len(b.images),), float("nan"), device=enc.rotations.device)
        rot, shift = enc.pick(head)
        for key, value in (("z", enc.z_mean), ("rot", rot), ("shift", shift), ("head", head), ("score", score)):
            parts[key].append(value.float().cpu().numpy() if key != "head" else value.cpu().numpy())
    return EncodedDataset(
        z=np.concatenate(parts["z"]).astype(np.float32),
        rotations=np.concatenate(parts["rot"]).astype(np.float32),
        shifts_A=np.concatenate(parts["shift"]).astype(np.float32),
        head=np.concatenate(parts["head"]).astype(np.int64),
        score=np.concatenate(parts["score"]).astype(np.float32),
    )
