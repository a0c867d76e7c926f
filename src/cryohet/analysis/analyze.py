"""``cryohet analyze RUN``: see what moves, for any method's run directory.

Everything goes through the common method interface (:func:`cryohet.methods.base.load_run`),
so no method is special-cased; part-aware methods (``part_volumes`` not None, or
``extras/part_motion.npz``) get the part sections on top. Output, under ``RUN/analyze/``
unless ``out`` says otherwise (the run's own files are only read; ``RUN/run.log`` gets
the log lines appended). The folder is written fresh: into a temporary sibling that
replaces it as a whole at the end, and an existing one only with ``overwrite``::

    analyze/
      analyze.log             the log of this analysis (also appended to RUN/run.log)
      summary.json            key numbers, the command line and the list of files below
      report.html             single-file report (images embedded)
      pca.npz, pca_coords.npy PCA of the latents (mean, components, variance), PC coordinates
      umap.npy, umap_index.npy UMAP of the subsample and its particle rows (when UMAP ran)
      kmeans{k}/              labels.npy, centres.txt, centres_ind.txt, centres_z.txt,
                              vol_000.mrc ..., latents.txt, movie.cxc, movie.gif
      pc1/, pc2/ ...          PC traversals: vol_000.mrc ..., latents.txt, movie.cxc, movie.gif
      path_{i}_{j}/           with --path I J
      parts/                  part_00.mrc ..., parts.cxc, motion_per_cluster.csv
      eval/                   with --gt: metrics.json, fsc_curves.png, auc_per_state.png
      plots/                  every PNG of the report
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..console import attach_run_log, detach_handler, get_logger
from ..errors import InputError, RunDirError
from ..io.outputs import check_output, run_dir_inputs, staged_folder
from .clustering import kmeans_latents, nearest_rows, write_kmeans
from .config import AnalyzeConfig
from .embedding import fit_pca, subsample_indices, umap_embed
from .parts import (
    PartMotion,
    load_part_motion,
    part_colours,
    part_motion_summary,
    write_part_maps,
)
from .result import AnalysisResult, command_line
from .runinfo import RunInfo, gt_labels_for_run, read_run_info
from .series import VolumeSeries, decode_series, graph_latent_path, latent_path, pc_traversal

__all__ = ["AnalysisResult", "analyze_run", "command_line"]

log = get_logger("analysis")


class _Steps:
    """Numbered step log lines with timings ("[2/7] k-means ... done in 1.2 s")."""

    def __init__(self, total: int) -> None:
        self.total, self.i, self.t = total, 0, time.monotonic()

    def __call__(self, what: str) -> None:
        now = time.monotonic()
        if self.i:
            log.info("  done in %.1f s", now - self.t)
        self.i += 1
        self.t = now
        log.info("[%d/%d] %s", self.i, self.total, what)


def _protected(cfg: AnalyzeConfig, info: RunInfo) -> list[Path]:
    """What analysis must never write or replace: the run directory (its own top-level files,
    checkpoints/ and extras/), the data inputs and the ground-truth folder."""
    files = run_dir_inputs(cfg.run)
    data = info.config.get("data")
    if isinstance(data, dict):
        files += [Path(str(v)) for k, v in data.items() if v and k in ("path", "poses", "ctf", "ind", "passthrough")]
    if cfg.gt is not None:
        files += [Path(cfg.gt), Path(cfg.gt) / "gt"]
    return files


def _check_out(cfg: AnalyzeConfig, protected: list[Path]) -> Path:
    """The analysis folder, refused (one line) when it would replace the run or part of it,
    or an existing analysis without ``overwrite``. Nothing is created here."""
    out = cfg.out_dir
    run = Path(cfg.run)
    if out.resolve() == run.resolve():
        raise InputError(f"{out}: the analysis folder cannot be the run directory itself; choose a subfolder")
    for name in ("checkpoints", "extras"):
        if out.resolve() == (run / name).resolve():
            raise InputError(f"{out}: would write into the run's {name}/ folder; choose another --out")
    return check_output(out, protected, overwrite=cfg.overwrite, folder=True)


def _latents(model, run: Path) -> np.ndarray:
    z = np.asarray(model.latents)
    if z.ndim != 2 or len(z) == 0:
        raise RunDirError(f"{run}/latents.npy: expected an (N, zdim) array, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise RunDirError(f"{run}/latents.npy: holds NaN/Inf values")
    return z.astype(np.float32, copy=False)


def _gt(cfg: AnalyzeConfig, info: RunInfo, model, n: int):
    """Ground truth and the run's true labels, checked before any long work."""
    if cfg.gt is None:
        return None, None
    try:
        from ..evaluation.ground_truth import load_ground_truth
    except ImportError:  # pragma: no cover - evaluation not built in this version
        raise InputError(
            "--gt needs cryohet.evaluation.ground_truth, which this cryohet lacks; run without --gt"
        ) from None

    gt = load_ground_truth(cfg.gt)  # one-line InputError on a missing folder/file
    run_A, gt_A = model.box * model.apix, gt.box * gt.apix
    if abs(run_A - gt_A) > 0.02 * gt_A:
        raise InputError(
            f"{cfg.gt}: the ground-truth box is {gt_A:.1f} Å ({gt.box} px at {gt.apix:.4g} Å/px) but the "
            f"run's is {run_A:.1f} Å ({model.box} px at {model.apix:.4g} Å/px)"
        )
    return gt, gt_labels_for_run(info, gt.labels, n)


def _embeddings(res: AnalysisResult, latents: np.ndarray, gt_labels: np.ndarray | None, out: Path) -> None:
    from .plots import plot_latents

    cfg, sub = res.cfg, res.subsample
    coords = res.pca.transform(latents, n=min(res.zdim, max(cfg.pcs, 2)))
    res.pca.save(out / "pca.npz")
    np.save(out / "pca_coords.npy", coords)
    if not res.pca.variance.sum() > 0:
        res.latent_note = (
            f"All {res.n_particles:,} particles have the same latent (the {res.info.method} method "
            "models no heterogeneity here), so there is nothing to embed or plot."
        )
        log.info("  %s", res.latent_note)
        return
    note = (
        f"{len(sub):,} of {res.n_particles:,} particles shown (random subsample, seed {cfg.seed})"
        if len(sub) < res.n_particles
        else ""
    )
    ratio = res.pca.explained_ratio
    if res.zdim >= 2:
        xy = coords[sub, :2]
        labels = (f"PC1 ({100 * ratio[0]:.1f} %)", f"PC2 ({100 * ratio[1]:.1f} %)")
    else:
        xy = np.column_stack([coords[sub, 0], latents[sub, 0]])
        labels = ("PC1", "z0")
    gl = None if gt_labels is None else gt_labels[sub]
    res.plots["pca"] = plot_latents(
        xy, res.kmeans.labels[sub], out / "plots" / "latent_pca.png", "PCA", labels, gl, note
    )
    if cfg.umap:
        emb = umap_embed(latents[sub], seed=cfg.seed)
        if emb is None:
            res.notes.append(
                "UMAP skipped (umap-learn not importable, or too few distinct latents); install cryohet[umap]."
            )
        else:
            np.save(out / "umap.npy", emb)
            np.save(out / "umap_index.npy", sub.astype(np.int64))
            res.umap_done = True
            res.plots["umap"] = plot_latents(
                emb, res.kmeans.labels[sub], out / "plots" / "latent_umap.png", "UMAP", ("UMAP1", "UMAP2"), gl, note
            )


def _convergence(res: AnalysisResult, run: Path, out: Path) -> None:
    """The snapshots against the last epoch (:mod:`.convergence`): a table and a plot."""
    from .convergence import convergence_table
    from .plots import plot_convergence

    rows = convergence_table(run, device=res.cfg.device, seed=res.cfg.seed, maps=res.cfg.volumes)
    if not rows:
        log.info("  no convergence view: the run kept fewer than two epoch snapshots")
        return
    res.convergence = rows
    keys = list(rows[0])
    with open(out / "convergence.csv", "w") as fh:
        fh.write(",".join(keys) + "\n")
        for r in rows:
            fh.write(",".join(f"{r[k]:.6g}" for k in keys) + "\n")
    res.plots["convergence"] = plot_convergence(rows, out / "plots" / "convergence.png")


def _series(res: AnalysisResult, model, latents: np.ndarray, out: Path, protected: list[Path]) -> None:
    from .plots import plot_series

    cfg, km = res.cfg, res.kmeans
    todo = [
        VolumeSeries(
            name=f"kmeans{cfg.k}",
            title=f"k-means clusters (k={km.k}), particle nearest each centre",
            latents=latents[km.representatives],
            captions=[f"cluster {i} (n={c})" for i, c in enumerate(km.counts)],
            rows=km.representatives,
        )
    ]
    coords = res.pca.transform(latents, n=min(cfg.pcs, res.zdim)) if cfg.pcs else None
    for pc in range(min(cfg.pcs, res.zdim)):
        if res.pca.variance[pc] <= 0:
            res.notes.append(f"PC{pc + 1} traversal skipped: the latents do not vary along it.")
            continue
        todo.append(pc_traversal(res.pca, coords, latents, pc, cfg.pc_steps, on_data=cfg.pc_on_data))
    if cfg.path is not None:
        if cfg.path_mode == "graph":
            i, j = cfg.path
            todo.append(graph_latent_path(latents, i, j, cfg.path_steps, cfg.path_neighbors, cfg.seed))
        else:
            todo.append(latent_path(latents, cfg.path[0], cfg.path[1], cfg.path_steps))
    for s in todo:
        decode_series(model, s, out / s.name, protected)
        res.plots[f"series_{s.name}"] = plot_series(s.projections, s.captions, out / "plots" / f"{s.name}.png", s.title)
        res.series.append(s)


def _parts(res: AnalysisResult, model, latents: np.ndarray, out: Path, protected: list[Path]) -> None:
    from .plots import plot_part_motion, plot_part_movers, plot_parts

    motion = load_part_motion(model.run, res.n_particles)
    if motion is not None:
        pm = part_motion_summary(motion, res.kmeans.labels, res.kmeans.k)
        res.part_motion = pm
        _write_motion_csv(pm, out / "parts" / "motion_per_cluster.csv")
        res.plots["part_motion"] = plot_part_motion(pm.angle_deg, pm.translation_A, out / "plots" / "part_motion.png")
    if not res.cfg.volumes:
        return
    row = int(nearest_rows(latents, latents.mean(0, dtype=np.float64))[0])
    maps = write_part_maps(model, latents[row], row, out / "parts", protected)
    if maps is not None:
        res.part_maps = maps
        res.plots["parts"] = plot_parts(
            maps.projections,
            part_colours(len(maps.files)),
            out / "plots" / "parts.png",
            f"{len(maps.files)} parts at the latent of particle {row} (nearest the mean latent)",
        )
        pm = res.part_motion
        if pm is not None and pm.n_parts == len(maps.files):
            res.plots["part_movers"] = plot_part_movers(
                maps.projections,
                np.ptp(pm.angle_deg, axis=0),
                out / "plots" / "part_movers.png",
                "parts coloured by how much their rotation changes between clusters (most mobile numbered)",
            )


def _write_motion_csv(pm: PartMotion, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["cluster,n_particles,part,rotation_deg,translation_A" + (",occupancy" if pm.occupancy is not None else "")]
    for c in range(pm.angle_deg.shape[0]):
        for p in range(pm.n_parts):
            row = f"{c},{pm.counts[c]},{p},{pm.angle_deg[c, p]:.4f},{pm.translation_A[c, p]:.4f}"
            if pm.occupancy is not None:
                row += f",{pm.occupancy[c, p]:.4f}"
            lines.append(row)
    path.write_text("\n".join(lines) + "\n")
    return path


def _evaluate(res: AnalysisResult, out: Path) -> None:
    """Evaluation against ``cfg.gt`` via :mod:`cryohet.evaluation.evaluate`, written to ``eval/``.

    The rest of the analysis does not depend on it: when the evaluation module is missing
    or fails, the report says so in its evaluation section and the analysis goes on.
    """
    try:
        from ..evaluation.evaluate import evaluate_run, write_evaluation
    except Exception as err:
        _eval_failed(res, f"cryohet.evaluation.evaluate is not usable in this version ({type(err).__name__}: {err})")
        return
    try:
        result = evaluate_run(res.cfg.run, res.cfg.gt, device=res.cfg.device)
        write_evaluation(result, out / "eval")
    except Exception as err:
        _eval_failed(res, f"{type(err).__name__}: {err}")
        return
    res.evaluation = result
    for name in ("fsc_curves", "auc_per_state"):
        png = out / "eval" / f"{name}.png"
        if png.is_file():
            res.plots[name] = png


def _eval_failed(res: AnalysisResult, why: str) -> None:
    line = " ".join(why.split())[:300]
    log.warning("evaluation skipped: %s", line)
    res.eval_note = (
        f"The evaluation against {res.cfg.gt} could not be computed ({line}); the rest of the analysis is unaffected."
    )
    res.notes.append(res.eval_note)


def _summary(res: AnalysisResult) -> dict[str, Any]:
    out = res.write_dir

    def rel(p) -> str:
        return Path(p).resolve().relative_to(out.resolve()).as_posix()

    summary: dict[str, Any] = {
        "run": str(Path(res.cfg.run).resolve()),
        "command": command_line(res.cfg),
        "method": res.info.method,
        "n_particles": res.n_particles,
        "zdim": res.zdim,
        "config": res.cfg.model_dump(mode="json"),
        "pca_explained_ratio": [float(x) for x in res.pca.explained_ratio],
        "subsample": int(len(res.subsample)),
        "umap": res.umap_done,
        "kmeans": {
            "k": res.kmeans.k,
            "counts": res.kmeans.counts.tolist(),
            "representatives": res.kmeans.representatives.tolist(),
        },
        "series": {s.name: {"files": [rel(f) for f in s.files], "level": s.level} for s in res.series},
        "parts": None if res.part_maps is None else [rel(f) for f in res.part_maps.files],
        "plots": {k: rel(v) for k, v in res.plots.items()},
        "notes": res.notes,
        "seconds": round(res.seconds, 2),
    }
    if res.evaluation is not None:
        ev = res.evaluation
        summary["evaluation"] = {
            "auc_ceiling": ev.get("auc_ceiling"),
            **{
                n: {k: b.get(k) for k in ("auc_mean", "auc_std", "auc_median")}
                for n, b in (ev.get("per_conformation") or {}).items()
            },
        }
    elif res.eval_note:
        summary["evaluation"] = {"skipped": res.eval_note}
    return summary


def _attach_logs(run: Path, out: Path) -> list[logging.Handler]:
    """Log lines go to ``out/analyze.log`` (this analysis) and are appended to ``RUN/run.log``."""
    handlers: list[logging.Handler] = []
    fh = logging.FileHandler(out / "analyze.log", mode="w", encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    get_logger().addHandler(fh)
    handlers.append(fh)
    try:
        before = set(get_logger().handlers)
        h = attach_run_log(run)
        if h not in before:  # a run.log handler someone else attached stays attached
            handlers.append(h)
    except OSError as err:
        log.warning("%s/run.log: not writable (%s); the log is in %s only", run, err.strerror, out / "analyze.log")
    return handlers


def analyze_run(cfg: AnalyzeConfig) -> AnalysisResult:
    """Analyse ``cfg.run`` (see the module doc); returns what was computed and written.

    The analysis folder is written fresh: everything goes into a temporary sibling folder
    that replaces ``cfg.out_dir`` as a whole at the end (:func:`cryohet.io.outputs.staged_folder`),
    so a failure leaves the previous analysis as it was, and no file of it survives a rerun.
    """
    from ..methods.base import load_run

    start = time.monotonic()
    run = Path(cfg.run)
    model = load_run(
        run, device=cfg.device, allow_unfinished=cfg.allow_unfinished, epoch=cfg.epoch
    )  # RunDirError: one line for a bad/unknown run
    info = read_run_info(run)
    latents = _latents(model, run)
    gt, gt_labels = _gt(cfg, info, model, len(latents))
    protected = _protected(cfg, info)
    out = _check_out(cfg, protected)
    with staged_folder(out, overwrite=cfg.overwrite, inputs=protected) as work:
        res = _analyze_into(work, cfg, run, model, info, latents, gt, gt_labels, protected, start)
    res.files_moved()
    return res


def _analyze_into(
    out: Path,
    cfg: AnalyzeConfig,
    run: Path,
    model,
    info: RunInfo,
    latents: np.ndarray,
    gt,
    gt_labels: np.ndarray | None,
    protected: list[Path],
    start: float,
) -> AnalysisResult:
    """Every step of the analysis, written into the (temporary) folder ``out``."""
    handlers = _attach_logs(run, out)
    try:
        log.info("%s", command_line(cfg))
        log.info(
            "analyze %s: %s, %d particles, zdim %d -> %s", run, model.method, len(latents), model.zdim, cfg.out_dir
        )
        steps = _Steps(4 + cfg.volumes + (gt is not None) + cfg.report)
        steps("PCA and k-means of the latents")
        res = AnalysisResult(
            cfg=cfg,
            info=info,
            describe=model.describe(),
            n_particles=len(latents),
            zdim=int(latents.shape[1]),
            pca=fit_pca(latents),
            kmeans=kmeans_latents(latents, cfg.k, seed=cfg.seed),
            subsample=subsample_indices(len(latents), cfg.max_points, cfg.seed),
            work_dir=out,
        )
        write_kmeans(res.kmeans, latents, out / f"kmeans{cfg.k}")
        steps("latent embeddings (PCA" + (", UMAP)" if cfg.umap else ")"))
        _embeddings(res, latents, gt_labels, out)
        if cfg.volumes:
            steps("volumes: k-means centres, PC traversals" + (", path" if cfg.path else ""))
            _series(res, model, latents, out, protected)
        steps("parts")
        if cfg.parts:
            _parts(res, model, latents, out, protected)
        if res.part_motion is None and res.part_maps is None:
            log.info("  no parts (the %s method is not part-aware)", model.method)
        if gt is not None:
            steps(f"evaluation against {cfg.gt}")
            _evaluate(res, out)
        steps("training curves" + (" and convergence" if cfg.convergence else ""))
        from .plots import plot_training

        curves = plot_training(info.log, out / "plots" / "training.png")
        if curves is not None:
            res.plots["training"] = curves
        if cfg.convergence:
            _convergence(res, run, out)
        res.seconds = time.monotonic() - start
        if cfg.report:
            steps("report")
            from .report import write_report

            write_report(res)
        res.seconds = time.monotonic() - start
        (out / "summary.json").write_text(json.dumps(_summary(res), indent=2))
        log.info("analysis done in %.1f s", res.seconds)
        return res
    finally:
        for h in handlers:
            detach_handler(h)
