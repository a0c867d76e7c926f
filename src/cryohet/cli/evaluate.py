"""``cryohet evaluate RUN --gt GTDIR``: CryoBench metrics of any method's run against a simulated truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import InputError
from .options import epoch_option, examples, param_default

__all__ = ["register", "evaluation_table"]

# the API functions whose defaults are the options' (read without importing them)
_evaluate_run = "cryohet.evaluation.evaluate:evaluate_run"
_write_evaluation = "cryohet.evaluation.evaluate:write_evaluation"


def evaluation_table(result: dict[str, Any]) -> Table:
    """One rich table summarising :func:`cryohet.evaluation.evaluate.evaluate_run`'s result."""
    t = Table(
        title=f"{result['method']} vs ground truth ({result['n_states']} states, {result['n_particles']} particles, "
        f"{result['box']}^3 at {result['apix']:.4g} Å/px)"
    )
    t.add_column("metric", style="bold")
    t.add_column("value", justify="right")
    for name, block in result["per_conformation"].items():
        t.add_row(
            f"per-conformation FSC AUC, {name}",
            f"{block['auc_mean']:.4f} ({block['auc_std']:.4f}) / {block['auc_median']:.4f}",
        )
    t.add_row("  mean (std) / median; ceiling (D/2-1)/D", f"{result['auc_ceiling']:.4f}")
    first = next(iter(result["per_conformation"].values()))
    states = list(first["per_state"])
    shown = states if len(states) <= 12 else states[:: max(1, len(states) // 10)]
    for s in shown:
        vals = "  ".join(f"{result['per_conformation'][n]['per_state'][s]:.4f}" for n in result["per_conformation"])
        t.add_row(f"  state {s} ({', '.join(result['per_conformation'])})", vals)
    if result.get("per_image"):
        pi = result["per_image"]
        t.add_row(
            "per-image FSC AUC (|FSC|), overall mean (std)",
            f"{pi['auc_overall_mean']:.4f} ({pi['auc_overall_std']:.4f})",
        )
    cl = result["clustering"]
    t.add_row(f"k-means (K={cl['k']}) ARI / NMI", f"{cl['ari']:.4f} / {cl['nmi']:.4f}")
    spread = list(cl["latent_spread"].values())
    t.add_row("latent spread per state (mean)", f"{sum(spread) / len(spread):.4f}")
    if result.get("poses"):
        p = result["poses"]
        t.add_row("rotation error mean / median (°)", f"{p['rotation_deg_mean']:.3f} / {p['rotation_deg_median']:.3f}")
        if "rotation_deg_modulo_symmetry_median" in p:
            t.add_row(
                "  modulo the pseudo-symmetry (°); at a mate",
                f"{p['rotation_deg_modulo_symmetry_mean']:.3f} / {p['rotation_deg_modulo_symmetry_median']:.3f}; "
                f"{p['symmetry_mate_fraction']:.0%}",
            )
        symmetric = "per_state_rotation_deg_modulo_symmetry_median" in p  # plain per-state errors mix the mates
        if "per_class_aligned" in p and not symmetric:
            pc = p["per_class_aligned"]
            t.add_row(
                "  each state aligned alone, mean / median (°)",
                f"{pc['rotation_deg_mean']:.3f} / {pc['rotation_deg_median']:.3f}",
            )
        key = "per_state_rotation_deg_modulo_symmetry_median" if symmetric else "per_state_rotation_deg_median"
        per_state = p.get(key)
        if per_state:
            worst = max(per_state.items(), key=lambda kv: kv[1])
            how = " modulo the pseudo-symmetry" if symmetric else ""
            t.add_row(f"  worst state's median{how} (°)", f"state {worst[0]}: {worst[1]:.3f}")
        t.add_row("translation error RMSE (px)", f"{p['rmse_px']:.3f}")
    else:
        t.add_row("pose errors", "n/a (no poses in the run or the ground truth)")
    _part_rows(t, result.get("parts"))
    return t


def _part_rows(t: Table, parts: dict[str, Any] | None) -> None:
    """Rows for the part metrics (part-aware Gaussian methods with ground-truth atoms)."""
    if not parts:
        return
    t.add_row("parts / Gaussians", f"{parts['n_parts']} / {parts['n_gaussians']}")
    mp = parts.get("moving_part_purity")
    if mp:
        t.add_row("moving Gaussians in the main part (want >= 0.8)", f"{mp['moving_in_main_part']:.3f}")
        t.add_row("static Gaussians in the main part (want < 0.4)", f"{mp['static_in_main_part']:.3f}")
    ac = parts.get("absent_chain_occupancy")
    if ac:
        t.add_row(
            "absent-chain occupancy mean / max (want < 0.2)",
            f"{ac['mean_absent_occupancy']:.3f} / {ac['max_absent_occupancy']:.3f}",
        )
        t.add_row("present-chain occupancy min", f"{ac['min_present_occupancy']:.3f}")


def evaluate(
    run: Path = typer.Argument(..., help="Run directory of any method (cryohet train ..., or a wrapped external run)."),
    gt: Path = typer.Option(
        ..., "--gt", help="Simulated dataset folder (or its gt/ folder) with labels and state maps."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output folder (default: RUN/eval, RUN/eval.EPOCH with --epoch)."
    ),
    overwrite: bool = typer.Option(
        param_default(_write_evaluation, "overwrite"),
        "--overwrite",
        help="Replace an existing non-empty output folder (as a whole).",
    ),
    mask: Optional[Path] = typer.Option(
        param_default(_evaluate_run, "mask"), "--mask", help="Mask for the masked scores (default: GT/gt/mask.mrc)."
    ),
    no_mask: bool = typer.Option(False, "--no-mask", help="Report unmasked scores only."),
    per_image: Optional[int] = typer.Option(
        param_default(_evaluate_run, "per_image"), "--per-image", help="Also the per-image FSC on about N images."
    ),
    align: bool = typer.Option(
        param_default(_evaluate_run, "align"),
        "--align",
        help="Ab initio runs: move all maps by one global rotation, shift and hand (both tried).",
    ),
    device: str = typer.Option(
        param_default(_evaluate_run, "device"), "--device", help="Device on which the method decodes volumes."
    ),
    allow_unfinished: bool = typer.Option(
        param_default(_evaluate_run, "allow_unfinished"),
        "--allow-unfinished",
        help="Use a run that is unfinished (still training, killed or failed) as it is.",
    ),
    epoch: Optional[int] = epoch_option(
        _evaluate_run, "Evaluate the run as it was after this epoch (its snapshot in RUN/epochs/)."
    ),
) -> None:
    """Per-conformation FSC AUC (CryoBench, masked and unmasked), clustering and pose errors.

    Writes OUT/metrics.json, OUT/fsc_curves.png, OUT/auc_per_state.png and one
    OUT/fsc_states/fsc_state_NNN.png per state. An existing OUT is replaced only with
    --overwrite, and then as a whole.
    """
    from ..evaluation.evaluate import evaluate_run, evaluation_inputs, write_evaluation
    from ..io.outputs import check_output

    if no_mask and mask is not None:
        raise InputError("--mask and --no-mask exclude each other")
    if per_image is not None and per_image < 1:
        raise InputError(f"--per-image must be at least 1, got {per_image}")
    unmasked = {"use_mask": False} if no_mask else {}  # the flag only switches masking off
    target = out if out is not None else run / ("eval" if epoch is None else f"eval.{epoch}")
    inputs = evaluation_inputs(run, gt, mask)
    check_output(target, inputs, overwrite=overwrite, folder=True)  # before the long work
    result = evaluate_run(
        run, gt, mask=mask, per_image=per_image, align=align, device=device, allow_unfinished=allow_unfinished,
        epoch=epoch, **unmasked,
    )  # fmt: skip
    written = write_evaluation(result, target, overwrite=overwrite, inputs=inputs)
    Console().print(evaluation_table(result))
    typer.echo(f"wrote {written[0]}")


def register(app: typer.Typer) -> None:
    app.command(
        "evaluate",
        epilog=examples(
            "cryohet evaluate runs/spire --gt data/igg1d",
            "cryohet evaluate runs/spire --gt data/igg1d --per-image 500 --device cuda",
            "cryohet evaluate runs/abinit --gt data/igg1d --align -o runs/abinit/eval",
            "cryohet evaluate runs/abinit --gt data/igg1d --align --epoch 13",
        ),
    )(evaluate)
