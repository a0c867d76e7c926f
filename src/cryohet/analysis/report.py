"""The single-file HTML report of ``cryohet analyze`` (``analyze/report.html``).

Self-contained: every image is an embedded ``data:image/png;base64`` PNG, the style sheet
and the one script are inline and nothing is fetched, so the file can be mailed or opened
offline. Sections: run summary (data, method, resolved config, provenance, training
curves), latent space, clusters, select particles (the only part that needs JavaScript:
a lasso on the latent scatter and downloads, :mod:`.report_select`), traversals, parts,
evaluation, files.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..io.outputs import atomic_write
from .report_select import SELECT_CSS, select_data, select_section

if TYPE_CHECKING:
    from .result import AnalysisResult

__all__ = ["write_report", "render_report"]

_CSS = """
:root { --ink:#1d2733; --muted:#5b6776; --line:#dde3ea; --accent:#1f6fb2; --bg:#f5f7fa; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background:#12324f; color:#fff; padding:22px 32px 16px; }
header h1 { margin:0 0 4px; font-size:24px; font-weight:600; }
header .sub { color:#c9d8e6; font-size:14px; }
nav { background:#fff; border-bottom:1px solid var(--line); padding:8px 32px; position:sticky; top:0; z-index:2; }
nav a { color:var(--accent); text-decoration:none; margin-right:18px; font-size:14px; }
main { max-width:1320px; margin:0 auto; padding:20px 32px 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:18px 22px; margin:0 0 20px; }
h2 { margin:0 0 10px; font-size:19px; color:#12324f; }
h3 { margin:18px 0 6px; font-size:15px; color:#12324f; }
p.note, .note { color:var(--muted); font-size:13px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:4px 0 6px; }
.card { border:1px solid var(--line); border-radius:8px; padding:8px 14px; min-width:130px; background:#fbfcfd; }
.card .v { font-size:20px; font-weight:600; }
.card .k { font-size:12px; color:var(--muted); text-transform:uppercase; letter-spacing:.03em; }
table { border-collapse:collapse; font-size:13px; margin:6px 0 10px; }
th, td { border-bottom:1px solid var(--line); padding:4px 10px; text-align:left; vertical-align:top; }
th { background:#f0f4f8; font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; }
table.kv th { width:190px; }
img { max-width:100%; height:auto; display:block; margin:8px 0; border:1px solid #eef1f4; }
code, pre { font-family: "SFMono-Regular", Menlo, Consolas, monospace; font-size:12.5px; }
pre { background:#f6f8fa; border:1px solid var(--line); padding:10px; overflow:auto; max-height:420px; }
details summary { cursor:pointer; color:var(--accent); margin:6px 0; }
.wrap { display:flex; flex-wrap:wrap; gap:24px; align-items:flex-start; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:10px 0 30px; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _img(path: Path | None, alt: str) -> str:
    if path is None or not Path(path).exists():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] | None = None, cls: str = "") -> str:
    numeric = numeric or set()
    head = "".join(
        f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>" for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kv(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v not in (None, ""))
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _cards(items: list[tuple[str, Any]]) -> str:
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>' for k, v in items)
        + "</div>"
    )


def _rel(res: AnalysisResult, p: Path) -> str:
    try:
        return Path(p).resolve().relative_to(res.write_dir.resolve()).as_posix()
    except ValueError:
        return str(p)


def _log_value(key: str, value: Any) -> Any:
    """A train_log.jsonl value for display: ``time`` (Unix seconds) as local ISO time, floats to 4 digits."""
    if key == "time" and isinstance(value, (int, float)) and value > 1e8:
        return _dt.datetime.fromtimestamp(value).astimezone().isoformat(timespec="seconds")
    return f"{value:.4g}" if isinstance(value, float) else value


def _convergence_html(res: AnalysisResult) -> str:
    """Convergence: the per-epoch snapshots against the last one (a plot and its table)."""
    if not res.convergence:
        return ""
    keys = list(res.convergence[0])
    rows = [[int(r["epoch"]), *(f"{r[k]:.3f}" for k in keys[1:])] for r in res.convergence]
    return (
        "<h3>Convergence</h3><p class='note'>Snapshots (RUN/epochs/) against the last epoch: the fraction of "
        "each particle's 10 nearest latent neighbours that are still its neighbours, the latents' change "
        "from the previous snapshot after the best rotation and scale (relative RMS), and the FSC AUC of "
        "the map at the mean latent against the last epoch's (1 = the same map). Flat curves near 1, 0 "
        "and 1: converged. Analyse an earlier epoch with <code>cryohet analyze RUN --epoch N</code>.</p>"
        + _img(res.plots.get("convergence"), "convergence")
        + _table(["epoch", *keys[1:]], rows, numeric=set(range(len(keys))))
    )


def _summary_section(res: AnalysisResult) -> str:
    d, info = res.describe, res.info
    prov = info.provenance
    cards = [
        ("method", info.method),
        ("particles", f"{res.n_particles:,}"),
        ("latent dim", res.zdim),
        ("box", f"{d.get('box')} px"),
        ("pixel size", f"{float(d.get('apix', 0)):.3g} Å"),
    ]
    if "parts" in d:
        cards.append(("parts", d["parts"]))
    if res.evaluation is not None:
        block = next(iter((res.evaluation.get("per_conformation") or {}).values()), {})
        if isinstance(block.get("auc_mean"), (int, float)):
            cards.append(("mean FSC AUC", f"{block['auc_mean']:.3f}"))
    extra = [(k, v) for k, v in d.items() if k not in ("method", "box", "apix", "n_particles", "zdim")]
    rows = [
        ("run directory", Path(res.cfg.run).resolve()),
        ("particles file", info.data_path),
        ("method", info.method),
        *[(k, v) for k, v in extra],
        ("cryohet version (training)", prov.get("cryohet_version")),
        ("trained", prov.get("time")),
        ("command", prov.get("command")),
        ("working directory", prov.get("cwd")),
    ]
    for k in ("seconds", "images_per_s", "peak_rss_mb"):
        if k in info.resolved:
            rows.append((f"training {k.replace('_', ' ')}", info.resolved[k]))
    training = _img(res.plots.get("training"), "training curves")
    if not training and len(info.log) == 1:  # one row (a closed-form method): its numbers, no curve
        row = [
            (k, _log_value(k, v))
            for k, v in info.log[0].items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool)
        ]
        training = "<p class='note'>One training log row (train_log.jsonl):</p>" + _kv(row)
    return (
        '<section id="run"><h2>Run</h2>'
        + _cards(cards)
        + _kv(rows)
        + "<details><summary>Resolved configuration (config.yaml)</summary>"
        + f"<pre>{_e(info.config_yaml())}</pre></details>"
        + (
            "<h3>Training</h3>"
            + (
                "<p class='note'>Per-epoch values from train_log.jsonl (losses and throughput).</p>"
                if res.plots.get("training")
                else ""
            )
            + training
            if training
            else "<p class='note'>No training log (train_log.jsonl) in this run.</p>"
        )
        + _convergence_html(res)
        + "</section>"
    )


def _latent_section(res: AnalysisResult) -> str:
    ratio = res.pca.explained_ratio
    shown = min(len(ratio), 8)
    pca_rows = [[f"PC{i + 1}", f"{100 * ratio[i]:.1f} %", f"{np.sqrt(res.pca.variance[i]):.3g}"] for i in range(shown)]
    sub = (
        f"{len(res.subsample):,} of {res.n_particles:,} particles (random subsample, seed {res.cfg.seed}) are shown "
        f"in the scatter plots and used for UMAP."
        if len(res.subsample) < res.n_particles
        else f"All {res.n_particles:,} particles are shown."
    )
    parts = [
        '<section id="latent"><h2>Latent space</h2>',
        f"<p>Each dot is a particle. Colours are the k-means clusters (k = {res.kmeans.k}) used throughout this "
        "report; the density panel shows where most particles are. " + _e(sub) + "</p>",
        '<div class="wrap"><div>'
        + _table(["axis", "variance explained", "std (latent units)"], pca_rows, {1, 2})
        + "</div></div>",
        _img(res.plots.get("pca"), "PCA of the latents"),
    ]
    if res.latent_note:
        parts.append(f"<p class='note'>{_e(res.latent_note)}</p>")
    elif res.umap_done:
        parts.append(_img(res.plots.get("umap"), "UMAP of the latents"))
    elif res.cfg.umap:
        parts.append(
            "<p class='note'>UMAP was skipped (umap-learn is not installed, or too few distinct latents); "
            "install <code>cryohet[umap]</code> for it.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _cluster_section(res: AnalysisResult) -> str:
    km = res.kmeans
    rows = [
        [i, int(c), f"{100 * c / res.n_particles:.1f} %", int(r)]
        for i, (c, r) in enumerate(zip(km.counts, km.representatives))
    ]
    folder = f"kmeans{res.cfg.k}"
    series = next((s for s in res.series if s.name == folder), None)
    gallery = ""
    if series is not None:
        gallery = (
            "<h3>Cluster maps</h3><p class='note'>Each column is the map at the particle nearest one cluster "
            "centre, shown as projections (sums through the map) from the top, front and side, with one grey "
            "scale per row, cropped to the molecule. The last row is the view in which the maps differ most, minus the "
            "average of all maps: "
            "<b style='color:#b2182b'>red</b> = more density than average, "
            "<b style='color:#2166ac'>blue</b> = less — that is what moves.</p>"
            + _img(res.plots.get(f"series_{folder}"), "cluster maps")
            + f"<p class='note'>Maps: <code>{folder}/vol_000.mrc …</code> "
            f"({series.files and len(series.files)} files); "
            f"play them in ChimeraX with <code>chimerax {folder}/movie.cxc</code>.</p>"
        )
    return (
        f'<section id="clusters"><h2>Clusters</h2><p>k-means with k = {km.k} on the latents (seed {res.cfg.seed}); '
        "clusters are numbered along the first principal component. Select particles of clusters with "
        f"<code>cryohet select RUN --clusters 3,5 --k {res.cfg.k} --out subset.star</code>.</p>"
        + gallery
        + "<details><summary>Cluster sizes and representative particles</summary>"
        + _table(["cluster", "particles", "share", "representative particle (row)"], rows, {1, 2, 3})
        + "</details>"
        + "</section>"
    )


def _traversal_section(res: AnalysisResult) -> str:
    items = [s for s in res.series if not s.name.startswith("kmeans")]
    if not items:
        return ""
    how = (
        "the particle nearest each point on the axis (maps the data supports)"
        if res.cfg.pc_on_data
        else "the point on the axis itself"
    )
    body = [
        "<section id='traversals'><h2>Traversals</h2>",
        "<p>Maps along each principal component of the latent space, at the 5th to 95th percentile of the "
        f"particles' coordinate, decoded at {_e(how)}. Rows as above (top, front, side views; last row: "
        "difference from the mean of the series).</p>",
    ]
    for s in items:
        body.append(
            f"<h3>{_e(s.title)}</h3>"
            + _img(res.plots.get(f"series_{s.name}"), s.title)
            + f"<p class='note'><code>{_e(s.name)}/vol_000.mrc …</code>, "
            f"<code>chimerax {_e(s.name)}/movie.cxc</code> (level {s.level or 0:.3g}).</p>"
        )
    body.append("</section>")
    return "".join(body)


def _parts_section(res: AnalysisResult) -> str:
    if res.part_motion is None and res.part_maps is None:
        return ""
    body = ["<section id='parts'><h2>Parts</h2>"]
    if res.part_maps is not None:
        body.append(
            f"<p>The {len(res.part_maps.files)} rigid parts the method found, each in its own colour, at the "
            f"latent of particle {res.part_maps.row} (nearest the mean latent).</p>"
        )
        body.append(_img(res.plots.get("parts"), "part maps"))
        body.append(
            "<p class='note'><code>parts/part_00.mrc …</code>; coloured in ChimeraX with "
            "<code>chimerax parts/parts.cxc</code>.</p>"
        )
    pm = res.part_motion
    if pm is not None:
        body.append(
            "<h3>How much each part moves</h3><p>Rotation angle (degrees) and translation (Å) of each part "
            "relative to the run's rest frame, averaged over each cluster's particles. Parts whose values "
            "change between clusters are the ones that move; the table ranks parts by that change.</p>"
        )
        order = pm.movers()[:12]
        top = order[:3]
        desc = ", ".join(
            f"part {int(p)} ({np.ptp(pm.angle_deg[:, p]):.1f}°, {np.ptp(pm.translation_A[:, p]):.1f} Å)" for p in top
        )
        body.append(f"<p><b>Largest changes between clusters:</b> {_e(desc)} (range of the cluster means).</p>")
        if res.plots.get("part_movers"):
            body.append(
                "<p>Where the moving parts are: each part coloured by how much its mean rotation differs "
                "between clusters (dark = moves most).</p>" + _img(res.plots.get("part_movers"), "mobile parts")
            )
        body.append(_img(res.plots.get("part_motion"), "part motion per cluster"))
        w = np.maximum(pm.counts, 0) / max(pm.counts.sum(), 1)
        rows = []
        for p in order:
            a, t = pm.angle_deg[:, p], pm.translation_A[:, p]
            row = [
                int(p),
                f"{(w * a).sum():.2f}",
                f"{a.min():.2f} – {a.max():.2f}",
                f"{(w * t).sum():.2f}",
                f"{t.min():.2f} – {t.max():.2f}",
            ]
            if pm.occupancy is not None:
                row.append(f"{(w * pm.occupancy[:, p]).sum():.2f}")
            rows.append(row)
        head = ["part", "mean rotation (°)", "cluster range (°)", "mean translation (Å)", "cluster range (Å)"]
        if pm.occupancy is not None:
            head.append("occupancy")
        body.append(_table(head, rows, set(range(1, len(head)))))
        body.append(
            f"<p class='note'>Top {len(order)} of {pm.n_parts} parts; every cluster and part in "
            "<code>parts/motion_per_cluster.csv</code>.</p>"
        )
    body.append("</section>")
    return "".join(body)


def _eval_section(res: AnalysisResult) -> str:
    ev = res.evaluation
    if ev is None:
        if not res.eval_note:
            return ""
        return (
            "<section id='evaluation'><h2>Evaluation against the ground truth</h2>"
            f"<p class='note'>{_e(res.eval_note)} Run <code>cryohet evaluate</code> separately once it works.</p>"
            "</section>"
        )
    conf = ev.get("per_conformation") or {}
    rows = [
        [
            name,
            *[
                f"{b[k]:.4f}" if isinstance(b.get(k), (int, float)) else "–"
                for k in ("auc_mean", "auc_std", "auc_median")
            ],
        ]
        for name, b in conf.items()
    ]
    first = next(iter(conf.values()), {})
    states = list(first.get("per_state") or {})
    per_state = [[s, *[f"{conf[n]['per_state'].get(s, float('nan')):.4f}" for n in conf]] for s in states]
    cl = ev.get("clustering") or {}
    ceiling = ev.get("auc_ceiling")
    ceiling_txt = f"{ceiling:.4f}" if isinstance(ceiling, (int, float)) else "–"
    ari = (
        f"{cl['ari']:.3f} / {cl['nmi']:.3f}"
        if isinstance(cl.get("ari"), (int, float)) and isinstance(cl.get("nmi"), (int, float))
        else None
    )
    return (
        "<section id='evaluation'><h2>Evaluation against the ground truth</h2>"
        "<p>CryoBench per-conformation FSC: for each of the "
        f"{_e(ev.get('n_states', len(states)))} true states, the map "
        "at the particle latent nearest the state's mean latent is compared with the true map; the area under the "
        f"FSC curve (AUC) is {ceiling_txt} for identical maps "
        f"(the ceiling (D/2 − 1)/D, D = {_e(ev.get('box', '?'))}).</p>"
        + _table(["", "mean AUC", "std", "median"], rows, {1, 2, 3})
        + _kv([("ceiling (D/2 − 1)/D", ceiling_txt), ("k-means ARI / NMI (K = states)", ari)])
        + '<div class="wrap">'
        + _img(res.plots.get("auc_per_state"), "AUC per state")
        + "</div>"
        + _img(res.plots.get("fsc_curves"), "FSC curves")
        + (
            "<details><summary>AUC per state</summary>"
            + _table(["state", *conf], per_state, set(range(1, 1 + len(conf))))
            + "</details>"
            if per_state
            else ""
        )
        + "<p class='note'>Full numbers in <code>eval/metrics.json</code>.</p></section>"
    )


def _files_section(res: AnalysisResult) -> str:
    rows = [[f"kmeans{res.cfg.k}/", "cluster maps, labels.npy (cluster of every particle), centres*.txt, movie.cxc"]]
    rows += [
        [f"{s.name}/", f"{len(s.files)} maps along the {s.name.split('_')[0].upper()} series, latents.txt, movie.cxc"]
        for s in res.series
        if not s.name.startswith("kmeans")
    ]
    if res.part_maps is not None or res.part_motion is not None:
        rows.append(["parts/", "part maps, parts.cxc, motion_per_cluster.csv"])
    if res.evaluation is not None:
        rows.append(["eval/", "metrics.json and FSC plots"])
    rows.append(["analyze.log", "the log of this analysis"])
    rows += [
        ["pca.npz, pca_coords.npy", "PCA axes and every particle's PC coordinates"],
        ["plots/", "every figure of this report as PNG"],
        ["summary.json", "key numbers and file list"],
    ]
    if res.umap_done:
        rows.insert(-2, ["umap.npy, umap_index.npy", "UMAP coordinates of the shown particles and their rows"])
    notes = "".join(f"<li>{_e(n)}</li>" for n in res.notes)
    return (
        "<section id='files'><h2>Files</h2><p>Everything is in <code>"
        + _e(res.out_dir.resolve())
        + "</code>. Open a <code>.cxc</code> script with ChimeraX (it opens the maps next to it).</p>"
        + _table(["file", "content"], rows)
        + (f"<h3>Notes</h3><ul>{notes}</ul>" if notes else "")
        + "</section>"
    )


def render_report(res: AnalysisResult) -> str:
    """The report of ``res`` as one HTML string."""
    from .result import command_line

    run_name = Path(res.cfg.run).resolve().name
    sections = [
        _summary_section(res),
        _latent_section(res),
        _cluster_section(res),
        select_section(select_data(res)),
        _traversal_section(res),
        _parts_section(res),
        _eval_section(res),
        _files_section(res),
    ]
    nav_items = [
        ("run", "Run"),
        ("latent", "Latent space"),
        ("clusters", "Clusters"),
        ("select", "Select particles"),
        ("traversals", "Traversals"),
        ("parts", "Parts"),
        ("evaluation", "Evaluation"),
        ("files", "Files"),
    ]
    present = "".join(sections)
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in nav_items if f"id='{a}'" in present or f'id="{a}"' in present)
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>cryohet analysis: {_e(run_name)}</title><style>{_CSS}{SELECT_CSS}</style></head><body>"
        f'<header><h1>What moves in {_e(run_name)}</h1><div class="sub">{_e(res.info.method)} run · '
        f"{res.n_particles:,} particles · analysed {_e(now)} with cryohet {_e(__version__)}</div></header>"
        f"<nav>{nav}</nav><main>{present}</main>"
        f"<footer>cryohet {_e(__version__)} · analysis took {res.seconds:.1f} s · "
        f"<code>{_e(command_line(res.cfg))}</code></footer></body></html>\n"
    )


def write_report(res: AnalysisResult) -> Path:
    """Write ``report.html`` into the analysis folder (:attr:`AnalysisResult.write_dir` while
    the analysis runs); returns its path."""
    path = res.write_dir / "report.html"
    with atomic_write(path, encoding="utf-8") as fh:
        fh.write(render_report(res))
    return path
