"""``cryohet fsc MAP1 MAP2``: FSC curve, CryoBench AUC and resolution at 0.5 / 0.143."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import InputError
from ..io.outputs import check_output, same_file, staged_files
from .options import examples, param_default

if TYPE_CHECKING:
    from ..evaluation.fsc_report import FSCReport
    from ..metrics.fsc import FSCCurve

__all__ = ["register", "report_tables"]

_compare_map_files = "cryohet.evaluation.fsc_report:compare_map_files"  # its defaults are the options'


def _res(report: FSCReport, threshold: float, masked: bool) -> str:
    v = report.resolution(threshold, masked)
    if not math.isfinite(v):
        return "-"
    return f"{v:.2f} Å" if report.crosses(threshold, masked) else f"<= {v:.2f} Å (Nyquist)"


def _curve_table(report: FSCReport, curve: FSCCurve, title: str, n_rows: int = 8) -> Table:
    """A few evenly spaced shells of a conventional FSC curve."""
    t = Table(title=title)
    for col in ("shell", "1/Å", "Å", "FSC"):
        t.add_column(col, justify="right")
    n = len(curve.fsc)
    step = max(1, (n - 1) // n_rows)
    rows = list(range(1, n, step))
    if rows and rows[-1] != n - 1:
        rows.append(n - 1)
    for k in rows:
        f = float(curve.freq_per_A(report.apix)[k])
        t.add_row(str(k), f"{f:.4f}", f"{1.0 / f:.2f}", f"{curve.fsc[k]:.3f}")
    return t


def report_tables(report: FSCReport) -> list[Table]:
    """Rich tables summarising an :class:`FSCReport` (used by ``cryohet fsc``)."""
    from ..evaluation.fsc_report import THRESHOLDS

    title = f"FSC ({report.box}^3 box, {report.apix:g} Å/px, Nyquist {2 * report.apix:.2f} Å)"
    summary = Table(title=title)
    summary.add_column("", style="bold")
    summary.add_column("unmasked", justify="right")
    masked = report.masked_cryobench is not None
    if masked:
        summary.add_column("masked", justify="right")
    auc_max = (report.box // 2 - 1) / report.box
    row = [f"{report.cryobench.auc:.4f}"] + ([f"{report.masked_cryobench.auc:.4f}"] if masked else [])
    summary.add_row(f"CryoBench AUC (max {auc_max:.4f})", *row)
    for t in THRESHOLDS:
        row = [_res(report, t, False)] + ([_res(report, t, True)] if masked else [])
        summary.add_row(f"resolution at FSC={t:g}", *row)
    tables = [summary, _curve_table(report, report.standard, "FSC curve (unmasked)")]
    if masked and report.masked_standard is not None:
        tables.append(_curve_table(report, report.masked_standard, "FSC curve (masked)"))
    return tables


def fsc(
    map1: Path = typer.Argument(..., help="First map (.mrc); its header gives the pixel size."),
    map2: Path = typer.Argument(..., help="Second map (.mrc), same box and pixel size."),
    mask: Optional[Path] = typer.Option(
        param_default(_compare_map_files, "mask"), "--mask", help="Real-space mask (.mrc) multiplying both maps."
    ),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a plot of the FSC curves (.png/.pdf)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write summary and curves as JSON."),
    apix: Optional[float] = typer.Option(
        param_default(_compare_map_files, "apix"), "--apix", help="Pixel size in Å/px (overrides the headers)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing --plot/--json files."),
) -> None:
    """Fourier shell correlation of two maps: CryoBench AUC and resolution at 0.5 and 0.143."""
    from ..evaluation.fsc_report import compare_map_files, plot_report, write_report_json

    outputs = [p for p in (json_out, plot) if p is not None]
    for out in outputs:
        check_output(out, (map1, map2, mask), overwrite=overwrite)
    if json_out is not None and plot is not None and same_file(json_out, plot):
        raise InputError(f"{plot}: --plot and --json name the same file")
    report = compare_map_files(map1, map2, mask=mask, apix=apix)
    console = Console()
    for table in report_tables(report):
        console.print(table)
    with staged_files(outputs) as tmps:  # both files, or neither
        staged = dict(zip(outputs, tmps))
        if json_out is not None:
            write_report_json(report, staged[json_out])
        if plot is not None:
            plot_report(report, staged[plot])
    for out in outputs:
        console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command(
        "fsc",
        epilog=examples(
            "cryohet fsc half1.mrc half2.mrc",
            "cryohet fsc map.mrc gt/state_000.mrc --mask gt/mask.mrc --plot fsc.png",
            "cryohet fsc a.mrc b.mrc --json fsc.json --apix 1.06",
        ),
    )(fsc)
