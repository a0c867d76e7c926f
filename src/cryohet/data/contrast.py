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
from ..errors import InputError
from ..io.metadata import ParticleMetadata
from .dataset import ParticleDataset

__all__ = ["ContrastCheck", "contrast_sign", "decide_invert", "file_contrast_hint"]

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


def file_contrast_hint(meta: ParticleMetadata) -> int:
    """What the particle file says about the contrast: -1 (protein dark), +1 (bright) or 0.

    cryoSPARC's ``blob/sign`` is the factor that makes the stored images protein-bright
    (-1 on particles extracted at the micrographs' polarity, as in the EMPIAR-10076
    fixture, whose images are measured dark at z = -14). Other formats say nothing (0).
    A file with both signs is refused: one dataset has one contrast.
    """
    sign = meta.extras.get("blob_sign") if meta.extras else None
    if sign is None:
        return 0
    values = np.unique(np.sign(np.asarray(sign, dtype=np.float64)))
    values = values[values != 0]
    if len(values) > 1:
        raise InputError(
            f"{meta.source}: blob/sign is +1 for some particles and -1 for others; cryohet takes one contrast "
            "per dataset: split the particles by sign (e.g. two cryoSPARC jobs) and invert one set"
        )
    return int(values[0]) if len(values) else 0


def _said(invert: bool) -> str:
    return "--invert (protein dark)" if invert else "--no-invert (protein bright)"


def decide_invert(
    meta: ParticleMetadata, invert: bool | None, box: int | None = None, seed: int = 0
) -> tuple[bool, ContrastCheck | None]:
    """Whether a method must invert ``meta``'s images, and the measurement behind it.

    The images are always measured (:func:`contrast_sign`, on at most 1 000 images).

    * ``invert`` given (the user decided): it is used; a significant measurement that
      says the opposite is one warning line (the map would come out negative).
    * ``invert`` None: a significant measurement decides; when undecided, the file's own
      word (:func:`file_contrast_hint`, cryoSPARC ``blob/sign``) decides; with neither,
      protein-bright is assumed, with a warning. A measurement that contradicts
      ``blob/sign`` is followed, with a warning.
    """
    hint = file_contrast_hint(meta)
    probe = ParticleDataset(meta, box=_probe_box(meta, box), normalize=True, seed=seed)
    check = contrast_sign(probe, n_sample=1000, seed=seed)
    measured = "dark" if check.needs_invert else "bright"
    if invert is not None:
        if check.sign != 0 and check.needs_invert != bool(invert):
            log.warning("contrast: %s was asked for, but the images show protein %s (z = %.1f): the map will "
                        "have negative density; leave the flag out to let cryohet decide", _said(bool(invert)),
                        measured, check.z)  # fmt: skip
        return bool(invert), check
    if check.sign != 0:
        if hint and (hint < 0) != check.needs_invert:
            log.warning("contrast: blob/sign says protein %s, but the images show protein %s (z = %.1f); "
                        "following the images (pass --invert or --no-invert to decide)",
                        "dark" if hint < 0 else "bright", measured, check.z)  # fmt: skip
        log.info("contrast: protein %s (z = %.1f)%s", measured, check.z,
                 "; images are inverted" if check.needs_invert else "")  # fmt: skip
        return check.needs_invert, check
    if hint:
        log.info("contrast: undecided from the images (z = %.1f); blob/sign says protein %s%s", check.z,
                 "dark" if hint < 0 else "bright", "; images are inverted" if hint < 0 else "")  # fmt: skip
        return hint < 0, check
    log.warning("contrast: undecided (z = %.1f); assuming protein-bright images (pass --invert if the "
                "protein is dark)", check.z)  # fmt: skip
    return False, check


def _probe_box(meta: ParticleMetadata, box: int | None) -> int:
    """The measurement needs only low frequencies: at most 64 px (Fourier-cropped), even."""
    b = int(box) if box is not None else int(meta.box)
    return max(2, min(b, 64) // 2 * 2)
