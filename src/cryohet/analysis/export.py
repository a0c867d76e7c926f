"""``cryohet export``: a run's poses written back in the user's own format, with the original rows.

The poses are the run's (:meth:`TrainedModel.poses`: RELION ``A`` and origins in Å, one
row per particle of the run, in the order of the run's input, i.e. the rows of its ``--ind``
subset only), written against the ORIGINAL particle file named in the run's config
(``data``), by the output's extension:

* ``.star`` — for a RELION 3.1+ STAR source, that file as read (its optics table, every
  particle column with the same values, :func:`cryohet.io.star.write_star` with
  ``source_columns``) with ``rlnAngleRot/Tilt/Psi`` and ``rlnOriginXAngst/YAngst`` replaced by
  the run's poses (pixel origins ``rlnOriginX/Y`` dropped). For any other source (cryoSPARC,
  stacks, RELION 3.0), or when the run's CTF or pixel size did not come from the STAR file
  (``ctf.pkl``, ``apix``), a RELION 3.1 STAR file built as ``cryohet convert`` builds it;
* ``.cs`` — the source ``.cs`` rows with ``alignments3D/pose`` (axis-angle of ``A.T``,
  radians) and ``alignments3D/shift`` (pixels at ``alignments3D/psize_A``, same sign as RELION's
  origin) replaced, every other field unchanged (:func:`cryohet.io.cryosparc.write_cs_subset`);
  needs a cryoSPARC source. Fields the main file lacks (its alignments are in the passthrough,
  or it has none) are added after its own, ``alignments3D/psize_A`` included (the pixel size the
  source's shifts were read at). When the run read a passthrough file, its rows for the same
  particles go unchanged to ``<out>_passthrough.cs``, as ``cryohet select`` writes them;
* ``.pkl`` — cryoDRGN's ``poses.pkl``: ``(rot (N,3,3), trans (N,2))``, ``rot = A``, ``trans`` in
  fractions of the box (:func:`cryohet.io.cryodrgn.write_poses_pkl`).

``flip`` exports the poses of the mirrored map that ``cryohet volumes --flip`` writes:
``(M A M, origin)``, ``M = diag(1, 1, -1)`` (:func:`cryohet.geometry.hand.mirror_poses`).

Inputs (the particle file, pickles, stacks, the run's files) are never written; an existing
output is replaced only with ``overwrite``, and a ``.cs`` and its passthrough appear together.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..console import get_logger
from ..errors import InputError, RunDirError
from ..geometry.hand import mirror_poses
from ..io.outputs import check_output, run_dir_inputs, staged_files
from .config import ExportConfig
from .runinfo import run_particle_source
from .select import passthrough_output, write_passthrough_subset

__all__ = ["Export", "export_poses", "cs_pose_fields"]

log = get_logger("analysis.export")


@dataclass(frozen=True)
class Export:
    """What :func:`export_poses` wrote: ``n`` particles' poses (mirrored when ``flip``) to ``out``."""

    out: Path
    n: int
    flip: bool
    extra_files: tuple[Path, ...] = ()


def cs_pose_fields(meta, rotations: np.ndarray, shifts_A: np.ndarray) -> dict[str, np.ndarray]:
    """``alignments3D/pose``, ``shift`` and ``psize_A`` of the rows of ``meta``: the pixel size of
    the shifts is the one the source's shifts were read at (``alignments3D/psize_A`` of the main
    file or its passthrough, else the image pixel size), written to the main file too (the same
    values where it has the field), so that it reads the same without the passthrough."""
    from ..io.cryosparc import poses_to_cs

    table = meta.table
    has_psize = table is not None and "alignments3D/psize_A" in table.columns
    psize = table["alignments3D/psize_A"].to_numpy(np.float64) if has_psize else meta.apix
    pose, shift = poses_to_cs(rotations, shifts_A, psize)
    return {
        "alignments3D/pose": pose,
        "alignments3D/shift": shift,
        "alignments3D/psize_A": np.asarray(psize, dtype=np.float32),
    }


def export_poses(cfg: ExportConfig) -> Export:
    """Write the poses of ``cfg.run`` to ``cfg.out`` (see the module doc)."""
    from ..io.cryodrgn import write_poses_pkl
    from ..io.cryosparc import write_cs_subset
    from ..io.particles import input_files
    from ..io.star import write_star
    from ..methods.base import load_run, read_run_header
    from ..training.rundir import RunDir

    run_path = Path(cfg.run)
    raw = read_run_header(run_path)
    RunDir(run_path).require_complete(cfg.allow_unfinished)
    source = run_particle_source(run_path, raw)
    meta = source.load(stack_check="skip")
    out = Path(cfg.out)
    suffix = out.suffix.lower()
    cs_path = meta.extras.get("cs_path")
    pt_path = meta.extras.get("passthrough_path")
    if suffix == ".cs" and (meta.source_format != "cs" or cs_path is None):
        raise InputError(
            f"{out}: a .cs export needs a cryoSPARC .cs particle source to carry over; this run used {meta.source} "
            "(write .star or .pkl instead)"
        )
    if suffix == ".pkl" and meta.box <= 0:
        raise InputError(f"{meta.source}: box size unknown (no rlnImageSize/blob/shape and no stack found)")
    pt_out = passthrough_output(out) if suffix == ".cs" and pt_path is not None else None
    outputs = [out] + ([pt_out] if pt_out is not None else [])
    protected = [*input_files(meta), *run_dir_inputs(run_path)]
    for o in outputs:
        check_output(o, protected, overwrite=cfg.overwrite)

    model = load_run(run_path, allow_unfinished=cfg.allow_unfinished)
    poses = model.poses()
    if poses is None:
        raise RunDirError(f"{run_path}: the run holds no poses ({model.run.poses.name}); nothing to export")
    rotations, shifts_A = poses
    if len(rotations) != len(meta):
        raise RunDirError(
            f"{run_path}: the run has {len(rotations)} poses but its particle file {meta.source} now gives "
            f"{len(meta)} particles"
        )
    if cfg.flip:
        rotations, shifts_A = mirror_poses(rotations, shifts_A)
    posed = replace(meta, rotations=rotations, shifts_A=shifts_A)

    with staged_files(outputs) as tmps:  # the .cs and its passthrough rows together, or neither
        if suffix == ".star":
            keep = meta.source_format == "star" and meta.optics is not None
            if not keep:
                log.warning("%s: source is %s; writing a converted RELION 3.1 STAR file", out, meta.source)
            elif source.ctf is not None or source.apix is not None:
                keep = False
                log.warning("%s: the run's CTF or pixel size did not come from %s; writing the run's", out, meta.source)
            write_star(tmps[0], posed, source_columns=keep)
        elif suffix == ".cs":
            write_cs_subset(tmps[0], cs_path, meta.original_index, fields=cs_pose_fields(meta, rotations, shifts_A))
            if pt_out is not None:
                write_passthrough_subset(tmps[1], cs_path, pt_path, meta.original_index, protected)
        else:
            write_poses_pkl(tmps[0], rotations, shifts_A, meta.box, meta.apix)
    return Export(  # the command announces the files it wrote (cryohet.cli.export), once
        out=out, n=len(meta), flip=cfg.flip, extra_files=tuple(outputs[1:])
    )
