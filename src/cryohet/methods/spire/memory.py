"""How much memory a CryoSPIRE training step needs, checked before training starts.

A stage-B step keeps, for backward, the analytic projection factors of every image and
Gaussian of the batch (:func:`cryohet.imaging.gaussians.gaussian_projection_ft`): complex64
``(B, G, Nx)`` and ``(B, G, Ny)`` on the data term's band (``Nx = D/2``, ``Ny = D``), and the
same again while the backward pass forms their products; the paper's per-Gaussian MLP
decoder adds ``(B, G, hidden)`` activations per layer (and their gradients). On top comes
what the process holds anyway (Python, torch, the models, the latent table).

Measured on the 2-core VM (D=64, batch 32): 4 096 Gaussians, factorized decoder, peak RSS
814 MB; the estimate below gives 843 MB. The check refuses a run whose estimate exceeds
90 % of the memory available (CPU: ``MemAvailable``; CUDA: free device memory) and names
the largest batch that fits.
"""

from __future__ import annotations

import torch

from ...errors import ConfigError

__all__ = ["step_bytes", "available_bytes", "check_step_memory"]

_BASE_BYTES = 600 * 2**20  # interpreter, torch, models, dataset bookkeeping (measured ~600 MB)
_COMPLEX = 8


def step_bytes(
    batch: int,
    gaussians: int,
    box: int,
    decoder: str = "factorized",
    hidden: int = 128,
    layers: int = 3,
    n_particles: int = 0,
    zdim: int = 4,
) -> int:
    """Estimated peak bytes of one stage-B training step (the process base included)."""
    factors = batch * gaussians * (box // 2 + box) * _COMPLEX * 2  # saved factors + backward products
    activations = batch * gaussians * hidden * layers * 4 * 2 if decoder == "mlp" else gaussians * hidden * layers * 8
    table = n_particles * zdim * 4 * 3  # latents + Adam moments
    return _BASE_BYTES + factors + activations + table


def available_bytes(device: torch.device) -> int | None:
    """Free memory where the step runs: CUDA free device memory, else ``MemAvailable`` (None if unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_step_memory(batch: int, gaussians: int, box: int, device: torch.device, **kw) -> int:
    """The estimate (bytes); a one-line :class:`ConfigError` when it does not fit, naming the
    largest ``--batch-size`` that would."""
    need = step_bytes(batch, gaussians, box, **kw)
    have = available_bytes(device)
    if have is None or need <= 0.9 * have:
        return need
    fits = max(b for b in range(0, batch + 1) if b == 0 or step_bytes(b, gaussians, box, **kw) <= 0.9 * have)
    hint = f"use --batch-size {fits}" if fits >= 1 else "use a smaller box (-D/--box) or fewer Gaussians (--gaussians)"
    raise ConfigError(
        f"a training step at batch {batch} with {gaussians} Gaussians at box {box} needs about {need / 2**30:.1f} GB "
        f"but {have / 2**30:.1f} GB are available on {device}; {hint}"
    )
