"""Figures of ``cryohet evaluate``: FSC curves (all states, and one PNG per state) and the
per-state AUC plot, drawn from the JSON-ready result of
:func:`cryohet.evaluation.evaluate.evaluate_run` (so they can be redrawn from ``metrics.json``).

Spatial frequencies on the x axes are in 1/Å (``freq_per_px / apix``; ``freq_per_px`` in cycles
per pixel as CryoBench's ``k / D``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_fsc_overview", "plot_fsc_per_state", "plot_auc_per_state"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _frequencies(result: dict[str, Any], block: dict[str, Any]) -> np.ndarray:
    """Shell frequencies in 1/Å."""
    freq = block["freq_per_px"] if "freq_per_px" in block else block["freq_px"]  # metrics.json before 0.2
    return np.asarray(freq) / float(result["apix"])


def _decorate(ax, title: str) -> None:
    ax.axhline(0.5, color="grey", lw=0.6, ls="--")
    ax.axhline(0.143, color="grey", lw=0.6, ls=":")
    ax.set_ylim(-0.1, 1.02)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC vs ground truth")
    ax.set_title(title, fontsize=9)


def plot_fsc_overview(result: dict[str, Any], path: Path) -> Path:
    """All states' curves, one panel per variant (masked, unmasked); returns ``path``."""
    plt = _pyplot()
    variants = list(result["per_conformation"])
    fig, axes = plt.subplots(1, len(variants), figsize=(5.5 * len(variants), 4), dpi=110, squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes[0], variants):
        block = result["per_conformation"][name]
        f = _frequencies(result, block)
        states = list(block["curves"])
        for i, s in enumerate(states):
            label = f"state {s} ({block['per_state'][s]:.3f})" if len(states) <= 12 else None
            ax.plot(f, block["curves"][s], color=cmap(i / max(1, len(states) - 1)), lw=1, label=label)
        _decorate(ax, f"{result['method']}: {name}, AUC {block['auc_mean']:.3f} (ceiling {result['auc_ceiling']:.3f})")
        if len(states) <= 12:
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_fsc_per_state(result: dict[str, Any], folder: Path) -> list[Path]:
    """One PNG per state, ``folder/fsc_state_NNN.png``, masked and unmasked curves together."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    blocks = result["per_conformation"]
    first = next(iter(blocks.values()))
    written = []
    for s in first["curves"]:
        fig, ax = plt.subplots(figsize=(4.5, 3.3), dpi=100)
        for name, block in blocks.items():
            ax.plot(
                _frequencies(result, block),
                block["curves"][s],
                lw=1.2,
                label=f"{name}: AUC {block['per_state'][s]:.4f}",
            )
        _decorate(
            ax, f"{result['method']}, state {s} (image {first['image_index'][s]}); ceiling {result['auc_ceiling']:.4f}"
        )
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        path = folder / f"fsc_state_{int(s):03d}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def plot_auc_per_state(result: dict[str, Any], path: Path) -> Path:
    """AUC per state for each variant, with the ground-truth ceiling; returns ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for name, block in result["per_conformation"].items():
        states = [int(s) for s in block["per_state"]]
        ax.plot(states, list(block["per_state"].values()), "o-", ms=3, label=f"{name} (mean {block['auc_mean']:.3f})")
    ax.axhline(result["auc_ceiling"], color="k", lw=0.8, ls="--", label=f"ceiling {result['auc_ceiling']:.3f}")
    ax.set_xlabel("state")
    ax.set_ylabel("FSC AUC")
    ax.set_title(f"{result['method']}: per-conformation FSC AUC")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
