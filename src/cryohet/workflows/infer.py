"""``cryohet infer RUN PARTICLES --out DIR``: an amortised run's encoder on particles it never saw.

``DIR`` becomes a run directory of the new particles (no training): the run's
``config.yaml`` with ``data`` pointing at them (``_inferred_from`` names the run),
``model.pt`` copied, ``latents.npy`` (one row per particle, input order; the encoder's, or
with ``latent_steps`` fitted to the images at their final poses), ``poses.npz`` (RELION
``A``, origins in Å; the encoder's, or with ``poses: search`` found by the run's pose search
against its field, or with ``poses: input`` the particles' own; with ``refine_step_deg``
then refined by a local search against the field) and ``particles.star`` (or ``.cs`` for a cryoSPARC source: the
source's rows with the predicted poses, as ``cryohet export`` writes them). So
``volumes``, ``analyze``, ``select`` and ``export`` accept ``DIR`` as they accept a run.
Written into a temporary folder that replaces ``DIR`` at the end (never a mix of old and new).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import fields, replace
from pathlib import Path

import yaml

from ..console import get_logger
from ..errors import InputError
from ..io.outputs import check_output, run_dir_inputs, staged_folder
from .config import InferConfig

__all__ = ["InferConfig", "infer_particles"]

log = get_logger("infer")


def infer_particles(cfg: InferConfig) -> tuple[Path, int, float]:
    """Encode ``cfg.data`` with ``cfg.run``'s encoder into ``cfg.out`` (module doc); returns the
    folder, the number of particles and the encoder's images/s."""
    from ..analysis.export import cs_pose_fields
    from ..io.cryosparc import write_cs_subset
    from ..io.particles import input_files
    from ..io.star import write_star
    from ..methods.base import load_run, read_run_header
    from ..training.rundir import RunDir

    if cfg.search_worst > 0 and (not cfg.refine_step_deg or cfg.poses == "search"):
        raise InputError("--search-worst re-poses the worst-fitting refined poses: it needs --refine-step-deg "
                         "and the encoder's (or input) poses")  # fmt: skip
    run = Path(cfg.run)
    model = load_run(run, device=cfg.device, allow_unfinished=cfg.allow_unfinished)
    needs = (
        ["encode_particles"]
        + ["search_poses"] * (cfg.poses == "search")
        + ["refine_poses"] * bool(cfg.refine_step_deg)
        + ["search_poses"] * bool(cfg.search_worst)
        + ["refine_latents"] * bool(cfg.latent_steps)
    )
    if not all(hasattr(model, name) for name in needs):
        raise InputError(
            f"{run}: a '{model.method}' run has no encoder for new particles; cryohet infer needs an amortised "
            "method's run (cryohet train hetacumn)"
        )
    meta = cfg.data.load()
    out = Path(cfg.out)
    protected = [*input_files(meta), *run_dir_inputs(run)]
    check_output(out, protected, overwrite=cfg.overwrite, folder=True)
    start = time.perf_counter()
    trained_posed = getattr(getattr(model, "cfg", None), "poses_mode", None) == "fixed"
    if cfg.poses == "encoder" and trained_posed and meta.rotations is not None and getattr(model, "readout", None):
        log.warning("the run was trained at given poses and these particles have poses: --poses input reads their "
                    "latents at them (the encoder's poses, learnt from task 2 alone, are rougher)")  # fmt: skip
    enc = model.encode_particles(meta, cfg.batch_size, cfg.in_plane_views, input_poses=cfg.poses == "input")
    rate = len(meta) / max(time.perf_counter() - start, 1e-9)
    record = {"inferred": len(meta), "images_per_s": round(rate, 1), "poses": cfg.poses}
    if cfg.in_plane_views > 1:
        record["in_plane_views"] = cfg.in_plane_views
    if cfg.poses == "search":
        start = time.perf_counter()
        enc = model.search_poses(meta, enc, cfg.batch_size)
        record["search_images_per_s"] = round(len(meta) / max(time.perf_counter() - start, 1e-9), 1)
        log.info("found the poses by the pose search at %.1f images/s", record["search_images_per_s"])
    if cfg.refine_step_deg:
        start = time.perf_counter()
        enc = model.refine_poses(meta, enc, cfg.refine_step_deg, cfg.batch_size)
        record["refine_step_deg"] = cfg.refine_step_deg
        record["refine_images_per_s"] = round(len(meta) / max(time.perf_counter() - start, 1e-9), 1)
        log.info("refined the poses by a local search at %.1f images/s", record["refine_images_per_s"])
    if cfg.search_worst > 0:
        start = time.perf_counter()
        enc, improved = _search_worst(model, meta, enc, cfg)
        record.update(search_worst=cfg.search_worst, search_worst_improved=improved)
        record["search_worst_images_per_s"] = round(len(meta) / max(time.perf_counter() - start, 1e-9), 1)
        log.info("posed the worst-fitting %.0f%% again by the pose search: %d kept the new pose",
                 100 * cfg.search_worst, improved)  # fmt: skip
    if cfg.latent_steps:
        start = time.perf_counter()
        enc = model.refine_latents(meta, enc, cfg.latent_steps, cfg.batch_size, cfg.latent_lr)
        record.update(latent_steps=cfg.latent_steps, latent_lr=cfg.latent_lr)
        record["latent_images_per_s"] = round(len(meta) / max(time.perf_counter() - start, 1e-9), 1)
        log.info("fitted the latents at %.1f images/s", record["latent_images_per_s"])
    raw = read_run_header(run)
    raw = {k: v for k, v in raw.items() if not k.startswith("_")}
    raw["data"] = cfg.data.model_dump(mode="json")
    raw["out"] = str(out.resolve())
    raw["_inferred_from"] = str(run.resolve())  # provenance: not a config field
    raw.setdefault("resolved", {})["n_particles"] = len(meta)
    with staged_folder(out, overwrite=cfg.overwrite, inputs=protected) as work:
        target = RunDir(work)
        (work / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        shutil.copyfile(model.run.model, target.model)
        target.save_latents(enc.z)
        target.save_poses(enc.rotations, enc.shifts_A)
        target.save_extra("encoder", head=enc.head, score=enc.score)
        posed = replace(meta, rotations=enc.rotations.astype(float), shifts_A=enc.shifts_A.astype(float))
        if meta.source_format == "cs" and meta.extras.get("cs_path") is not None:
            fields = cs_pose_fields(meta, posed.rotations, posed.shifts_A)
            write_cs_subset(work / "particles.cs", meta.extras["cs_path"], meta.original_index, fields=fields)
        else:
            keep = meta.source_format == "star" and meta.optics is not None
            write_star(work / "particles.star", posed, source_columns=keep)
        target.mark_complete(record)
    log.info("encoded %d particles at %.0f images/s", len(meta), rate)
    return out, len(meta), rate


def _search_worst(model, meta, enc, cfg: InferConfig):
    """``enc`` with the worst-fitting ``cfg.search_worst`` share of its refined poses (the
    highest data terms) searched again by the run's pose search and refined; each particle
    keeps the better-fitting of its two poses (data terms on the same full band). Returns the
    result and how many particles took the new pose."""
    import numpy as np

    n = int(round(cfg.search_worst * len(meta)))
    if n == 0:
        return enc, 0
    rows = np.sort(np.argsort(np.nan_to_num(enc.score, nan=np.inf))[-n:])
    sub_meta = meta.subset(rows)
    old = _take(enc, rows)
    new = model.refine_poses(sub_meta, model.search_poses(sub_meta, old, cfg.batch_size), cfg.refine_step_deg,
                             cfg.batch_size)  # fmt: skip
    better = np.asarray(new.score) < np.asarray(old.score)
    return _put(enc, rows[better], _take(new, np.flatnonzero(better))), int(better.sum())


def _take(enc, rows):
    """The rows ``rows`` of an encoded dataset (every per-particle array)."""
    values = {f.name: getattr(enc, f.name) for f in fields(enc)}
    return replace(enc, **{k: (v[rows] if v is not None else None) for k, v in values.items()})


def _put(enc, rows, sub):
    """``enc`` with its rows ``rows`` replaced by ``sub``'s."""
    out = {}
    for f in fields(enc):
        whole, part = getattr(enc, f.name), getattr(sub, f.name)
        if whole is None:
            out[f.name] = None
            continue
        whole = whole.copy()
        whole[rows] = part
        out[f.name] = whole
    return replace(enc, **out)
