"""Volume representations and the render seam.

Every representation answers central slices on a Fourier band (:mod:`.base`); CTF, shift
and likelihood are composed around that call in one place (:mod:`.render`).
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> submodule, imported on first use (PEP 562): the command line reads
#: :mod:`.field_config` (pydantic only) as it starts without importing torch.
_LAZY = {
    "Representation": ".base",
    "SliceSource": ".base",
    "FieldConfig": ".field_config",
    "GaussianMixture": ".gaussian_mixture",
    "peak_from_mass": ".gaussian_mixture",
    "NeuralField": ".neural_field",
    "BandBatch": ".render",
    "model_images": ".render",
    "prepare_batch": ".render",
    "render": ".render",
    "score_batch": ".render",
    "VoxelVolume": ".voxel",
    "resample_volume": ".voxel",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
