"""Which way round is the contrast? Protein bright (cryohet's and RELION's convention) or dark.

In cryohet's convention the CTF is ``+w`` at zero frequency and positive over its first
lobe (:mod:`cryohet.imaging.ctf`), so the low-frequency content of a particle — its
mass — appears with a positive sign: averaged over many images, the middle of the box
(where the particles are) is brighter than a ring near its edge. Stacks with dark
protein (cryoDRGN inverts data by default for this reason) show the opposite. A method
that reconstructs from images alone (ab initio) with the wrong sign builds the negative
of the particle — the "hollow shell" users of other tools report — so the sign is
measured before it starts.

The statistic: for each sampled image (mean-subtracted), the mean of the disc of radius
``0.2 D`` minus the mean of the ring ``0.35 D .. 0.45 D``; the mean over images and its
standard error give a z-score. Positive and significant: protein bright; negative and
significant: protein dark; otherwise undecided.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..console import get_logger
from ..io.metadata import ParticleMetadata
from .dataset import ParticleDataset

__all__ = ["ContrastCheck", "contrast_sign", "decide_invert"]

log = get_logger("data")


@dataclass(frozen=True)
class ContrastCheck:
    """``sign``: +1 (protein bright), -1 (dark) or 0 (undecided); ``z``: the z-score; ``n``: images used."""

    sign: int
    z: float
    n: int

    @property
    def needs_invert(self) -> bool:
        return self.sign < 0


def contrast_sign(
    dataset: ParticleDataset, n_sample: int = 2000, seed: int = 0, z_threshold: float = 3.0
) -> ContrastCheck:
    """The contrast of ``dataset``'s images as they come out of it (after its own ``invert``)."""
    n = min(n_sample, len(dataset))
    rows = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    d = dataset.box
    c = torch.arange(d, dtype=torch.float32) - d // 2
    r = torch.sqrt(c[None, :] ** 2 + c[:, None] ** 2)
    disc = r < 0.2 * d
    ring = (r >= 0.35 * d) & (r < 0.45 * d)
    values = []
    for s in range(0, n, 256):
        imgs = dataset.get_batch(rows[s : s + 256]).images
        imgs = imgs - imgs.mean(dim=(-2, -1), keepdim=True)
        values.append((imgs[:, disc].mean(dim=1) - imgs[:, ring].mean(dim=1)).double())
    v = torch.cat(values)
    z = float(v.mean() / (v.std() / np.sqrt(len(v)))) if len(v) > 1 and float(v.std()) > 0 else 0.0
    sign = 1 if z > z_threshold else -1 if z < -z_threshold else 0
    return ContrastCheck(sign, z, int(len(v)))


def decide_invert(
    meta: ParticleMetadata, invert: bool | None, box: int | None = None, seed: int = 0
) -> tuple[bool, ContrastCheck | None]:
    """Whether a method must invert ``meta``'s images: ``invert`` when the user said so,
    else measured by :func:`contrast_sign` on the images as they are (logged, with a
    warning when undecided: protein-bright is then assumed). Returns the decision and the
    measurement (None when the user decided)."""
    if invert is not None:
        return bool(invert), None
    probe = ParticleDataset(meta, box=box, normalize=True, seed=seed)
    check = contrast_sign(probe, seed=seed)
    if check.sign == 0:
        log.warning("contrast: undecided (z = %.1f); assuming protein-bright images (pass --invert if the "
                    "protein is dark)", check.z)  # fmt: skip
    else:
        log.info("contrast: protein %s (z = %.1f)%s", "dark" if check.needs_invert else "bright", check.z,
                 "; images are inverted" if check.needs_invert else "")  # fmt: skip
    return check.needs_invert, check
