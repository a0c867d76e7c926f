"""Simulate a particle dataset with ground truth (CryoBench-like).

Pipeline (every physical step goes through :mod:`cryohet.imaging`):

1. states from a preset (:mod:`.presets`), centred on the population-weighted centre of
   mass, checked to fit the box;
2. one band-limited ground-truth map per state (:func:`.density.atoms_to_volume`);
3. per particle: a state drawn with the preset's populations (exact counts, shuffled),
   a uniform rotation on SO(3), a uniform shift within ``±max_shift_px``, CTF parameters
   from :func:`.ctf_sampling.sample_ctf`;
4. clean image = ``render`` (2×-oversampled Fourier slice sampled on a 2× finer slice
   grid and cropped, which keeps image sums within ~1 % of the map's; CTF, shift) of the
   state map, protein bright (RELION's convention, CTF(0) = +w);
5. white Gaussian noise with ``sigma = std(clean images) / sqrt(SNR)`` over the whole
   stack (CryoBench IgG-1D; estimated on up to 1 000 clean images first).

Output folder::

    DIR/particles.mrcs      (N, D, D) float32 stack
    DIR/particles.star      RELION 3.1 (optics + poses + CTF), origins in Å
    DIR/meta.json           what was simulated (preset, sizes, SNR, sigma, seed, states)
    DIR/gt/state_000.mrc …  one ground-truth map per state (same box and pixel size)
    DIR/gt/labels.npy       (N,) state of every particle
    DIR/gt/gt_latents.npy   (n_states, k) ground-truth collective variables per state
    DIR/gt/mask.mrc         soft mask: union of the states' support, dilated, soft edge
    DIR/gt/atoms.npz        per-state atom positions in the maps' frame (Å from the box
                            centre): coords_A (S, A, 3), present (S, A), chain_ids (A,),
                            residue_numbers (A,), moving (A,) (atoms that move/appear)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..console import get_logger, progress
from ..device import resolve_device
from ..errors import InputError
from ..geometry.rotations import random_rotations
from ..imaging.masks import threshold_mask
from ..imaging.projection import volume_to_fourier
from ..io.metadata import ParticleMetadata
from ..io.mrc import StackWriter, write_volume
from ..io.outputs import check_output, staged_folder
from ..io.star import write_star
from ..representations.render import render
from .config import SimulationConfig
from .ctf_sampling import sample_ctf
from .density import ELECTRONS, atoms_to_volume
from .ensembles import Ensemble
from .presets import PRESETS, build_ensemble

__all__ = ["simulate_dataset", "state_counts"]

log = get_logger("simulate")


def state_counts(populations: np.ndarray, n: int) -> np.ndarray:
    """Exact per-state counts summing to ``n`` (largest-remainder rounding)."""
    raw = np.asarray(populations, dtype=np.float64) * n
    counts = np.floor(raw).astype(np.int64)
    counts[np.argsort(raw - counts)[::-1][: n - counts.sum()]] += 1
    return counts


def _electrons(elements: np.ndarray) -> np.ndarray:
    return np.array([ELECTRONS.get(str(e).upper(), 6.0) for e in elements], dtype=np.float64)


def _centre(ensemble: Ensemble, weights: np.ndarray) -> np.ndarray:
    coms = [np.average(s.coords_A[s.present], axis=0, weights=weights[s.present]) for s in ensemble.states]
    return np.average(np.array(coms), axis=0, weights=ensemble.populations)


def _check_box(ensemble: Ensemble, centre: np.ndarray, cfg: SimulationConfig, apix: float) -> None:
    radius = max(float(np.linalg.norm(s.coords_A[s.present] - centre, axis=1).max()) for s in ensemble.states)
    needed_A = radius + 2.0 * cfg.blur_A + 2.0 * apix + cfg.max_shift_px * apix
    available_A = (cfg.box / 2) * apix
    if needed_A > available_A:
        need_px = int(np.ceil(2 * (radius + 2.0 * cfg.blur_A + 2.0 * apix) / apix + 2 * cfg.max_shift_px))
        need_px += need_px % 2
        raise InputError(
            f"box of {cfg.box} px at {apix:g} Å/px ({cfg.box * apix:g} Å) is too small for the "
            f"{cfg.preset} model: it needs at least {need_px} px at this pixel size "
            f"(particle radius {radius:.0f} Å, shifts up to {cfg.max_shift_px:g} px), or a larger --apix"
        )


def _ground_truth_maps(ensemble: Ensemble, centre: np.ndarray, cfg: SimulationConfig, apix: float) -> list[np.ndarray]:
    weights = _electrons(ensemble.model.elements)
    maps = []
    for state in progress(ensemble.states, description="ground-truth maps", unit="map"):
        present = state.present
        maps.append(atoms_to_volume(state.coords_A[present] - centre, weights[present], cfg.box, apix, cfg.blur_A))
    return maps


def write_gt_atoms(path: Path, ensemble: Ensemble, centre: np.ndarray) -> None:
    """Per-state atom positions, centred like the maps, for part/occupancy checks."""
    model = ensemble.model
    moving = ensemble.moving_atoms if ensemble.moving_atoms is not None else np.zeros(len(model), bool)
    np.savez_compressed(
        path,
        coords_A=np.stack([s.coords_A - centre for s in ensemble.states]).astype(np.float32),
        present=np.stack([s.present for s in ensemble.states]),
        chain_ids=model.chain_ids.astype(str),
        residue_numbers=model.residue_numbers,
        moving=moving,
    )


def _render_clean(vol_ft, rotations, shifts_A, ctf, box, apix) -> torch.Tensor:
    """Noise-free images (N, D, D) on the CPU, rendered on ``vol_ft``'s device."""
    dev = vol_ft.data.device
    return render(
        vol_ft,
        torch.as_tensor(rotations, dtype=torch.float32, device=dev),
        torch.as_tensor(shifts_A, dtype=torch.float32, device=dev),
        torch.as_tensor(ctf, dtype=torch.float32, device=dev),
        box,
        apix,
        output="real",
        image_oversample=2,
    ).cpu()


def simulate_dataset(cfg: SimulationConfig) -> Path:
    """Run the simulation described by ``cfg``; returns the output folder.

    The folder is written fresh (:func:`cryohet.io.outputs.staged_folder`): an existing
    non-empty one is refused unless ``cfg.overwrite``, and then replaced as a whole; a
    folder holding the input model is always refused.
    """
    out = Path(cfg.out)
    inputs = [cfg.model] if cfg.model else []
    check_output(out, inputs, overwrite=cfg.overwrite, folder=True)
    device = resolve_device(cfg.device)
    rng = np.random.default_rng(cfg.seed)
    apix = cfg.resolved_apix()
    ensemble = build_ensemble(
        cfg.preset, cfg.n_states, rng, cfg.model, cfg.moving, cfg.axis, (cfg.angle_min_deg, cfg.angle_max_deg)
    )
    weights = _electrons(ensemble.model.elements)
    centre = _centre(ensemble, weights)
    _check_box(ensemble, centre, cfg, apix)
    with staged_folder(out, overwrite=cfg.overwrite, inputs=inputs) as work:
        sigma = _write_dataset(work, cfg, ensemble, weights, centre, rng, device, apix)
    log.info("done (noise sigma %.4g)", sigma)
    return out


def _write_dataset(out: Path, cfg: SimulationConfig, ensemble, weights, centre, rng, device, apix: float) -> float:
    """Render and write the whole dataset into the (temporary) folder ``out``; returns the noise sigma."""
    (out / "gt").mkdir(exist_ok=True)
    log.info(
        "%s: %d states, %d images, box %d at %.3g Å/px, SNR %g",
        cfg.preset,
        ensemble.n_states,
        cfg.n_images,
        cfg.box,
        apix,
        cfg.snr,
    )

    maps = _ground_truth_maps(ensemble, centre, cfg, apix)
    for i, m in enumerate(maps):
        write_volume(out / "gt" / f"state_{i:03d}.mrc", m, apix)
    # Soft mask: union of supports at 2% of the mean map's maximum, +2 px, 3 px soft edge.
    stack_max = np.max([m.max() for m in maps])
    union = torch.as_tensor(np.max(np.stack(maps), axis=0))
    mask = threshold_mask(union, 0.02 * float(stack_max), dilate_px=2.0, soft_edge_px=3.0)
    write_volume(out / "gt" / "mask.mrc", mask.numpy(), apix)
    write_gt_atoms(out / "gt" / "atoms.npz", ensemble, centre)

    # Particles: labels, poses, shifts, CTF.
    n = cfg.n_images
    counts = state_counts(ensemble.populations, n)
    labels = np.repeat(np.arange(ensemble.n_states), counts)
    rng.shuffle(labels)
    rotations = random_rotations(n, rng)
    shifts_A = rng.uniform(-cfg.max_shift_px, cfg.max_shift_px, size=(n, 2)) * apix
    ctf = sample_ctf(n, rng, defocus_range_um=(cfg.defocus_min_um, cfg.defocus_max_um))
    ctf_arr = ctf.as_array()
    np.save(out / "gt" / "labels.npy", labels.astype(np.int64))
    np.save(out / "gt" / "gt_latents.npy", ensemble.gt_latents())

    vol_fts = [volume_to_fourier(torch.as_tensor(m, device=device)) for m in maps]
    # Noise level from clean images of a random subset (std over all pixels, CryoBench).
    probe = np.sort(rng.choice(n, size=min(n, 1000), replace=False))
    sq, tot, cnt = 0.0, 0.0, 0
    for s in np.unique(labels[probe]):
        idx = probe[labels[probe] == s]
        clean = _render_clean(vol_fts[s], rotations[idx], shifts_A[idx], ctf_arr[idx], cfg.box, apix).double()
        sq += float((clean**2).sum())
        tot += float(clean.sum())
        cnt += clean.numel()
    mean = tot / cnt
    sigma = float(np.sqrt(max(sq / cnt - mean * mean, 1e-30)) / np.sqrt(cfg.snr))

    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    chunk = cfg.chunk
    with StackWriter(out / "particles.mrcs", n, cfg.box, apix) as writer:
        for start in progress(range(0, n, chunk), total=-(-n // chunk), description="particles", unit="chunk"):
            idx = np.arange(start, min(n, start + chunk))
            images = torch.empty(len(idx), cfg.box, cfg.box)
            for s in np.unique(labels[idx]):
                sel = np.nonzero(labels[idx] == s)[0]
                rows = idx[sel]
                images[sel] = _render_clean(vol_fts[s], rotations[rows], shifts_A[rows], ctf_arr[rows], cfg.box, apix)
            images += sigma * torch.randn(images.shape, generator=gen)
            writer.write(start, images.numpy())

    meta = ParticleMetadata(
        image_files=[(out / "particles.mrcs").resolve()],
        file_index=np.zeros(n, dtype=np.int64),
        image_index=np.arange(n),
        box=cfg.box,
        apix=np.full(n, apix),
        ctf=ctf,
        rotations=rotations,
        shifts_A=shifts_A,
        source=out / "particles.star",
        source_format="star",
    )
    write_star(out / "particles.star", meta)
    info = {
        "cryohet_version": __version__,
        "preset": cfg.preset,
        "description": ensemble.description,
        "model": str(cfg.model) if cfg.model else PRESETS[cfg.preset].model,
        "n_images": n,
        "n_states": ensemble.n_states,
        "box": cfg.box,
        "apix": apix,
        "snr": cfg.snr,
        "noise_sigma": sigma,
        "seed": cfg.seed,
        "max_shift_px": cfg.max_shift_px,
        "blur_A": cfg.blur_A,
        "centre_A": centre.tolist(),
        "populations": ensemble.populations.tolist(),
        "counts": counts.tolist(),
        "gt_variables": list(ensemble.variable_names),
        "gt_latents": ensemble.gt_latents().tolist(),
        "contrast": "protein bright (RELION convention, CTF(0) = +amplitude contrast)",
        "config": cfg.model_dump(mode="json"),
    }
    if ensemble.pseudo_symmetry is not None:  # volume-frame rotations S: poses A and A S^T are alike
        info["pseudo_symmetry"] = np.asarray(ensemble.pseudo_symmetry).tolist()
    if ensemble.moving_atoms is not None:
        info["moving_atom_fraction"] = float(np.average(ensemble.moving_atoms, weights=weights))
    for target in (out / "meta.json", out / "gt" / "meta.json"):
        target.write_text(json.dumps(info, indent=2))
    return sigma
