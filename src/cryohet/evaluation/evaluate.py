"""Evaluate any method's run directory against a simulated ground truth (``cryohet evaluate``).

Everything goes through the common method interface (:func:`cryohet.methods.base.load_run`:
latents, ``volume(z, box, apix)``, poses), so no method is special-cased:

* **per-conformation FSC** (CryoBench, :func:`per_conformation_fsc`): per state, the
  image latent nearest the state's mean latent is decoded *at the ground-truth box and
  pixel size* and compared with the state's map; AUC of the raw CryoBench curve, masked
  (``gt/mask.mrc`` by default, or ``mask``) **and** unmasked; mean (std) and median over
  states and the per-state values. The ceiling, the AUC of identical maps, is
  ``(D/2 - 1) / D``;
* optional **per-image FSC** (:func:`per_image_fsc`, ``per_image`` images);
* optional rigid **alignment** for ab initio methods: one rotation, shift and hand for
  the whole run (:func:`global_alignment`), applied to every decoded map;
* **clustering**: k-means (K = number of states, seed 0) on the latents scored by ARI and
  NMI against the true labels; per-state latent spread (:func:`latent_spread`);
* **pose errors** when the run has poses and the ground truth has a ``particles.star``
  (zero for methods that keep the given poses; reported anyway): after one global
  alignment (DRGN-AI's table), each state's median under that alignment, and CryoBench's
  per-class errors (each state aligned on its own, then averaged). A state whose median
  falls far when it is aligned alone has a pose offset of its own: the poses took up part
  of the conformational change. When the ground truth records a pseudo-symmetry, also the
  errors modulo it (overall and per state): there a state's plain errors mix the mates;
* **part metrics** (:mod:`.parts`) when the method exposes Gaussians with part labels
  (``TrainedModel.gaussians_at``) and the ground truth has ``atoms.npz``: moving-part
  purity when every atom is present in every state (conformational sets such as the IgG
  presets), absent-chain occupancy when some atoms are absent in some state
  (compositional sets such as ``assembly``).

Deterministic: the same run and ground truth give the same numbers. Written to ``out``
(default ``RUN/eval``): ``metrics.json``, ``fsc_curves.png`` (all states, masked and
unmasked), ``auc_per_state.png`` and one ``fsc_states/fsc_state_NNN.png`` per state.
"""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..console import get_logger
from ..errors import InputError, RunDirError
from ..io.outputs import run_dir_inputs, staged_folder
from ..metrics.clustering import kmeans_scores, latent_spread
from ..metrics.per_conformation import PerConformationResult, nearest_to_mean, per_conformation_fsc, per_image_fsc
from ..metrics.pose_error import (
    align_rotations,
    per_state_median,
    per_state_rotation_errors,
    rotation_errors,
    symmetry_mate_errors,
    translation_errors,
)
from .ground_truth import GroundTruth, load_ground_truth

__all__ = ["evaluate_run", "decode_states", "write_evaluation", "evaluation_inputs"]

log = get_logger("evaluate")

_BOX_TOL = 0.02  # relative difference of physical box sizes treated as a mismatch


def _subset_labels(run_dir: Path, labels: np.ndarray, n_latents: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels of the run's particles (and the indices into the full set, if a subset)."""
    if n_latents == len(labels):
        return labels, None
    from ..io.cryodrgn import read_ind_pkl
    from ..methods.base import read_run_header

    data = read_run_header(run_dir).get("data") or {}
    ind = data.get("ind") if isinstance(data, dict) else None
    if ind:
        ix = read_ind_pkl(ind)
        if len(ix) == n_latents and ix.max() < len(labels):
            return labels[ix], ix
    raise InputError(f"{run_dir}: the run has {n_latents} particles but the ground truth labels {len(labels)}")


def _check_box(model, gt: GroundTruth) -> None:
    run_A, gt_A = model.box * model.apix, gt.box * gt.apix
    if abs(run_A - gt_A) > _BOX_TOL * gt_A:
        raise InputError(
            f"box mismatch: the run covers {run_A:.1f} Å ({model.box} px at {model.apix:.4g} Å/px) but the ground "
            f"truth {gt_A:.1f} Å ({gt.box} px at {gt.apix:.4g} Å/px)"
        )


def decode_states(model, latents: np.ndarray, rows: np.ndarray, gt: GroundTruth) -> dict[int, np.ndarray]:
    """Volumes at the latents of ``rows`` (unique), decoded at the ground-truth box and pixel
    size in one :meth:`TrainedModel.volumes` call: ``{row: volume}``."""
    uniq = np.unique(rows)
    vols = list(model.volumes(latents[uniq], box=gt.box, apix=gt.apix))
    out = {}
    for r, v in zip(uniq, vols):
        v = np.asarray(v, dtype=np.float32)
        if v.shape != (gt.box,) * 3:
            raise RunDirError(f"box mismatch: {model.method} decoded a {v.shape} map, the ground truth is {gt.box}^3")
        out[int(r)] = v
    return out


def _volume_lookup(latents: np.ndarray, decoded: dict[int, np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    by_z = {latents[r].astype(np.float32).tobytes(): v for r, v in decoded.items()}

    def volume(z: np.ndarray) -> np.ndarray:
        return by_z[np.asarray(z, dtype=np.float32).tobytes()]

    return volume


def global_alignment(model, latents: np.ndarray, labels: np.ndarray, gt: GroundTruth, mask: np.ndarray | None):
    """One rigid transform (rotation, shift, hand) for the whole run: the map at the run's mean
    latent aligned onto the ground truth's population average (the state maps weighted by
    their particle counts, :func:`~cryohet.metrics.alignment.align_maps`, both hands).

    An ab initio reconstruction is determined up to one global rotation, shift and hand;
    aligning every decoded map separately would also absorb errors that differ between
    states (a state decoded rotated against the others), so it is not done.
    Returns :class:`~cryohet.metrics.alignment.AlignmentResult`.
    """
    from ..metrics.alignment import align_maps

    states, counts = np.unique(labels, return_counts=True)
    ref = sum(float(c) * gt.state_map(int(s)).astype(np.float64) for s, c in zip(states, counts)) / counts.sum()
    mean_z = latents.mean(axis=0, keepdims=True).astype(np.float32)
    mean_map = np.asarray(next(iter(model.volumes(mean_z, box=gt.box, apix=gt.apix))), dtype=np.float32)
    return align_maps(ref.astype(np.float32), mean_map, mask=mask)


def _aligner(transform) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Every decoded map moved by the run's one global ``transform`` (cached per map)."""
    from ..metrics.alignment import transform_volume

    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def align(vol: np.ndarray, ref: np.ndarray) -> np.ndarray:
        # decoded maps are cached objects: move each once (masked and unmasked scores
        # share it); the map is kept so that its id stays valid
        if id(vol) not in cache:
            cache[id(vol)] = (np.asarray(transform_volume(vol, transform), dtype=np.float32), vol)
        return cache[id(vol)][0]

    return align


def _alignment_dict(alignment) -> dict[str, Any]:
    t = alignment.transform
    return {
        "flipped": bool(t.mirror),
        "rotation": np.asarray(t.rotation).tolist(),
        "shift_px": np.asarray(t.shift_px).tolist(),
        "correlation": float(alignment.correlation),
    }


def _conformation_dict(res: PerConformationResult) -> dict[str, Any]:
    return {
        **{k: float(v) for k, v in res.summary().items()},
        "per_state": {str(int(s)): float(a) for s, a in zip(res.states, res.auc)},
        "image_index": {str(int(s)): int(i) for s, i in zip(res.states, res.image_index)},
        "freq_per_px": res.curves[0].freq_per_px.tolist(),
        "curves": {str(int(s)): c.fsc.tolist() for s, c in zip(res.states, res.curves)},
    }


def _pose_errors(model, gt: GroundTruth, ix: np.ndarray | None, labels: np.ndarray) -> dict[str, Any] | None:
    poses = model.poses()
    if poses is None or gt.rotations is None:
        return None
    rot_gt = gt.rotations if ix is None else gt.rotations[ix]
    sh_gt = gt.shifts_A if ix is None else gt.shifts_A[ix]
    rot, sh = poses
    if len(rot) != len(rot_gt):
        return None
    apix = float(gt.particles_apix or gt.apix)
    rerr = rotation_errors(rot, rot_gt)
    terr = translation_errors(sh / apix, sh_gt / apix, rot_pred=rot)
    out = {**{k: float(v) for k, v in rerr.summary().items()}, **{k: float(v) for k, v in terr.summary().items()}}
    out.update(per_state_rotation_errors(rot, rot_gt, rerr.rotation_deg, labels))
    if gt.pseudo_symmetry is not None:  # a symmetry mate of the true pose is a right answer too
        # aligned for the errors modulo the symmetry: poses split between two mates have no
        # plain alignment that fits both groups (:func:`align_rotations`)
        aligned = align_rotations(rot, rot_gt, operators=gt.pseudo_symmetry).aligned
        err, mate = symmetry_mate_errors(aligned, rot_gt, gt.pseudo_symmetry)
        out["rotation_deg_modulo_symmetry_mean"] = float(np.mean(err))
        out["rotation_deg_modulo_symmetry_median"] = float(np.median(err))
        out["symmetry_mate_fraction"] = float(np.mean(mate > 0))
        out["per_state_rotation_deg_modulo_symmetry_median"] = per_state_median(err, labels)
    return out


def _part_metrics(model, latents: np.ndarray, chosen: dict[int, int], gt: GroundTruth) -> dict[str, Any] | None:
    """Moving-part purity / absent-chain occupancy (:mod:`.parts`) at each state's chosen
    latent, or None when the method has no part-labelled Gaussians or the ground truth
    has no usable ``atoms.npz``."""
    from ..metrics.parts import GroundTruthAtoms, absent_chain_occupancy, moving_part_purity
    from .ground_truth import load_gt_atoms

    states = np.array(sorted(chosen), dtype=np.int64)
    z_states = latents[[chosen[int(s)] for s in states]]
    gaussians_at = getattr(model, "gaussians_at", None)  # optional part of the method interface
    probe = gaussians_at(z_states[0]) if gaussians_at is not None else None
    if probe is None or "part" not in probe:
        return None
    atoms = load_gt_atoms(gt.gt_dir)
    if atoms is None:
        return None
    n_atom_states = atoms.present.shape[0]
    if not np.array_equal(gt.states, np.arange(len(gt.states))) or n_atom_states != len(gt.states):
        log.warning(
            "%s: atoms.npz has %d states but the maps are %s; no part metrics",
            gt.gt_dir,
            n_atom_states,
            gt.states.tolist(),
        )
        return None
    # one latent per state and labels 0..S-1: the parts functions then take each state's
    # chosen latent (nearest to its mean) as is, and index the atoms by that position
    sub = GroundTruthAtoms(atoms.coords_A[states], atoms.present[states], atoms.chain_ids, atoms.moving)
    labels = np.arange(len(states))
    out: dict[str, Any] = {"n_gaussians": int(len(probe["part"])), "n_parts": int(np.max(probe["part"]) + 1)}
    if sub.present.all():
        if sub.moving.any() and not sub.moving.all():
            out["moving_part_purity"] = moving_part_purity(model, z_states, labels, sub)
    else:
        out["absent_chain_occupancy"] = absent_chain_occupancy(model, z_states, labels, sub)
    return out


def evaluate_run(
    run_dir: str | Path,
    gt_dir: str | Path,
    mask: str | Path | None = None,
    use_mask: bool = True,
    per_image: int | None = None,
    align: bool = False,
    device: str = "cpu",
    allow_unfinished: bool = False,
    epoch: int | None = None,
) -> dict[str, Any]:
    """Evaluate a run against a ground truth; returns the metrics (JSON-ready dict).

    Args:
        run_dir: any method's run directory (``load_run``).
        gt_dir: simulated dataset folder or its ``gt/`` folder.
        mask: mask file for the masked scores (default ``gt/mask.mrc``).
        use_mask: False reports unmasked scores only.
        per_image: also the CryoBench per-image FSC on about this many images.
        align: move every decoded map by one global rigid transform (both hands tried) found
            from the run's mean map and the ground truth's average (ab initio runs).
        device: where the method decodes volumes.
        allow_unfinished: evaluate a run that has no ``COMPLETED`` stamp (still training or killed).
        epoch: evaluate the run as it was after this epoch (counted from 1), from its snapshot
            in ``RUN/epochs/`` (a one-line error names the epochs it has).
    """
    from ..methods.base import load_run

    run_dir = Path(run_dir)
    gt = load_ground_truth(gt_dir)
    model = load_run(run_dir, device=device, allow_unfinished=allow_unfinished, epoch=epoch)
    latents = np.asarray(model.latents, dtype=np.float32)
    if latents.ndim != 2 or not np.isfinite(latents).all():
        raise RunDirError(f"{run_dir}: latents must be a finite (N, zdim) array, got shape {latents.shape}")
    labels, ix = _subset_labels(run_dir, gt.labels, len(latents))
    _check_box(model, gt)
    mask_vol = gt.read_mask(mask) if use_mask and (mask is not None or gt.mask_path is not None) else None
    if use_mask and mask_vol is None:
        log.warning("%s: no mask.mrc; reporting unmasked scores only", gt.gt_dir)

    chosen = nearest_to_mean(latents, labels)
    rows = np.array([chosen[s] for s in sorted(chosen)], dtype=np.int64)
    decoded = decode_states(model, latents, rows, gt)
    volume = _volume_lookup(latents, decoded)
    alignment = global_alignment(model, latents, labels, gt, mask_vol) if align else None
    aligner = _aligner(alignment.transform) if alignment is not None else None
    variants = {"unmasked": None} if mask_vol is None else {"masked": mask_vol, "unmasked": None}
    per_conf = {
        name: per_conformation_fsc(latents, labels, volume, gt.state_map, mask=m, align=aligner)
        for name, m in variants.items()
    }

    result: dict[str, Any] = {
        "run": str(run_dir.resolve()),
        "method": model.method,
        "epoch": epoch,
        "gt_dir": str(gt.gt_dir.resolve()),
        "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cryohet_version": __version__,
        "model": {
            k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
            for k, v in model.describe().items()
        },
        "box": gt.box,
        "apix": gt.apix,
        "auc_ceiling": gt.auc_ceiling,
        "n_particles": int(len(latents)),
        "n_states": int(len(np.unique(labels))),
        "mask": None if mask_vol is None else str(Path(mask or gt.mask_path).resolve()),
        "aligned": bool(align),
        **({"alignment": _alignment_dict(alignment)} if alignment is not None else {}),
        "per_conformation": {name: _conformation_dict(r) for name, r in per_conf.items()},
    }
    if per_image:
        n = int(min(max(per_image, 1), len(latents)))
        idx = np.arange(0, len(latents), len(latents) // n)
        vol_img = _volume_lookup(latents, decode_states(model, latents, idx, gt))
        res = per_image_fsc(latents, labels, vol_img, gt.state_map, n, mask=mask_vol, align=aligner)
        result["per_image"] = {
            **{k: float(v) for k, v in res.summary().items()},
            "per_state": {str(k): float(v) for k, v in res.class_auc.items()},
            "masked": mask_vol is not None,
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k-means on constant latents (homogeneous) warns; ARI is then 0
        scores = kmeans_scores(latents, labels, seed=0)
    result["clustering"] = {
        "ari": float(scores.ari),
        "nmi": float(scores.nmi),
        "k": int(len(np.unique(labels))),
        "latent_spread": {str(k): float(v) for k, v in latent_spread(latents, labels).items()},
    }
    result["poses"] = _pose_errors(model, gt, ix, labels)
    result["parts"] = _part_metrics(model, latents, chosen, gt)
    return result


def evaluation_inputs(run_dir: str | Path, gt: str | Path | None = None, mask: str | Path | None = None) -> list[Path]:
    """What an evaluation folder must never replace: the run directory (its files, checkpoints
    and extras), the ground-truth folder (and its ``gt/``) and the mask."""
    extra = [Path(gt), Path(gt) / "gt"] if gt is not None else []
    return [*run_dir_inputs(run_dir), *extra, *([Path(mask)] if mask is not None else [])]


def write_evaluation(
    result: dict[str, Any],
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    inputs: list[Path] | tuple[Path, ...] = (),
) -> list[Path]:
    """Write ``metrics.json``, ``fsc_curves.png`` (all states), ``auc_per_state.png`` and
    ``fsc_states/fsc_state_NNN.png`` (one per state) into ``out_dir``; returns the paths
    in that order.

    The folder is written fresh (:func:`cryohet.io.outputs.staged_folder`): an existing
    non-empty ``out_dir`` is refused unless ``overwrite``, and then replaced as a whole;
    ``inputs`` (see :func:`evaluation_inputs`) are never replaced.
    """
    from .evaluate_plots import plot_auc_per_state, plot_fsc_overview, plot_fsc_per_state

    out = Path(out_dir)
    with staged_folder(out, overwrite=overwrite, inputs=inputs) as work:
        (work / "metrics.json").write_text(json.dumps(result, indent=2))
        written = [
            work / "metrics.json",
            plot_fsc_overview(result, work / "fsc_curves.png"),
            plot_auc_per_state(result, work / "auc_per_state.png"),
            *plot_fsc_per_state(result, work / "fsc_states"),
        ]
    return [out / Path(p).relative_to(work) for p in written]
