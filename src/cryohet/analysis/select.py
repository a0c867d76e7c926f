"""``cryohet select``: write chosen particles back in the user's own format.

Particles are chosen among the run's rows (the rows of ``latents.npy``, i.e. the
particles the run was trained on, in input order) by one of:

* ``clusters`` — k-means clusters as ``cryohet analyze`` numbered them: its
  ``kmeans{k}/labels.npy``, the clustering the user looked at (``k`` may be left out when
  analyze wrote one clustering). Without it the request is refused: clusters computed
  again here would not be the ones the user saw;
* ``latent_box`` — ranges on PC coordinates (``pc1``, ``pc2`` ..., 1-based as in the
  report; the analysis' ``pca.npz`` when present, else the same exact PCA) and/or raw
  latent dimensions (``z0``, ``z1`` ..., 0-based): ``"pc1:-1:2,z3:0:"`` keeps particles
  with -1 <= PC1 <= 2 and z3 >= 0 (an empty bound is open);
* ``indices`` — a file of 0-based run rows (``.npy``, cryoDRGN ``.pkl``, or text).

The subset is written by the output's extension, always against the ORIGINAL particle
file named in the run's config (``data``):

* ``.star`` — the selected rows of the source (every column a STAR source had, its optics
  table) via :func:`cryohet.io.star.write_star`;
* ``.cs`` — the selected rows of the source ``.cs`` unchanged (all fields, same dtype),
  :func:`cryohet.io.cryosparc.write_cs_subset` (needs a ``.cs`` source). When the run read
  a cryoSPARC passthrough file too, its rows for the same particles (matched on ``uid``,
  in the order of the subset) go unchanged to ``<out>_passthrough.cs`` beside it;
* ``.pkl`` — a cryoDRGN ``ind.pkl`` of 0-based indices into the original stack
  (``ParticleMetadata.original_index``, so a run trained with ``--ind`` maps back to the
  full set).

Inputs (particle files, pickles, the index file, the run's files) are never overwritten; an existing
output is replaced only with ``overwrite`` (``--overwrite``), and the files appear together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..console import get_logger
from ..errors import ConfigError, InputError, RunDirError, file_error
from ..io.outputs import atomic_write, check_output, ensure_not_input, run_dir_inputs, staged_files
from ..training.rundir import RunDir
from .clustering import read_kmeans_labels
from .config import SelectConfig
from .embedding import LatentPCA, fit_pca
from .runinfo import run_particle_source

__all__ = [
    "Selection",
    "select_particles",
    "choose_rows",
    "parse_latent_box",
    "read_index_file",
    "write_passthrough_subset",
    "passthrough_output",
]

log = get_logger("analysis.select")

_RANGE = re.compile(r"^\s*(pc|z)(\d+)\s*:\s*([^:]*)\s*:\s*([^:]*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Selection:
    """``rows`` (0-based run rows, ascending), their ``original_index`` in the source file,
    the total ``n_run`` particles of the run, and the file written."""

    rows: np.ndarray
    original_index: np.ndarray
    n_run: int
    out: Path
    extra_files: tuple[Path, ...] = ()


def parse_latent_box(text: str) -> list[tuple[str, int, float, float]]:
    """``"pc1:-1:2,z0::3"`` -> ``[("pc", 0, -1, 2), ("z", 0, -inf, 3)]`` (0-based axis numbers)."""
    ranges = []
    for part in [p for p in text.split(",") if p.strip()]:
        m = _RANGE.match(part)
        if not m:
            raise ConfigError(f"--latent-box: cannot read '{part.strip()}' (expected e.g. pc1:-1:2 or z0:0:3)")
        kind, num = m.group(1).lower(), int(m.group(2))
        if kind == "pc" and num < 1:
            raise ConfigError(f"--latent-box: principal components count from 1 (pc1), got '{part.strip()}'")
        try:
            lo = float(m.group(3)) if m.group(3).strip() else -np.inf
            hi = float(m.group(4)) if m.group(4).strip() else np.inf
        except ValueError:
            raise ConfigError(f"--latent-box: bounds of '{part.strip()}' are not numbers") from None
        if not lo < hi:
            raise ConfigError(f"--latent-box: empty range in '{part.strip()}' (lower bound must be below upper)")
        ranges.append((kind, num - 1 if kind == "pc" else num, lo, hi))
    if not ranges:
        raise ConfigError("--latent-box: no ranges given")
    return ranges


def read_index_file(path: str | Path, n: int) -> np.ndarray:
    """0-based run rows from ``.npy``, a cryoDRGN ``.pkl`` or text (numbers separated by spaces,
    commas or newlines; ``#`` starts a comment); sorted, duplicates removed."""
    p = Path(path)
    if not p.exists():
        raise file_error(p, "index file not found")
    if p.suffix.lower() == ".pkl":
        from ..io.cryodrgn import read_ind_pkl

        ix = read_ind_pkl(p)
    else:
        try:
            if p.suffix.lower() == ".npy":
                arr = np.load(p, allow_pickle=False)
            else:
                words = [w for line in p.read_text().splitlines() for w in line.split("#")[0].replace(",", " ").split()]
                arr = np.array([float(w) for w in words])
        except Exception as err:
            raise file_error(p, f"not a readable index file ({type(err).__name__})") from None
        arr = np.asarray(arr).reshape(-1)
        if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.all(arr == np.round(arr))):
            raise file_error(p, "indices must be whole numbers")
        ix = arr.astype(np.int64)
    if ix.size and (ix.min() < 0 or ix.max() >= n):
        raise file_error(p, f"index out of range 0..{n - 1} for this run (got {ix.min()}..{ix.max()})")
    return np.unique(ix)


def _pca(cfg: SelectConfig, latents: np.ndarray) -> LatentPCA:
    saved = cfg.analysis_dir / "pca.npz"
    if saved.exists():
        try:
            pca = LatentPCA.load(saved)
            if pca.mean.shape == (latents.shape[1],):
                return pca
        except Exception:
            pass
    return fit_pca(latents)


def analyzed_clusters(folder: Path, k: int | None, n: int, run: Path | str) -> tuple[np.ndarray, int]:
    """The k-means labels ``cryohet analyze`` wrote in ``folder`` (``kmeans{k}/labels.npy``)
    and their ``k``; ``k`` None takes the only clustering there. Refused (one line) when
    the clustering is not on disk or does not match the run's ``n`` particles."""
    found = sorted(
        int(m.group(1))
        for d in (folder.glob("kmeans*") if folder.is_dir() else [])
        if (m := re.fullmatch(r"kmeans(\d+)", d.name)) and (d / "labels.npy").exists()
    )
    have = ", ".join(f"k={v}" for v in found)
    if k is None:
        if not found:
            raise ConfigError(
                f"--clusters: {folder} holds no k-means clusters; the numbers refer to the clusters of "
                f"`cryohet analyze {run} --k K`: run it first"
            )
        if len(found) > 1:
            raise ConfigError(f"--clusters: {folder} holds several clusterings ({have}); say which with --k")
        k = found[0]
    labels = read_kmeans_labels(folder / f"kmeans{k}", n)
    if labels is None:
        where = f"it holds {have}" if found else "it holds none"
        raise ConfigError(
            f"--clusters: no k-means clustering with k={k} for this run in {folder} ({where}); "
            f"run `cryohet analyze {run} --k {k}` first"
        )
    return labels, int(k)


def choose_rows(cfg: SelectConfig, latents: np.ndarray) -> np.ndarray:
    """Run rows chosen by ``cfg`` (ascending, unique), before ``complement``."""
    n, zdim = latents.shape
    given = [x is not None for x in (cfg.clusters, cfg.latent_box, cfg.indices)]
    if sum(given) != 1:
        raise ConfigError("give exactly one of --clusters, --latent-box and --indices")
    if cfg.clusters is not None:
        labels, k = analyzed_clusters(cfg.analysis_dir, cfg.k, n, cfg.run)
        bad = [c for c in cfg.clusters if not 0 <= c < k]
        if bad:
            raise ConfigError(f"--clusters: no cluster {bad[0]}; clusters are 0..{k - 1} (k={k})")
        return np.flatnonzero(np.isin(labels, cfg.clusters))
    if cfg.latent_box is not None:
        ranges = parse_latent_box(cfg.latent_box)
        keep = np.ones(n, dtype=bool)
        pcs = [a for kind, a, _, _ in ranges if kind == "pc"]
        coords = _pca(cfg, latents).transform(latents, n=max(pcs) + 1) if pcs else None
        for kind, axis, lo, hi in ranges:
            if axis >= zdim:
                name = f"pc{axis + 1}" if kind == "pc" else f"z{axis}"
                raise ConfigError(f"--latent-box: {name} does not exist; the run's latents have {zdim} dimension(s)")
            vals = coords[:, axis] if kind == "pc" else latents[:, axis]
            keep &= (vals >= lo) & (vals <= hi)
        return np.flatnonzero(keep)
    return read_index_file(cfg.indices, n)


def passthrough_output(out: Path) -> Path:
    """Where the passthrough rows of a ``.cs`` subset go: ``subset.cs`` -> ``subset_passthrough.cs``."""
    return out.with_name(f"{out.stem}_passthrough{out.suffix}")


def write_passthrough_subset(
    path: Path, main_cs: Path, passthrough_cs: Path, rows: np.ndarray, protected: list[Path]
) -> Path:
    """Rows of ``passthrough_cs`` for the particles at ``rows`` of ``main_cs`` (matched on
    ``uid``, same order), written unchanged (every field, same dtype) to ``path``."""
    from ..io.cryosparc import load_cs

    ensure_not_input(path, protected)
    uids = load_cs(main_cs)["uid"][np.asarray(rows, dtype=np.int64)]
    pt = load_cs(passthrough_cs)
    if "uid" not in pt.dtype.names:
        raise file_error(passthrough_cs, "has no uid field; cannot match its rows to the particles")
    order = np.argsort(pt["uid"], kind="stable")
    pos = np.clip(np.searchsorted(pt["uid"][order], uids), 0, len(pt) - 1)
    found = pt["uid"][order][pos] == uids
    if not found.all():
        raise file_error(passthrough_cs, f"lacks {int((~found).sum())} of the selected particle uids")
    with atomic_write(path, "wb") as fh:
        np.save(fh, pt[order[pos]], allow_pickle=False)
    return path


def select_particles(cfg: SelectConfig) -> Selection:
    """Choose particles of ``cfg.run`` and write them to ``cfg.out`` (see the module doc)."""
    from ..io.cryodrgn import write_ind_pkl
    from ..io.cryosparc import write_cs_subset
    from ..io.particles import input_files
    from ..io.star import write_star
    from ..methods.base import load_run_latents, read_run_header

    run_path = Path(cfg.run)
    raw = read_run_header(run_path)
    RunDir(run_path).require_complete(cfg.allow_unfinished)
    latents = load_run_latents(run_path, cfg.epoch)  # method, version and latents checked against the config
    n = len(latents)
    rows = choose_rows(cfg, latents)
    if cfg.complement:
        rows = np.setdiff1d(np.arange(n), rows)
    if rows.size == 0:
        raise InputError("the selection is empty; no file written")
    meta = run_particle_source(run_path, raw).load(stack_check="skip")
    if len(meta) != n:
        raise RunDirError(
            f"{run_path}: the run has {n} latents but its particle file {meta.source} now holds {len(meta)} particles"
        )
    out = Path(cfg.out)
    protected = [*input_files(meta), *run_dir_inputs(run_path)]
    if cfg.indices is not None:
        protected.append(Path(cfg.indices))
    suffix = out.suffix.lower()
    cs_path = meta.extras.get("cs_path")
    pt_path = meta.extras.get("passthrough_path")
    if suffix == ".cs" and (meta.source_format != "cs" or cs_path is None):
        raise InputError(
            f"{out}: a .cs subset needs a cryoSPARC .cs particle source; this run used {meta.source} "
            "(write .star or .pkl instead)"
        )
    pt_out = passthrough_output(out) if suffix == ".cs" and pt_path is not None else None
    outputs = [out] + ([pt_out] if pt_out is not None else [])
    for o in outputs:
        check_output(o, protected, overwrite=cfg.overwrite)
    sub = meta.subset(rows)
    with staged_files(outputs) as tmps:  # the subset and its passthrough rows together, or neither
        if suffix == ".star":
            if meta.source_format != "star":
                log.warning("%s: source is %s; writing a converted RELION 3.1 STAR file", out, meta.source_format)
            write_star(tmps[0], sub)
        elif suffix == ".cs":
            write_cs_subset(tmps[0], cs_path, sub.original_index)
            if pt_out is not None:
                write_passthrough_subset(tmps[1], cs_path, pt_path, sub.original_index, protected)
        else:
            write_ind_pkl(tmps[0], sub.original_index)
    extra = outputs[1:]
    return Selection(  # the command announces the files it wrote (cryohet.cli.select), once
        rows=rows, original_index=np.asarray(sub.original_index), n_run=n, out=out, extra_files=tuple(extra)
    )
