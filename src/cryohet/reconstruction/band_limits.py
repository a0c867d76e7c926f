"""Where the EM reconstructions (classify3d, the linear subspace of pca and of DRGN-AI's latent
seed) put their band limit.

Their likelihood is the shared one: an image's centred DFT ``Y`` is compared with the
model image ``M = CTF * shift * slice(V)`` (:func:`cryohet.representations.render.model_images`)
on the band :meth:`cryohet.imaging.bands.FourierBand.up_to_shell` (each independent
complex pixel once, ``1 <= round(|k|) <= max_shell``, no DC), with Gaussian noise of a
variance ``sigma2(s)`` per shell (:class:`cryohet.imaging.likelihood.ShellGaussian`):

    log p(Y | V) = - sum_{k in band} |Y(k) - M(k)|^2 / sigma2(|k|)   (+ const)
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["band_shell_from_fsc", "shell_of_resolution"]


def band_shell_from_fsc(fsc: np.ndarray | torch.Tensor, box: int, threshold: float = 0.143, margin: int = 2) -> int:
    """Last Fourier shell to use: the first shell where the half-map FSC (shells
    ``0 .. D//2``) drops below ``threshold``, plus ``margin`` shells, capped at ``D//2 - 1``."""
    f = np.asarray(fsc.cpu() if isinstance(fsc, torch.Tensor) else fsc, dtype=np.float64)
    below = np.flatnonzero(f[1:] < threshold)
    shell = (int(below[0]) + 1 if below.size else box // 2) + margin
    return int(min(max(shell, 2), box // 2 - 1))


def shell_of_resolution(resolution_A: float, box: int, apix: float) -> int:
    """Fourier shell (pixels) of a resolution in Å at box ``D`` and ``apix`` Å/px, capped at ``D//2 - 1``."""
    shell = int(np.floor(box * apix / float(resolution_A)))
    return int(min(max(shell, 2), box // 2 - 1))
