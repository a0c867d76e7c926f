"""The README's main job: simulate a small ``igg-1d`` set, train CryoSPIRE, evaluate, report.

``cryohet demo --out DIR`` (``make demo``) runs, on the laptop-sized default:

1. ``DIR/data``: ``igg-1d`` simulated particles with ground truth (one Fab swinging about
   the hinge);
2. ``DIR/homogeneous``: the consensus map (the baseline every heterogeneity method must
   beat under the FSC AUC metric, because it uses every image);
3. ``DIR/spire``: CryoSPIRE with the given poses and CTF;
4. ``cryohet evaluate`` of both against the ground truth (``RUN/eval/metrics.json``);
5. ``cryohet analyze`` of the CryoSPIRE run with the ground truth
   (``DIR/spire/analyze/report.html``);
6. one table: per-conformation FSC AUC (masked; mean, median), latent ARI, the moving
   part's purity, beside the ground-truth ceiling.

Every stage is skipped when its output already exists, so a killed demo continues
(CryoSPIRE itself resumes from its last checkpoint).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from ..config import StrictModel
from ..console import get_logger
from ..errors import InputError
from ..io.outputs import atomic_write

__all__ = ["DemoConfig", "run_demo", "demo_rows"]

log = get_logger("demo")


class DemoConfig(StrictModel):
    """Sizes of the demo (defaults: about 6 minutes on 2 CPU cores)."""

    out: Path
    n_images: int = Field(2000, gt=0)
    n_states: int = Field(10, gt=1)
    box: int = Field(40, ge=16, description="image size in pixels")
    apix: float = Field(8.0, gt=0, description="Å/px (IgG spans ~180 Å)")
    snr: float = Field(0.05, gt=0)
    epochs_a: int = Field(12, ge=0)
    epochs_b: int = Field(12, ge=0)
    seed: int = 0
    device: str = "cpu"
    analyze: bool = Field(True, description="also write the HTML report of the CryoSPIRE run")


def _simulate(cfg: DemoConfig, data: Path) -> None:
    from ..simulate.config import SimulationConfig
    from ..simulate.simulator import simulate_dataset

    if (data / "meta.json").exists():
        log.info("reusing %s", data)
        return
    simulate_dataset(
        SimulationConfig(
            preset="igg-1d",
            out=data,
            n_images=cfg.n_images,
            n_states=cfg.n_states,
            box=cfg.box,
            apix=cfg.apix,
            snr=cfg.snr,
            seed=cfg.seed,
            overwrite=data.exists(),
        )
    )


def _train_homogeneous(cfg: DemoConfig, data: Path, run: Path) -> None:
    from ..io.source import ParticleSource
    from ..methods.baselines import HomogeneousConfig, train_homogeneous
    from ..training.rundir import RunDir

    if RunDir(run).is_complete():
        log.info("reusing %s", run)
        return
    train_homogeneous(
        HomogeneousConfig(
            data=ParticleSource(path=str(data / "particles.star")),
            out=str(run),
            device=cfg.device,
            seed=cfg.seed,
        ),
        overwrite=run.exists(),
    )


def _train_spire(cfg: DemoConfig, data: Path, run: Path) -> None:
    from ..io.source import ParticleSource
    from ..methods.spire import SpireConfig, train_spire
    from ..training.checkpoint import latest_checkpoint
    from ..training.rundir import RunDir

    if RunDir(run).is_complete():
        log.info("reusing %s", run)
        return
    spire = SpireConfig(
        data=ParticleSource(path=str(data / "particles.star")),
        out=str(run),
        device=cfg.device,
        seed=cfg.seed,
        stage_a={"epochs": cfg.epochs_a},
        stage_b={"epochs": cfg.epochs_b},
        optim={"batch_size": 16},
    )
    train_spire(spire, resume=latest_checkpoint(run) is not None)


def _evaluate(run: Path, gt: Path) -> dict[str, Any]:
    from ..evaluation.evaluate import evaluate_run, write_evaluation

    result = evaluate_run(run, gt)
    write_evaluation(result, run / "eval", overwrite=True)  # recomputed on every demo run, replaced as a whole
    return result


def demo_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows (method, masked per-state AUC mean/median, ARI, part purity) + ceiling."""
    rows = []
    ceiling = None
    for name, res in results.items():
        pc = res["per_conformation"].get("masked") or res["per_conformation"]["unmasked"]
        parts = res.get("parts") or {}
        purity = parts.get("moving_part_purity") if isinstance(parts, dict) else None
        rows.append(
            {
                "method": name,
                "auc_mean": pc["auc_mean"],
                "auc_median": pc["auc_median"],
                "ari": res["clustering"]["ari"],
                "moving_part": purity.get("moving_in_main_part") if isinstance(purity, dict) else None,
            }
        )
        ceiling = res["auc_ceiling"]
    rows.append(
        {"method": "ground-truth ceiling", "auc_mean": ceiling, "auc_median": ceiling, "ari": 1.0, "moving_part": None}
    )
    return rows


def _print_table(rows: list[dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    lines = [
        "| method | per-state FSC AUC (mean) | (median) | latent ARI | moving Fab in one part |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {fmt(r['auc_mean'])} | {fmt(r['auc_median'])} | {fmt(r['ari'])} | {fmt(r['moving_part'])} |"
        for r in rows
    ]
    return "\n".join(lines)


def run_demo(cfg: DemoConfig) -> list[dict[str, Any]]:
    """Run the whole demo under ``cfg.out``; returns the table rows (also ``demo_table.md``)."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = out / "data"
    _simulate(cfg, data)
    _train_homogeneous(cfg, data, out / "homogeneous")
    _train_spire(cfg, data, out / "spire")
    results = {
        "homogeneous (consensus)": _evaluate(out / "homogeneous", data),
        "cryohet spire": _evaluate(out / "spire", data),
    }
    if cfg.analyze:
        from ..analysis.analyze import analyze_run
        from ..analysis.config import AnalyzeConfig

        analyze_run(
            AnalyzeConfig(
                run=out / "spire",
                gt=data,
                k=cfg.n_states,
                umap=False,
                device=cfg.device,
                out=out / "spire" / "analyze",
                overwrite=True,  # the demo's own folder, recomputed on every run
            )
        )
    rows = demo_rows(results)
    table = _print_table(rows)
    with atomic_write(out / "demo_table.md") as fh:
        fh.write(table + "\n")
    with atomic_write(out / "demo_results.json") as fh:
        fh.write(json.dumps({"rows": rows, "minutes": (time.time() - t0) / 60}, indent=2))
    print(table)
    report = out / "spire" / "analyze" / "report.html"
    print(f"\n{(time.time() - t0) / 60:.1f} min; report: {report if report.exists() else '(not written)'}")
    return rows
