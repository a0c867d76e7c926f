"""Atomic models at given latents, for methods that move an atomic model (``cryohet models``).

One file per latent row, ``model_000.pdb``, ``model_001.pdb`` ... in row order (``.cif``
when the run's input model was mmCIF), every atom of the input model moved by the run's
method at that latent, in the input model's frame, with its chains, residue numbers,
B-factors and everything else copied from the input file
(:meth:`~cryohet.methods.base.TrainedModel.atomic_models`). ``series.pdb`` holds the same
models as one multi-model file (ChimeraX plays it with ``coordset``), with
``models.cxc`` to open it. Without latents, one model at the mean of the run's latents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, file_error
from ..io.atomic import model_suffix, write_atomic_models
from ..io.outputs import check_output, run_dir_inputs, staged_folder

__all__ = ["write_models", "write_model_series"]


def write_model_series(model, zs: np.ndarray, folder: Path, name: str = "series") -> Path | None:
    """All rows of ``zs`` as one multi-model file ``folder/name.pdb|cif`` and a ChimeraX script
    ``folder/models.cxc`` that plays them; None for methods without atomic models."""
    decode = getattr(model, "atomic_models", None)
    found = decode(np.atleast_2d(zs)) if decode is not None else None
    if found is None:
        return None
    return _write_series(*found, Path(folder), name)


def _write_series(atoms, coords: np.ndarray, folder: Path, name: str = "series") -> Path:
    """``coords (M, atoms, 3)`` as one multi-model file and the ChimeraX script that plays it."""
    path = write_atomic_models(atoms, list(coords), folder / f"{name}{model_suffix(atoms)}")
    (folder / "models.cxc").write_text(
        f"# cryohet: {len(coords)} models as one coordinate series (open with: chimerax models.cxc)\n"
        f"open {path.name} coordsets true\nview\ncoordset #1 1,{len(coords)} holdSteady false loop 10\n"
    )
    return path


def write_models(
    run_dir: str | Path,
    z: np.ndarray | None,
    out_dir: str | Path,
    inputs: list[Path] | None = None,
    device: str = "cpu",
    allow_unfinished: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Decode ``z (n, zdim)`` (None: the mean latent) into atomic models in a fresh ``out_dir``
    (module docstring); the run directory and ``inputs`` are never overwritten. Returns
    the written paths."""
    from ..methods.base import load_run

    run, out = Path(run_dir), Path(out_dir)
    if out.exists() and not out.is_dir():
        raise file_error(out, "exists and is not a folder; --out names the folder the models are written to")
    protected = [*(inputs or []), *run_dir_inputs(run)]
    check_output(out, protected, overwrite=overwrite, folder=True)
    model = load_run(run, device=device, allow_unfinished=allow_unfinished)
    zs = model.latents.mean(axis=0, keepdims=True) if z is None else np.atleast_2d(np.asarray(z, np.float32))
    if zs.shape[1] != model.zdim:
        raise InputError(f"latents have {zs.shape[1]} values per row but the {model.method} run has zdim {model.zdim}")
    found = model.atomic_models(zs)
    if found is None:
        raise InputError(f"{run}: a {model.method} run has no atomic model (cryohet models needs a cryoSPHERE run)")
    atoms, coords = found
    suffix = model_suffix(atoms)
    written = []
    with staged_folder(out, overwrite=overwrite, inputs=protected) as work:
        for i, xyz in enumerate(coords):
            written.append(write_atomic_models(atoms, xyz, work / f"model_{i:03d}{suffix}"))
        if len(coords) > 1:
            written.append(_write_series(atoms, coords, work))
            written.append(work / "models.cxc")
    return [out / p.relative_to(work) for p in written]
