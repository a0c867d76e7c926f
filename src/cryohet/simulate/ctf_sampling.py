"""Realistic CTF parameters for simulated particles.

Defaults follow typical 300 kV single-particle collections (and the spread of the
EMPIAR-11247 ``ctf.pkl`` CryoBench samples from): mean defocus uniform in 1.0–2.5 µm,
astigmatism |dfU − dfV| half-normal with σ = 250 Å, astigmatism angle uniform in
[0°, 180°), Cs 2.7 mm, amplitude contrast 0.1, no phase plate. Micrographs share a
defocus: particles are drawn in groups of ``per_micrograph`` with the same parameters
plus a small per-particle defocus jitter (σ = 50 Å, the particle-height spread).
"""

from __future__ import annotations

import numpy as np

from ..io.metadata import CTFParams

__all__ = ["sample_ctf"]


def sample_ctf(
    n: int,
    rng: np.random.Generator,
    defocus_range_um: tuple[float, float] = (1.0, 2.5),
    astigmatism_sigma_A: float = 250.0,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amp_contrast: float = 0.1,
    per_micrograph: int = 100,
    jitter_A: float = 50.0,
) -> CTFParams:
    """Draw ``n`` particles' CTF parameters (RELION convention, defocus in Å)."""
    n_mics = max(1, -(-n // per_micrograph))
    mean_df = rng.uniform(*defocus_range_um, size=n_mics) * 1e4
    astig = np.abs(rng.normal(0.0, astigmatism_sigma_A, size=n_mics))
    angle = rng.uniform(0.0, 180.0, size=n_mics)
    mic = np.repeat(np.arange(n_mics), per_micrograph)[:n]
    rng.shuffle(mic)
    df = mean_df[mic] + rng.normal(0.0, jitter_A, size=n)
    return CTFParams(
        defocus_u_A=df + astig[mic] / 2,
        defocus_v_A=df - astig[mic] / 2,
        defocus_angle_deg=angle[mic],
        voltage_kV=np.full(n, voltage_kV),
        cs_mm=np.full(n, cs_mm),
        amp_contrast=np.full(n, amp_contrast),
        phase_shift_deg=np.zeros(n),
    )
