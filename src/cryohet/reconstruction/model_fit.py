"""Does an atomic model sit in a consensus map? Checked before a model-based method trains.

A model-based method (cryoSPHERE) renders its model with the particles' poses, so the
model must be in the frame of the particles' consensus map (``cryohet backproject``: the
map's origin at voxel 0, the particle centre at ``(D // 2) * apix`` Å; the frame a model
has after fitting it into that map in ChimeraX). A wrong frame is the commonest silent
failure of such methods: the images are then compared with projections of density that
is elsewhere. :func:`model_map_fit` renders the model's residue Gaussians on the map's
grid and reports the real-space correlation (inside the model's envelope, dilated) and
the FSC between the two maps, with the resolution where it falls to 0.5;
:func:`check_model_in_map` turns that into a one-line refusal, naming the frame expected
and the commonest cause (a model centred at the origin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..imaging.masks import threshold_mask
from ..metrics.alignment import masked_correlation
from ..metrics.fsc import fsc_standard, resolution_A
from ..representations.residue_model import ResidueModel

__all__ = ["ModelMapFit", "model_map_fit", "check_model_in_map"]

#: Below this correlation the model is taken not to overlap the map. Measured with 1HZH
#: against its simulated map (D=48, 6 Å/px): 0.973 in the map's frame, 0.77 / 0.46 / 0.15
#: / 0.03 shifted by 6 / 12 / 24 / 48 Å. A model in another conformation than the data's
#: (the real use) sits well above 0.3; a model off by more than ~20 Å is refused.
MIN_CORRELATION = 0.3


@dataclass(frozen=True)
class ModelMapFit:
    """How a model fits a map: ``correlation`` (real space, inside the model's dilated
    envelope), ``fsc_05_A`` (resolution in Å where their FSC falls to 0.5; ``inf`` when it
    starts below), ``centroid_A`` (electron-weighted, model frame), ``box_centre_A``
    (``(D // 2) * apix``), and ``outside_fraction`` (of the model's electrons outside the box)."""

    correlation: float
    fsc_05_A: float
    centroid_A: np.ndarray
    box_centre_A: float
    outside_fraction: float


def model_map_fit(model: ResidueModel, volume: np.ndarray, apix: float, sigma_A: float = 2.0) -> ModelMapFit:
    """Render ``model`` on ``volume``'s grid (cubic ``(D, D, D)`` ``(z, y, x)``, ``apix`` Å/px,
    origin at voxel 0) and compare (module docstring)."""
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise InputError(f"the consensus map must be a cubic 3D volume, got shape {vol.shape}")
    box = vol.shape[0]
    rendered = model.mixture(box, apix, sigma_A).to_volume(box, apix).numpy()
    envelope = threshold_mask(torch.as_tensor(rendered), 0.05 * float(rendered.max()), dilate_px=2.0).numpy()
    corr = masked_correlation(rendered, vol, envelope)
    fsc = fsc_standard(rendered, vol)
    centre = (box // 2) * float(apix)
    w = model.electrons / model.electrons.sum()
    centroid = (model.coords_A * w[:, None]).sum(axis=0)
    outside = ((model.coords_A < 0) | (model.coords_A >= box * float(apix))).any(axis=1)
    return ModelMapFit(
        correlation=float(corr),
        fsc_05_A=resolution_A(fsc, apix, 0.5),
        centroid_A=centroid,
        box_centre_A=centre,
        outside_fraction=float(w[outside].sum()),
    )


def check_model_in_map(
    model: ResidueModel, volume: np.ndarray, apix: float, name: str = "the model", centred_flag: str = "--centred-model"
) -> ModelMapFit:
    """:func:`model_map_fit`, raising :class:`InputError` (one line) when the model does not
    overlap the map. A model whose centroid is near the origin while the box centre is not
    is named as centred at 0, with ``centred_flag`` (the option that accepts such models)."""
    fit = model_map_fit(model, volume, apix)
    if fit.correlation >= MIN_CORRELATION:
        return fit
    c = fit.box_centre_A
    where = ", ".join(f"{v:.1f}" for v in fit.centroid_A)
    frame = (
        f"cryohet expects the frame of the consensus map (origin at voxel 0, particle centre at "
        f"({c:.1f}, {c:.1f}, {c:.1f}) Å): fit the model into the map in ChimeraX and save it relative to the map"
    )
    if np.linalg.norm(fit.centroid_A) < 0.25 * c:
        raise InputError(
            f"{name} is centred at the origin (centroid {where} Å), not on the particle; {frame}, "
            f"or pass {centred_flag} to place a model centred at 0 on the box centre"
        )
    raise InputError(
        f"{name} does not overlap the consensus map (correlation {fit.correlation:.2f}, centroid {where} Å, "
        f"{100 * fit.outside_fraction:.0f}% outside the box); {frame}"
    )
