"""Matplotlib figures of the analysis (Agg backend, PNG files under ``analyze/plots/``).

Each function draws one figure and saves it with :func:`save_figure`; the report embeds
the same PNG files. Volumes are shown as projections (sums along z, y, x of the
``(z, y, x)`` map: top, front and side views) with one grey scale per view shared by the
whole series, plus a row of differences from the series mean (red: more density than
the mean, blue: less), which is where the motion shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "save_figure",
    "plot_latents",
    "plot_training",
    "plot_convergence",
    "plot_series",
    "plot_part_motion",
    "plot_parts",
    "plot_part_movers",
    "support_crop",
]

_DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Save ``fig`` as PNG at ``path`` and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight", facecolor="white")
    _plt().close(fig)
    return path


def _marker_size(n: int) -> float:
    return float(np.clip(3000.0 / max(n, 1), 0.3, 12.0))


def _categorical(ax, xy: np.ndarray, labels: np.ndarray, title: str, prefix: str) -> None:
    plt = _plt()
    uniq = np.unique(labels)
    cmap = plt.get_cmap("tab20" if len(uniq) > 10 else "tab10")
    colours = cmap(np.searchsorted(uniq, labels) % cmap.N)
    ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=_marker_size(len(xy)), linewidths=0, rasterized=True)
    if len(uniq) <= 20:
        for u in uniq:  # label each cluster at its median position
            sel = labels == u
            mx, my = np.median(xy[sel, 0]), np.median(xy[sel, 1])
            ax.text(
                mx,
                my,
                str(int(u)),
                fontsize=8,
                ha="center",
                va="center",
                weight="bold",
                bbox=dict(
                    boxstyle="round,pad=0.15", fc="white", ec=cmap(int(np.searchsorted(uniq, u)) % cmap.N), alpha=0.8
                ),
            )
    ax.set_title(title, fontsize=10)


def _continuous(fig, ax, xy: np.ndarray, values: np.ndarray, title: str, label: str) -> None:
    sc = ax.scatter(
        xy[:, 0], xy[:, 1], c=values, cmap="viridis", s=_marker_size(len(xy)), linewidths=0, rasterized=True
    )
    fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.02).set_label(label, fontsize=8)
    ax.set_title(title, fontsize=10)


def plot_latents(
    xy: np.ndarray,
    clusters: np.ndarray,
    path: Path,
    name: str,
    axis_labels: tuple[str, str],
    gt_labels: np.ndarray | None = None,
    note: str = "",
) -> Path:
    """Scatter coloured by k-means cluster, density (hexbin), and (with ``gt_labels``) the true state."""
    plt = _plt()
    ncol = 3 if gt_labels is not None else 2
    fig, axes = plt.subplots(1, ncol, figsize=(4.6 * ncol, 4.2), squeeze=False)
    axes = axes[0]
    _categorical(axes[0], xy, clusters, f"{name}: k-means clusters", "")
    hb = axes[1].hexbin(xy[:, 0], xy[:, 1], gridsize=45, bins="log", cmap="magma_r", mincnt=1)
    fig.colorbar(hb, ax=axes[1], fraction=0.046, pad=0.02).set_label("particles (log)", fontsize=8)
    axes[1].set_title(f"{name}: particle density", fontsize=10)
    if gt_labels is not None:
        if len(np.unique(gt_labels)) > 10:
            _continuous(fig, axes[2], xy, gt_labels, f"{name}: true state", "state")
        else:
            _categorical(axes[2], xy, gt_labels, f"{name}: true state", "")
    for ax in axes:
        ax.set_xlabel(axis_labels[0], fontsize=9)
        ax.set_ylabel(axis_labels[1], fontsize=9)
        ax.tick_params(labelsize=7)
    if note:
        fig.text(0.01, -0.02, note, fontsize=8, color="#555")
    fig.tight_layout()
    return save_figure(fig, path)


_BOOKKEEPING = {"time", "epoch", "n_images", "seconds", "images_per_s", "peak_rss_mb", "state", "iteration", "stage"}


def training_series(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Numeric per-epoch quantities of ``train_log.jsonl`` rows (losses first, bookkeeping out)."""
    keys: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in keys and k not in _BOOKKEEPING and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    out = {}
    for k in keys:
        vals = np.array([float(r[k]) if isinstance(r.get(k), (int, float)) else np.nan for r in rows])
        if np.isfinite(vals).sum() >= 1:
            out[k] = vals
    return out


def plot_training(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Every loss-like quantity and images/s against the log row (epoch), stages shaded;
    None for fewer than two rows (nothing to draw a curve through)."""
    if len(rows) < 2:
        return None
    series = training_series(rows)
    speed = np.array([float(r.get("images_per_s", np.nan)) for r in rows])
    panels = list(series.items())[:5]
    if np.isfinite(speed).any():
        panels.append(("images/s", speed))
    if not panels:
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    x = np.arange(1, len(rows) + 1)  # epochs are numbered from 1, as in the log and the console
    stages = [str(r.get("stage", "")) for r in rows]
    for ax, (name, vals) in zip(axes[0], panels):
        ax.plot(x, vals, "o-", ms=3, lw=1.2, color="#08519c" if name != "images/s" else "#a63603")
        start = 0
        for i in range(1, len(rows) + 1):  # shade alternate stages (e.g. CryoSPIRE A/B)
            if i == len(rows) or stages[i] != stages[start]:
                if stages[start]:
                    ax.axvspan(
                        start + 0.5, i + 0.5, color="#f0f0f0" if ord(stages[start][0]) % 2 else "#deebf7", zorder=0
                    )
                    ax.text(
                        (start + i + 1) / 2,
                        1.0,
                        stages[start],
                        transform=ax.get_xaxis_transform(),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        color="#555",
                    )
                start = i
        ax.set_title(name, fontsize=10, pad=12)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def support_crop(images: np.ndarray, frac: float = 0.03, margin: float = 0.12) -> tuple[slice, slice]:
    """Square (rows, cols) window around where ``images (m, H, W)`` exceed ``frac`` of their
    maximum (union over the images), widened by ``margin`` of the side; the whole image
    when nothing stands out."""
    a = np.abs(np.asarray(images, dtype=np.float64)).max(axis=0)
    h, w = a.shape
    peak = float(a.max())
    if not peak > 0:
        return slice(0, h), slice(0, w)
    ys, xs = np.nonzero(a > frac * peak)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    side = int(min(max(h, w), np.ceil(side * (1 + 2 * margin)) + 2))
    cy, cx = (ys.max() + ys.min()) / 2.0, (xs.max() + xs.min()) / 2.0
    y0 = int(np.clip(round(cy - side / 2), 0, max(h - side, 0)))
    x0 = int(np.clip(round(cx - side / 2), 0, max(w - side, 0)))
    return slice(y0, min(y0 + side, h)), slice(x0, min(x0 + side, w))


def plot_series(projs: list[np.ndarray], captions: list[str], path: Path, title: str, per_row: int = 10) -> Path:
    """Projection strip of a volume series: views as rows, maps as columns (blocks of ``per_row``).

    Each view is cropped to the molecule (:func:`support_crop`, the same window for every
    map). The last row is the difference from the series mean in the view where the maps
    differ most.
    """
    plt = _plt()
    p = np.stack(projs)  # (m, 3, D, D)
    m = len(p)
    crops = [support_crop(p[:, v], frac=0.05) for v in range(3)]
    views = [p[:, v][:, crops[v][0], crops[v][1]] for v in range(3)]
    names = ("top (sum z)", "front (sum y)", "side (sum x)")
    diffs = [v - v.mean(0) for v in views]
    best = int(np.argmax([float((d**2).mean()) for d in diffs]))
    diff = diffs[best]
    dlim = float(np.abs(diff).max()) or 1.0
    blocks = int(np.ceil(m / per_row))
    ncols = min(m, per_row)
    nv = 4 if m > 1 else 3  # a single map has no difference from the mean
    nrows = nv * blocks
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols + 0.9, 1.32 * nrows + 0.45), squeeze=False)
    labels = (*names, f"{names[best].split()[0]} − mean")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for i in range(m):
        b, c = divmod(i, per_row)
        for v in range(nv):
            ax = axes[nv * b + v, c]
            if v < 3:
                ax.imshow(
                    views[v][i],
                    cmap="gray",
                    origin="lower",
                    vmin=float(views[v].min()),
                    vmax=float(views[v].max()),
                    interpolation="bilinear",
                )
            else:
                ax.imshow(diff[i], cmap="RdBu_r", origin="lower", vmin=-dlim, vmax=dlim, interpolation="bilinear")
            if v == 0:
                ax.set_title(captions[i], fontsize=7)
            if c == 0:
                ax.set_ylabel(labels[v], fontsize=7)
    fig.text(0.005, 1.0, title, fontsize=9, ha="left", va="bottom", color="#333")
    fig.tight_layout(pad=0.3, h_pad=0.3, w_pad=0.2)
    return save_figure(fig, path)


def plot_part_motion(angle_deg: np.ndarray, translation_A: np.ndarray, path: Path) -> Path:
    """Heat maps cluster x part of the mean rotation angle (°) and translation (Å).

    Side by side up to 20 parts, one above the other beyond, sized so that the PNG is shown
    about at its own size in the report (tick labels stay readable)."""
    plt = _plt()
    k, n_parts = angle_deg.shape
    stacked = n_parts > 20
    cell_w, cell_h = (0.3, 0.2) if stacked else (0.24, 0.2)
    panel_w = float(np.clip(cell_w * n_parts + 1.9, 4.5, 11.5 if stacked else 5.9))
    panel_h = float(np.clip(cell_h * k + 1.1, 2.4, 6.0))
    shape = (2, 1) if stacked else (1, 2)
    fig, axes = plt.subplots(*shape, figsize=(panel_w * shape[1], panel_h * shape[0]), squeeze=False)
    tick = 8 if n_parts <= 30 else 6
    for ax, data, name, unit in (
        (axes.flat[0], angle_deg, "rotation", "°"),
        (axes.flat[1], translation_A, "translation", "Å"),
    ):
        im = ax.imshow(data, aspect="auto", cmap="viridis", interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.04, pad=0.015).set_label(f"mean {name} ({unit})", fontsize=9)
        ax.set_xlabel("part", fontsize=9)
        ax.set_ylabel("k-means cluster", fontsize=9)
        ax.set_xticks(range(n_parts))
        ax.set_xticklabels([str(i) for i in range(n_parts)], fontsize=tick)
        step = 1 if k <= 25 else int(np.ceil(k / 25))
        ax.set_yticks(range(0, k, step))
        ax.set_yticklabels([str(i) for i in range(0, k, step)], fontsize=tick)
        ax.set_title(f"mean {name} of each part per cluster ({unit}, relative to the rest frame)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _views(projs: np.ndarray, frac: float = 0.1) -> list[np.ndarray]:
    """Cropped, upsampled (to about 256 px, linear) non-negative views ``(K, h, w)`` of
    part projections ``(K, 3, D, D)``, one per viewing direction."""
    from scipy.ndimage import zoom

    out = []
    for v in range(3):
        ys, xs = support_crop(projs[:, v].sum(0)[None], frac=frac)
        crop = projs[:, v, ys, xs]
        f = max(1.0, 256.0 / max(crop.shape[1:]))
        out.append(np.clip(zoom(crop, (1, f, f), order=1), 0, None))
    return out


def _shade(crop: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """RGB image on white: each pixel the colour ``rgb[k]`` of the part ``k`` contributing
    most along the ray, its strength the total density (gamma 0.5; faint background white)."""
    total = crop.sum(0)
    dom = np.argmax(crop, axis=0)
    rel = total / max(float(np.percentile(total, 99.5)), 1e-12)
    shade = np.clip((rel - 0.05) / 0.95, 0, 1)[..., None] ** 0.5
    return np.clip(1.0 - shade * (1.0 - rgb[dom]), 0, 1)


_VIEW_NAMES = ("top (sum z)", "front (sum y)", "side (sum x)")


def _hex_rgb(colour: str) -> np.ndarray:
    c = colour.lstrip("#")
    return np.array([int(c[i : i + 2], 16) / 255.0 for i in (0, 2, 4)])


def plot_parts(projs: list[np.ndarray], colours: list[str], path: Path, title: str) -> Path:
    """Parts in three views on white, one colour per part (see :func:`_shade`)."""
    plt = _plt()
    p = np.clip(np.stack(projs), 0, None)  # (K, 3, D, D)
    palette = np.stack([_hex_rgb(colours[k % len(colours)]) for k in range(len(p))])
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, crop, name in zip(axes, _views(p), _VIEW_NAMES):
        ax.imshow(_shade(crop, palette), origin="lower")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[k % len(colours)]) for k in range(len(p))]
    fig.legend(
        handles,
        [f"part {k}" for k in range(len(p))],
        loc="center right",
        fontsize=7,
        ncol=1 + len(p) // 14,
        frameon=False,
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    return save_figure(fig, path)


def plot_part_movers(projs: list[np.ndarray], change_deg: np.ndarray, path: Path, title: str) -> Path:
    """The parts coloured by how much they move: ``change_deg`` (K,) per part (e.g. the range of
    the cluster-mean rotation) on a colour scale, the most mobile parts numbered."""
    plt = _plt()
    from matplotlib.colors import Normalize

    p = np.clip(np.stack(projs), 0, None)
    change = np.asarray(change_deg, dtype=np.float64)
    norm = Normalize(vmin=0.0, vmax=max(float(change.max()), 1e-6))
    cmap = plt.get_cmap("plasma_r")
    rgb = np.asarray(cmap(norm(change)))[:, :3]
    top = np.argsort(-change, kind="stable")[: min(5, len(change))]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, crop, name in zip(axes, _views(p), _VIEW_NAMES):
        ax.imshow(_shade(crop, rgb), origin="lower")
        for k in top:  # number the most mobile parts where they are densest in this view
            if crop[k].max() > 0.05 * crop.sum(0).max():
                y, x = np.unravel_index(np.argmax(crop[k]), crop[k].shape)
                ax.text(
                    x,
                    y,
                    str(int(k)),
                    fontsize=8,
                    ha="center",
                    va="center",
                    weight="bold",
                    bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="none", alpha=0.75),
                )
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=list(axes), fraction=0.02, pad=0.01).set_label(
        "change of mean rotation between clusters (°)", fontsize=8
    )
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_convergence(rows: list[dict[str, float]], path: Path) -> Path:
    """Per snapshot epoch: neighbours kept and map agreement with the last epoch, and the
    latents' change from the previous snapshot (:mod:`cryohet.analysis.convergence`)."""
    plt = _plt()
    epochs = np.array([r["epoch"] for r in rows])
    panels = [
        ("latent neighbours kept (vs last epoch)", "neighbours_kept", (0, 1.02)),
        ("latent change from the previous snapshot", "latent_change", None),
    ]
    if "map_auc" in rows[0]:
        panels.append(("map at mean latent: FSC AUC vs last (1 = same)", "map_auc", None))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.0), squeeze=False)
    for ax, (title, key, ylim) in zip(axes[0], panels):
        ax.plot(epochs, [r[key] for r in rows], "o-", ms=3, lw=1.2, color="#08519c")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
