"""The report's "Select particles" section: lasso particles on the latent scatter and
download them, in the page itself (no server; works from ``file://``).

What the page shows and does:

* a canvas scatter of the latent embedding, coloured by the report's k-means clusters
  (same palette as the PNG plots): the UMAP when ``cryohet analyze`` computed one
  (``umap.npy`` rows ``umap_index.npy``, i.e. its subsample of at most ``--max-points``),
  and PC1/PC2 of every particle (``pca_coords.npy``; PC1 against 0 for a 1-D latent);
  a toggle switches between them and the selection is shared by both views;
* the lasso: drag a polygon; plain drag replaces the selection, Shift adds, Alt/Ctrl/Cmd
  removes, a click without a drag clears it; buttons *Clear* and *Invert*; clicking a
  cluster in the legend selects it (same modifier keys); a live count "N of M particles
  selected";
* downloads of the selected particles, in run-row order:

  - ``ind.pkl``: cryoDRGN's index pickle, a 1-D ``int64`` numpy array of 0-based indices
    into the ORIGINAL particle stack (the run's ``ParticleMetadata.original_index``, so a
    run trained with ``--ind`` maps back to the full set, as ``cryohet select --out x.pkl``
    writes). The page writes the pickle bytes itself, byte for byte what
    ``pickle.dumps(array, protocol=2)`` writes under numpy 1.x (global
    ``numpy.core.multiarray._reconstruct``, which numpy 2 still loads without a warning,
    data as ``_codecs.encode(str, 'latin1')``), so numpy 1 and 2, cryoDRGN and cryohet's
    safe loader (:func:`cryohet.io.safe_pickle.load_pickle`) all read it;
  - ``selection.txt``: the 0-based run rows (rows of ``latents.npy``), which
    ``cryohet select RUN --indices selection.txt --out subset.star`` (or ``.cs``, ``.pkl``)
    turns into a subset with every original column; the page shows that command;
  - ``subset.star`` directly, when the run's particles come from a RELION STAR file and the
    run has at most :data:`STAR_LIMIT` particles: the page embeds what
    :func:`cryohet.io.star.write_star` writes for the whole run (what ``cryohet select``
    writes), gzip-compressed and base64-encoded, decompresses it with the browser's
    ``DecompressionStream('gzip')`` and writes the header, the optics groups the selected
    particles use and their rows. Stack paths in ``rlnImageName`` are absolute (the page
    cannot know where the file will be saved; ``cryohet select`` writes them relative to
    its output). Above the limit, or for other sources, the page says why and points to
    ``cryohet select``.

Points: every particle is embedded (PC1/PC2 as float32, cluster as uint8, in base64) up to
:data:`POINT_LIMIT` particles; above it a random subsample of that many (plus the UMAP rows),
and the page says that the lasso selects among the shown points. Measured: at 100 000
particles the section adds 2.0 MB to the report with a 50 000-point UMAP (1.2 MB
without); the STAR rows are embedded only up to 50 000 particles, where 21-column RELION
rows with random (incompressible) values add 5.8 MB more; headless Chromium loads a
100 000-point page and applies a lasso in 2-3 s.

Test hook (also handy to reproduce a selection): ``report.html#view=pca&lasso=x0,y0,x1,y1,...``
applies lassos given in data coordinates (several ``lasso=`` in order; prefix ``add:`` or
``remove:``); ``drag=`` does the same through pointer events on the canvas (with Shift /
Alt held), i.e. through the mouse handlers. The page then writes the selection (rows,
original indices, base64 ``ind.pkl`` bytes, ``selection.txt`` and ``subset.star`` texts,
the polygons the drags drew) as JSON into ``<pre id="sel-result">``.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import os
import shlex
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..console import get_logger

if TYPE_CHECKING:
    from .result import AnalysisResult

__all__ = [
    "SelectData",
    "StarRows",
    "select_data",
    "select_section",
    "add_particle_source",
    "star_rows",
    "SELECT_CSS",
    "STAR_LIMIT",
    "POINT_LIMIT",
    "cluster_colours",
    "payload",
]

log = get_logger("analysis.report")

#: Largest run whose STAR rows are embedded for the ``subset.star`` download.
STAR_LIMIT = 50_000
#: Largest number of particles embedded as points (a random subsample above it).
POINT_LIMIT = 200_000

SELECT_CSS = """
.sel-wrap { display:flex; flex-wrap:wrap; gap:22px; align-items:flex-start; }
.sel-plot { position:relative; width:640px; height:540px; border:1px solid var(--line); background:#fff; }
.sel-plot canvas { position:absolute; left:0; top:0; width:640px; height:540px; }
#sel-overlay { cursor:crosshair; touch-action:none; }
.sel-side { flex:1; min-width:300px; }
.sel-count { font-size:18px; font-weight:600; margin:4px 0 8px; }
.sel-side button { font:inherit; font-size:13px; padding:4px 10px; margin:0 6px 6px 0; border:1px solid #b8c4d0;
  border-radius:5px; background:#f6f8fa; cursor:pointer; }
.sel-side button.dl { background:#1f6fb2; color:#fff; border-color:#1f6fb2; }
.sel-side button:disabled { opacity:.45; cursor:default; }
.sel-legend span { display:inline-block; margin:0 8px 4px 0; font-size:12px; cursor:pointer; white-space:nowrap; }
.sel-side pre { white-space:pre-wrap; word-break:break-all; }
.sel-legend i { display:inline-block; width:11px; height:11px; border-radius:2px; margin-right:3px;
  vertical-align:-1px; }
"""


@dataclass
class StarRows:
    """A STAR file split so the page can write any subset of its particle rows: ``head``,
    the optics rows with their group numbers, ``mid`` (up to the first particle row),
    one line per run row (their optics groups in ``groups``), and ``tail``."""

    head: str
    optics: list[tuple[int, str]]
    mid: str
    rows: list[str]
    groups: np.ndarray
    tail: str

    def text(self, rows: np.ndarray) -> str:
        """The file for run ``rows`` (what the page writes, in Python: for tests)."""
        used = set(self.groups[rows].tolist())
        return (
            self.head
            + "".join(line + "\n" for g, line in self.optics if g in used)
            + self.mid
            + "".join(self.rows[r] + "\n" for r in rows)
            + self.tail
        )


@dataclass
class SelectData:
    """What the section embeds: the points (run ``rows``, ascending), their coordinates
    and clusters, original indices, the UMAP of some of them, STAR rows, and notes."""

    run: str
    n_run: int
    rows: np.ndarray
    pca_xy: np.ndarray
    pca_axes: tuple[str, str]
    labels: np.ndarray
    colours: list[str]
    original_index: np.ndarray | None = None
    umap_pos: np.ndarray | None = None
    umap_xy: np.ndarray | None = None
    star: StarRows | None = None
    source_format: str | None = None
    notes: list[str] = field(default_factory=list)


def cluster_colours(k: int) -> list[str]:
    """Hex colours of clusters ``0..k-1``, as :func:`cryohet.analysis.plots.plot_latents` draws them."""
    from matplotlib import colormaps

    cmap = colormaps["tab20" if k > 10 else "tab10"]
    rgb = [[int(round(255 * c)) for c in cmap(i % cmap.N)[:3]] for i in range(k)]
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb]


def _split_star(text: str, n: int, groups: np.ndarray, base: Path) -> StarRows:
    """Split the text of a :func:`write_star` file; stack paths made absolute from ``base``."""
    lines = text.split("\n")

    def loop(block: str) -> tuple[int, list[str]]:
        i = lines.index(f"data_{block}")
        i = lines.index("loop_", i) + 1
        cols = []
        while lines[i].startswith("_"):
            cols.append(lines[i].split()[0][1:])
            i += 1
        return i, cols

    o0, ocols = loop("optics")
    o1 = lines.index("", o0)
    gcol = ocols.index("rlnOpticsGroup")
    optics = [(int(line.split("\t")[gcol]), line) for line in lines[o0:o1]]
    p0, pcols = loop("particles")
    rows = lines[p0 : p0 + n]
    if len(rows) != n or any(not r for r in rows):
        raise ValueError(f"expected {n} particle rows")
    icol = pcols.index("rlnImageName")
    out = []
    for r in rows:
        f = r.split("\t")
        name = f[icol]
        quoted = name[:1] == '"'
        idx, path = (name[1:-1] if quoted else name).split("@", 1)
        full = Path(os.path.abspath(base / path)).as_posix()
        f[icol] = f'"{idx}@{full}"' if quoted or any(c.isspace() for c in full) else f"{idx}@{full}"
        out.append("\t".join(f))
    return StarRows(
        head="\n".join(lines[:o0]) + "\n",
        optics=optics,
        mid="\n".join(lines[o1:p0]) + "\n",
        rows=out,
        groups=np.asarray(groups, dtype=np.int64),
        tail="\n".join(lines[p0 + n :]),
    )


def star_rows(meta) -> StarRows:
    """The STAR rows of every particle of ``meta`` as :func:`cryohet.io.star.write_star` writes them."""
    from ..io.star import write_star

    with tempfile.TemporaryDirectory(prefix="cryohet-select-") as tmp:
        path = Path(tmp).resolve() / "all.star"
        write_star(path, meta)
        text = path.read_text(encoding="utf-8")
    return _split_star(text, len(meta), meta.optics_group, path.parent)


def add_particle_source(d: SelectData, run: str | Path) -> SelectData:
    """Fill ``d.original_index`` (of its points) and, for a RELION STAR source of at most
    :data:`STAR_LIMIT` particles, ``d.star`` from the particle source named in ``run``'s
    config (as ``cryohet select`` reads it); what cannot be read becomes a note."""
    from ..io.cryodrgn import read_ind_pkl
    from ..methods.base import read_run_header
    from .runinfo import run_particle_source

    n = d.n_run
    raw = read_run_header(run)
    data = raw.get("data")
    path = str(data.get("path", "")) if isinstance(data, dict) else str(data or "")
    ind = data.get("ind") if isinstance(data, dict) else None
    d.source_format = Path(path).suffix.lower().lstrip(".") or None
    meta = None
    if d.source_format == "star" and n <= STAR_LIMIT:
        try:
            meta = run_particle_source(run, raw).load(stack_check="skip")
            if len(meta) != n:
                raise ValueError(f"it now holds {len(meta)} particles, the run {n}")
            d.star = star_rows(meta)
        except Exception as err:  # the rest of the page works without it
            log.warning("report: subset.star download unavailable (%s: %s)", type(err).__name__, err)
            d.notes.append(f"subset.star is not offered: the particle file could not be read ({err}).")
            meta = None
    elif d.source_format == "star":
        d.notes.append(
            f"subset.star is not offered in the page: the run has {n:,} particles (more than {STAR_LIMIT:,}, "
            "whose STAR rows would make this page too large); use selection.txt with the command below."
        )
    try:
        if meta is not None:
            orig = np.asarray(meta.original_index, dtype=np.int64)
        elif ind:
            orig = read_ind_pkl(ind)
        else:
            orig = np.arange(n, dtype=np.int64)
        if len(orig) != n:
            raise ValueError(f"{len(orig)} indices for {n} particles")
        d.original_index = orig[d.rows]
    except Exception as err:
        d.notes.append(f"ind.pkl is not offered: the run's --ind file could not be read ({err}).")
    return d


def select_data(res: AnalysisResult) -> SelectData | None:
    """The section's data, from the analysis folder's ``pca_coords.npy`` (and UMAP files),
    the k-means labels and the run's particle source; None without coordinates."""
    from .embedding import subsample_indices

    folder = res.write_dir
    if res.latent_note or not (folder / "pca_coords.npy").is_file():
        return None
    coords = np.load(folder / "pca_coords.npy")
    n = len(coords)
    umap_rows = None
    if res.umap_done and (folder / "umap.npy").is_file() and (folder / "umap_index.npy").is_file():
        umap_rows = np.load(folder / "umap_index.npy").astype(np.int64)
    rows = subsample_indices(n, POINT_LIMIT, res.cfg.seed)
    if umap_rows is not None and len(rows) < n:
        rows = np.union1d(rows, umap_rows)
    ratio = res.pca.explained_ratio
    if coords.shape[1] >= 2:
        xy = coords[rows, :2]
        axes = (f"PC1 ({100 * ratio[0]:.1f} %)", f"PC2 ({100 * ratio[1]:.1f} %)")
    else:
        xy = np.column_stack([coords[rows, 0], np.zeros(len(rows), np.float32)])
        axes = ("PC1", "(1-D latent)")
    k = int(res.kmeans.k)
    d = SelectData(
        run=str(Path(res.cfg.run).resolve()),
        n_run=n,
        rows=rows,
        pca_xy=np.asarray(xy, np.float32),
        pca_axes=axes,
        labels=np.asarray(res.kmeans.labels)[rows],
        colours=cluster_colours(k),
    )
    if umap_rows is not None:
        d.umap_pos = np.searchsorted(rows, umap_rows)
        d.umap_xy = np.asarray(np.load(folder / "umap.npy"), np.float32)
    if len(rows) < n:
        d.notes.append(
            f"The run has {n:,} particles; the page holds a random subsample of {len(rows):,} (seed {res.cfg.seed}), "
            "and the lasso selects among those shown points."
        )
    try:
        return add_particle_source(d, res.cfg.run)
    except Exception as err:  # the selection still works on run rows (selection.txt)
        log.warning("report: the run's particle source is not readable (%s: %s)", type(err).__name__, err)
        d.notes.append(f"ind.pkl and subset.star are not offered: the run's particle source is not readable ({err}).")
        return d


def _b64(a: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode("ascii")


def payload(d: SelectData) -> dict:
    """The JSON the page's script reads (arrays little-endian, base64)."""
    wide = len(d.colours) > 255
    p: dict = {
        "run": d.run,
        "n_run": d.n_run,
        "n_points": len(d.rows),
        "rows": None if len(d.rows) == d.n_run else _b64(d.rows, np.int32),
        "pca": _b64(d.pca_xy, np.float32),
        "pca_axes": list(d.pca_axes),
        "labels": _b64(d.labels, np.uint16 if wide else np.uint8),
        "label_bytes": 2 if wide else 1,
        "colours": d.colours,
        "counts": np.bincount(d.labels, minlength=len(d.colours)).tolist(),
        "orig": None,
        "has_orig": d.original_index is not None,
        "umap": None if d.umap_xy is None else _b64(d.umap_xy, np.float32),
        "umap_pos": None if d.umap_pos is None else _b64(d.umap_pos, np.int32),
        "star": None,
    }
    if d.original_index is not None and not np.array_equal(d.original_index, d.rows):
        p["orig"] = _b64(d.original_index, np.int32)
    if d.star is not None:
        p["star"] = {
            "head": d.star.head,
            "optics": [[g, line] for g, line in d.star.optics],
            "mid": d.star.mid,
            "tail": d.star.tail,
            "groups": _b64(d.star.groups, np.int32),
            "rows": base64.b64encode(gzip.compress("\n".join(d.star.rows).encode("utf-8"), 6, mtime=0)).decode(),
        }
    return p


def _script() -> str:
    return resources.files(__package__).joinpath("select_widget.js").read_text(encoding="utf-8")


def select_section(d: SelectData | None) -> str:
    """The section's HTML (empty without data)."""
    if d is None:
        return ""
    e = html.escape
    run = shlex.quote(d.run)
    fmt = "cs" if d.source_format == "cs" else "star"
    data = json.dumps(payload(d), separators=(",", ":")).replace("</", "<\\/")
    notes = "".join(f"<p class='note'>{e(n)}</p>" for n in d.notes)
    subsampled = len(d.rows) < d.n_run
    return (
        "<section id='select'><h2>Select particles</h2>"
        "<p>Draw around particles with the mouse to select them (a lasso). Plain drag: new selection; "
        "<b>Shift</b>: add; <b>Alt</b> or <b>Ctrl</b>: remove; a click clears. Click a cluster in the legend to "
        "select it. Then download the selected particles: <code>ind.pkl</code> (cryoDRGN's <code>--ind</code>: "
        "0-based indices into the original particle stack), <code>selection.txt</code> (this run's rows) or, "
        "for RELION runs, <code>subset.star</code>.</p>"
        "<div class='sel-wrap'><div class='sel-plot'><canvas id='sel-canvas' width='640' height='540'></canvas>"
        "<canvas id='sel-overlay' width='640' height='540'></canvas></div><div class='sel-side'>"
        "<div id='sel-views'></div>"
        f"<div class='sel-count' id='sel-count'>0 of {d.n_run:,} particles selected</div>"
        f"<div class='note' id='sel-shown'>{'(among the shown points)' if subsampled else ''}</div>"
        "<div><button id='sel-clear'>Clear</button><button id='sel-invert'>Invert</button></div>"
        "<div class='sel-legend' id='sel-legend'></div>"
        "<h3>Download the selection</h3><div>"
        "<button class='dl' id='sel-pkl' disabled>ind.pkl</button>"
        "<button class='dl' id='sel-txt' disabled>selection.txt</button>"
        "<button class='dl' id='sel-star' disabled>subset.star</button></div>"
        "<p class='note'>A subset with every original column, from the saved <code>selection.txt</code>:</p>"
        f"<pre>cryohet select {e(run)} --indices selection.txt --out subset.{fmt}</pre>"
        f"{notes}<p class='note' id='sel-status'></p></div></div>"
        "<noscript><p class='note'>The selection needs JavaScript; use <code>cryohet select</code>.</p></noscript>"
        f"<pre id='sel-result' hidden></pre><script type='application/json' id='sel-data'>{data}</script>"
        f"<script>{_script()}</script></section>"
    )
