"""The starting amplitude of a neural field per frequency shell, from the images themselves
(shared by the methods that decode with :class:`~cryohet.representations.neural_field.NeuralField`).

Fourier amplitudes of a map fall by orders of magnitude from low to high frequency; the
field predicts a dimensionless value times a per-shell envelope
(:meth:`cryohet.representations.neural_field.NeuralField.init_envelope`). It starts at
the data's signal amplitude per shell: the images' mean power per shell minus a noise
floor (the lowest shell power in the outer half of the band, where the CTF envelope has
damped the signal), divided by the mean squared CTF, square-rooted.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.dataset import ParticleDataset
from ..imaging.bands import FourierBand

__all__ = ["data_envelope"]


@torch.no_grad()
def data_envelope(dataset: ParticleDataset, band: FourierBand, n_sample: int = 1000, seed: int = 0) -> torch.Tensor:
    """Signal amplitude per shell ``0 .. D//2`` of the slices the field must answer (float32)."""
    d = band.box
    n = min(n_sample, len(dataset))
    rows = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    power = torch.zeros(band.n_shells, dtype=torch.float64)
    ctf2 = torch.zeros(band.n_shells, dtype=torch.float64)
    cpu = band.to("cpu")
    for s in range(0, n, 128):
        b = dataset.get_batch(rows[s : s + 128])
        y = cpu.observed(b.images)
        c = cpu.filters(b.ctf_params, None)
        power += cpu.shell_sums(y.real**2 + y.imag**2)
        ctf2 += cpu.shell_sums(c * c)
    count = cpu.shell_counts() * n
    p = power / count.clamp_min(1)
    c2 = ctf2 / count.clamp_min(1)
    outer = p[max(1, d // 4) :]
    floor = float(outer[outer > 0].min()) if bool((outer > 0).any()) else 0.0
    signal = torch.maximum(p - floor, 0.01 * p)
    env = torch.sqrt(signal / c2.clamp_min(0.05))
    env[0] = env[1] if len(env) > 1 else env[0]  # no DC in the band: take the first shell's
    out = torch.zeros(d // 2 + 1, dtype=torch.float32)
    m = min(len(out), len(env))
    out[:m] = env[:m].float()
    if m < len(out):
        out[m:] = out[m - 1]
    return out
