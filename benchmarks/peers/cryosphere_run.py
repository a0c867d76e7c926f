"""Run the peer program cryoSPHERE 0.6.1 on CPU on a cryohet dataset and time it.

cryoSPHERE as shipped needs a GPU: ``cryosphere_train`` spawns ``torch.cuda.device_count()``
processes (zero on a CPU-only machine, so it exits 0 having trained nothing), sets up NCCL,
wraps its modules in ``DistributedDataParallel(device_ids=[rank])``, moves tensors with
``.to(rank)`` and saves checkpoints only when ``rank == 0``. It also imports torchvision,
whose PyPI wheel needs CUDA libraries. This harness leaves the installed files alone and
patches from outside (:func:`install_cpu_shim`):

* ``torchvision`` is replaced by a stub whose ``transforms.functional.resize`` is the same
  antialiased bilinear resize done with ``torch.nn.functional.interpolate``;
* the rank passed to cryoSPHERE's ``train`` is :class:`CpuRank`, the string ``"cpu"`` that
  also compares equal to 0, so ``.to(rank)`` / ``device=rank`` mean the CPU and ``rank == 0``
  still saves checkpoints;
* ``ddp_setup`` opens a one-process gloo group (its ``DistributedSampler`` needs one) and
  ``DistributedDataParallel`` becomes a pass-through holder of ``.module``.

The config is upstream's ``parameters.yaml`` (whose tabs make it invalid YAML) with its
defaults kept, except wandb off, device cpu and ``num_workers`` 0. ``N_epochs`` stays 300 unless
``--n-epochs-schedule`` says otherwise, so the loss schedules are those of a default run; the loop
stops after ``--epochs``.

Not the shim's doing: with the default 20 segments a small protein goes NaN in epoch 0 (the
hinge Fab, 445 residues: 22 per segment). cryoSPHERE samples each segment's std as
``elu(randn * 10 + N_res / N_segm) + 1``, which is exactly 0.0 in float32 below about -17,
and its gradient divides by that std squared. ``--segments 4`` avoids it there.

Options beyond the defaults: ``--light-clash`` sets upstream's own ``full_clashing_loss: false``
(its "light version": the clash term only on the residue pairs 4 to 10 Å apart in the base
structure instead of all pairs); ``--n-epochs-schedule N`` sets the config's ``N_epochs`` (the
length its linear and cyclical KL schedules assume), e.g. to ``--epochs`` so that a short run
completes its schedules.

``--evaluate GT`` (a cryohet simulation folder) scores the trained model as ``cryohet evaluate``
scores a run's per-conformation FSC (:func:`export_states`, then ``cryosphere_score.py``):

* every particle is encoded with the peer's trained encoder (the latent mean, as upstream's
  ``sample_latent_variables``); for each true state the particle latent nearest that state's mean
  latent is taken (``nearest_to_mean``) and decoded with upstream's ``predict_structures``, with
  the segmentation at its means (upstream samples one at random per structure; the sampled
  variant is scored too, mean only);
* the decoded residues (Cα, upstream's own PDB writer) go to ``WORKDIR/eval/state_NNN.pdb`` in the
  data's map frame (cryoSPHERE's box-centred frame plus ``(box // 2) * apix``);
* in the project's venv (``--cryohet-python``; ``cryosphere_score.py EVALDIR``), each is
  rendered as cryohet's sphere method renders its ``volumes``: one Gaussian per residue at its Cα,
  sigma 2 Å, mass its electron count (cryohet's residue model of MODEL, glycans counted with the
  nearest residue), ``voxelize_gaussians`` at the ground truth's box and pixel size; scored with
  ``per_conformation_fsc`` against ``gt/state_NNN.mrc``, masked (``gt/mask.mrc``) and unmasked;
  Cα RMSD to ``gt/atoms.npz`` per state. Writes ``eval/maps/``, ``eval/metrics.json`` and a table.

Run it with the peer venv (benchmarks/peers/setup_cryosphere.sh)::

    /work/peers/cryosphere/bin/python benchmarks/peers/cryosphere_run.py DATASET_DIR MODEL WORKDIR --epochs 2
    /work/peers/cryosphere/bin/python benchmarks/peers/cryosphere_run.py DATA in0.pdb WORK --frame map \
        --epochs 30 --n-epochs-schedule 30 --light-clash --threads 2 --evaluate DATA
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

UPSTREAM_DEFAULTS: dict[str, Any] = {  # cryoSPHERE's parameters.yaml, values as shipped
    "name": "cryoSPHERE_run",
    "wandb": False,  # shipped True
    "wandb_project": "VAECryoEM",
    "base_structure_path": "base_structure.pdb",
    "image_yaml": "images.yaml",
    "segmentation_config": {
        "part1": {"all_protein": True, "N_segm": 20, "segmentation_start": {"type": "uniform"}},
    },
    "lp_bandwidth": None,
    "loss_mask_radius": 1,
    "input_mask_radius": 1,
    "latent_dimension": 8,
    "tau_segmentation": 0.05,
    "device": "cpu",  # shipped "GPU"
    "num_workers": 0,  # shipped 4
    "amortized": True,
    "N_epochs": 300,
    "batch_size": 128,
    "epsilon_kl": "1e-10",  # a string: cryoSPHERE eval()s it (PyYAML reads 1e-10 as one)
    "seed": 0,  # shipped null
    "deterministic_cuda": False,
    "encoder": {"hidden_dimensions": [512, 256, 64, 64]},
    "decoder": {"hidden_dimensions": [512, 512]},
    "optimizer": {"name": "adam", "learning_rate": 3e-5, "learning_rate_segmentation": 3e-4},
    "loss": {
        "clashing_loss": {
            "full_clashing_loss": True,
            "clashing_cutoff": 4,
            "min_clashing_cutoff_pairs": 4,
            "max_clashing_cutoff_pairs": 10,
            "schedule": "constant",
            "beta": 0.1,
        },
        "continuity_loss": {"schedule": "constant", "beta": 0.1},
        "KL_prior_latent": {"schedule": "linear"},
        "KL_prior_segmentation_mean": {"schedule": "linear"},
        "KL_prior_segmentation_std": {"schedule": "linear"},
        "KL_prior_segmentation_proportions": {"schedule": "cyclical", "M": 5, "R": 0.5},
        "l2_pen": {"schedule": "constant", "beta": 1e-6},
    },
    "resume_training": {"model": None, "segmentation": None},
}


class CpuRank(str):
    """The device string ``"cpu"`` that also equals the integer rank 0 (cryoSPHERE's ``gpu_id``)."""

    def __new__(cls) -> CpuRank:
        return super().__new__(cls, "cpu")

    def __eq__(self, other: object) -> bool:
        return other == 0 or str.__eq__(self, other)

    def __hash__(self) -> int:
        return hash("cpu")


class Holder:
    """Stand-in for DistributedDataParallel: cryoSPHERE only reads ``.module``."""

    def __init__(self, module: Any, device_ids: Any = None, **_: Any) -> None:
        self.module = module


class Timer:
    """Wall-clock marks of each epoch and batch, filled by the shim's hooks."""

    def __init__(self, max_batches: int | None) -> None:
        self.max_batches = max_batches
        self.epoch_start: list[float] = []
        self.epoch_end: list[float] = []
        self.save_s: list[float] = []
        self.corr_loss: list[float] = []
        self.batches: list[list[float]] = []
        self.batch_size = 0
        self.setup_done = 0.0

    def iterate(self, loader: Iterable[Any]) -> Iterator[Any]:
        """Replaces ``tqdm(iter(data_loader))``: yields batches, records times, may stop early."""
        self.epoch_start.append(time.perf_counter())
        marks: list[float] = []
        self.batches.append(marks)
        for i, batch in enumerate(loader):
            if self.max_batches is not None and i >= self.max_batches:
                break
            self.batch_size = int(batch[0].shape[0])
            marks.append(time.perf_counter())
            yield batch


def install_cpu_shim(workdir: Path, timer: Timer, stop_after: int) -> types.ModuleType:
    """Patch cryoSPHERE (in memory only) to train in this one CPU process; return its train module."""
    import torch
    import torch.nn.functional as F

    tv = types.ModuleType("torchvision")
    tv_t = types.ModuleType("torchvision.transforms")
    tv_f = types.ModuleType("torchvision.transforms.functional")

    def resize(img: torch.Tensor, size: list[int], antialias: bool = True) -> torch.Tensor:
        return F.interpolate(img[None], size=size, mode="bilinear", align_corners=False, antialias=antialias)[0]

    tv_f.resize = resize  # type: ignore[attr-defined]
    tv.transforms, tv_t.functional = tv_t, tv_f  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tv_t, "torchvision.transforms.functional": tv_f})
    os.environ.setdefault("WANDB_MODE", "disabled")

    import cryosphere.cryosphere_train as ct
    import cryosphere.data.analyze as an
    import cryosphere.model.utils as cu

    def ddp_setup(rank: Any, world_size: int) -> None:
        if not torch.distributed.is_initialized():
            store = tempfile.mktemp(prefix="gloo_", dir=workdir)
            torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)

    parse_yaml = cu.parse_yaml

    def parse_yaml_capped(path: str, gpu_id: Any, analyze: bool = False) -> tuple[Any, ...]:
        out = list(parse_yaml(path, gpu_id, analyze))
        out[7] = min(out[7], stop_after)  # N_epochs: the loop's length; the schedules keep the config's
        timer.setup_done = time.perf_counter()
        return tuple(out)

    monitor = cu.monitor_training

    def monitor_timed(*args: Any, **kwargs: Any) -> None:
        timer.epoch_end.append(time.perf_counter())
        timer.corr_loss.append(float(np.mean(args[2]["correlation_loss"])))  # tracking_metrics
        monitor(*args, **kwargs)
        timer.save_s.append(time.perf_counter() - timer.epoch_end[-1])

    cu.ddp_setup, ct.ddp_setup = ddp_setup, ddp_setup
    cu.parse_yaml, cu.monitor_training = parse_yaml_capped, monitor_timed
    ct.DDP, an.DDP = Holder, Holder
    ct.tqdm = timer.iterate
    an.tqdm = lambda it: it
    return ct


def write_base_structure(model: Path, shift: np.ndarray, out: Path) -> int:
    """Write ``model`` moved by ``shift`` Å (into cryoSPHERE's box-centred frame), no waters or H."""
    import biotite.structure as struc
    import biotite.structure.io as strucio
    from biotite.structure.io.pdb import PDBFile

    src = model
    if model.suffix == ".gz":
        src = out.parent / model.stem
        src.write_bytes(gzip.decompress(model.read_bytes()))
    atoms = strucio.load_structure(str(src), model=1)
    atoms = atoms[~struc.filter_solvent(atoms) & (atoms.element != "H") & (atoms.element != "D")]
    atoms.coord = atoms.coord + shift.astype(np.float32)
    # cryoSPHERE rejects repeated residue ids in a chain, i.e. insertion codes (antibody numbering
    # 52A, 82B...): number the residues of each chain 1, 2, 3... instead.
    starts = struc.get_residue_starts(atoms, add_exclusive_stop=True)
    counts: dict[str, int] = {}
    for lo, hi in zip(starts[:-1], starts[1:]):
        counts[atoms.chain_id[lo]] = counts.get(atoms.chain_id[lo], 0) + 1
        atoms.res_id[lo:hi] = counts[atoms.chain_id[lo]]
    atoms.ins_code[:] = ""
    pdb = PDBFile()
    pdb.set_structure(atoms)
    pdb.write(str(out))
    return int(struc.get_residue_count(atoms[struc.filter_amino_acids(atoms)]))


def prepare(
    dataset: Path,
    model: Path,
    frame: str,
    workdir: Path,
    batch_size: int,
    downsize: int | None,
    segments: int,
    n_epochs_schedule: int | None = None,
    light_clash: bool = False,
) -> Path:
    """Write base_structure.pdb, images.yaml and parameters.yaml for ``dataset`` into ``workdir``."""
    import yaml

    meta = json.loads((dataset / "meta.json").read_text())
    box, apix = int(meta["box"]), float(meta["apix"])
    # cryoSPHERE's grid (EMAN2Grid) puts pixel box//2 at 0 Å: the model must be in that frame.
    # cryohet's map frame has that pixel at (box//2)*apix; its original frame has it at centre_A.
    centre = np.full(3, (box // 2) * apix) if frame == "map" else np.asarray(meta["centre_A"], dtype=float)
    workdir.mkdir(parents=True, exist_ok=True)
    n_res = write_base_structure(model, -centre, workdir / "base_structure.pdb")
    images = {"apix": apix, "Npix": box, "Npix_downsize": downsize or box, "sigma_gmm": 2}
    (workdir / "images.yaml").write_text(yaml.safe_dump(images))
    cfg = json.loads(json.dumps(UPSTREAM_DEFAULTS))
    cfg.update(
        folder_path=str(workdir),
        particles_path=str(dataset),
        cs_star_file={"file": str(dataset / "particles.star")},
        N_images=int(meta["n_images"]),
        batch_size=batch_size,
    )
    cfg["segmentation_config"]["part1"]["N_segm"] = segments
    if n_epochs_schedule is not None:
        cfg["N_epochs"] = n_epochs_schedule
    if light_clash:
        cfg["loss"]["clashing_loss"]["full_clashing_loss"] = False
    path = workdir / "parameters.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"prepared {workdir}: box {box}, apix {apix}, {n_res} residues, frame shift {-centre}")
    return path


def check_poses(cfg: Path, n: int = 128) -> dict[str, float]:
    """Mean Pearson r between the images (shifted as cryoSPHERE does) and the undeformed model
    rendered by cryoSPHERE at the star-file poses, with its rotation and with the transpose."""
    import torch
    from cryosphere.model import renderer
    from cryosphere.model.utils import low_pass_images, parse_yaml

    s = parse_yaml(str(cfg), CpuRank(), analyze=True)
    translator, ctf, grid, gmm, dataset, lp = s[1], s[2], s[3], s[4], s[6], s[13]
    idx, imgs, rots, shifts, _ = zip(*(dataset[i] for i in range(min(n, len(dataset)))))
    idx_t, imgs_t, rots_t = torch.tensor(idx), torch.stack(imgs), torch.stack(rots)
    target = low_pass_images(translator.transform(imgs_t, torch.stack(shifts)[:, None, :]), lp).flatten(1)
    out = {}
    for name, r in (("as_read", rots_t), ("transposed", rots_t.transpose(-1, -2))):
        posed = renderer.rotate_structure(gmm.mus[None].expand(len(idx), -1, -1), r)
        pred = renderer.apply_ctf(renderer.project(posed, gmm.sigmas, gmm.amplitudes, grid), ctf, idx_t).flatten(1)
        a, b = pred - pred.mean(1, keepdim=True), target - target.mean(1, keepdim=True)
        out[name] = float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean())
    return out


def gt_folder(gt: Path) -> Path:
    """The ``gt/`` folder of a simulation folder (or ``gt`` itself when it is one)."""
    return gt / "gt" if (gt / "gt" / "labels.npy").exists() else gt


def nearest_rows(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per state (sorted labels), the row whose latent is nearest the state's mean latent
    (cryohet.metrics.per_conformation.nearest_to_mean, repeated here for the peer venv)."""
    rows = []
    for s in np.unique(labels):
        idx = np.flatnonzero(labels == s)
        zs = z[idx].astype(np.float64)
        rows.append(int(idx[int(np.argmin(((zs - zs.mean(axis=0)) ** 2).sum(axis=1)))]))
    return np.asarray(rows, dtype=np.int64)


def export_states(cfg: Path, workdir: Path, epoch: int, gt: Path, out: Path) -> Path:
    """Encode every particle with the checkpoint of ``epoch`` (0-based), decode the latent nearest
    each true state's mean latent, write the PDBs and ``peer_states.npz`` into ``out``."""
    import copy
    import logging

    import torch
    import yaml
    from cryosphere.data.analyze import predict_structures
    from cryosphere.model.utils import parse_yaml
    from torch.utils.data import DataLoader

    if not logging.getLogger().handlers:  # else parse_yaml's basicConfig(filemode="w") empties the run's run.log
        logging.getLogger().addHandler(logging.NullHandler())
    s = parse_yaml(str(cfg), CpuRank(), analyze=True)
    vae, gmm, dataset, settings, base, segmenter = s[0], s[4], s[6], s[9], s[12], s[18]
    ckpt, seg = workdir / "cryoSPHERE" / f"ckpt{epoch}.pt", workdir / "cryoSPHERE" / f"seg{epoch}.pt"
    vae.load_state_dict(torch.load(ckpt, map_location="cpu"))
    segmenter.load_state_dict(torch.load(seg, map_location="cpu"))
    vae.eval()
    segmenter.eval()
    labels = np.load(gt_folder(gt) / "labels.npy")
    if len(labels) != len(dataset):
        sys.exit(f"{gt}: {len(labels)} labels but the dataset has {len(dataset)} images")

    t0 = time.perf_counter()
    z = np.full((len(dataset), int(settings["latent_dimension"])), np.nan, dtype=np.float32)
    with torch.no_grad():  # upstream's sample_latent_variables, without DDP and its 4 workers
        for idx, images, *_ in DataLoader(dataset, batch_size=256, shuffle=False, num_workers=0):
            _, mean, _ = vae.sample_latent(images.flatten(start_dim=-2), idx)
            z[idx.numpy()] = mean.numpy()
    if not np.isfinite(z).all():
        sys.exit("latents: some particles were not encoded or are not finite")
    rows = nearest_rows(z, labels)

    # the segmentation at its means: the three std parameters zero (upstream draws one at random)
    mean_seg = copy.deepcopy(segmenter)
    with torch.no_grad():
        for pdict in (mean_seg.segments_means_stds, mean_seg.segments_stds_stds, mean_seg.segments_proportions_stds):
            for p in pdict.values():
                p.zero_()
        pred = predict_structures(vae, z[rows], gmm, mean_seg, "cpu").numpy()
        torch.manual_seed(0)
        pred_sampled = predict_structures(vae, z[rows], gmm, segmenter, "cpu").numpy()
    images = yaml.safe_load((workdir / "images.yaml").read_text())
    half = (int(images["Npix"]) // 2) * float(images["apix"])  # box-centred -> the data's map frame
    out.mkdir(parents=True, exist_ok=True)
    states = np.unique(labels)
    for s_, coords in zip(states, pred):
        base.coord = (coords + half).astype(np.float32)
        base.to_pdb(str(out / f"state_{int(s_):03d}.pdb"))
    path = out / "peer_states.npz"
    np.savez(
        path, z=z, rows=rows, states=states, residues_A=pred + half, residues_sampled_A=pred_sampled + half,
        base_A=gmm.mus.numpy() + half, chain_id=np.asarray(base.chain_id), res_name=np.asarray(base.res_name),
        num_electron=np.asarray(base.num_electron), epoch=epoch, half_A=half,
    )  # fmt: skip
    np.save(out / "z.npy", z)
    print(f"encoded {len(z)} particles, decoded {len(rows)} states in {time.perf_counter() - t0:.1f} s: {out}")
    return path


def main() -> None:
    """Parse the command line, prepare the inputs, train with the shim and print the timing table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, help="cryohet dataset dir (particles.star, particles.mrcs, meta.json)")
    p.add_argument("model", type=Path, help="atomic model (.pdb/.cif, may be .gz)")
    p.add_argument("workdir", type=Path, help="where cryoSPHERE's inputs and outputs go")
    p.add_argument("--frame", choices=["original", "map"], default="original", help="frame of MODEL (see meta.json)")
    p.add_argument("--epochs", type=int, default=2, help="epochs to run (of the config's 300)")
    p.add_argument("--max-batches", type=int, default=None, help="stop each epoch after this many batches")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--segments", type=int, default=20, help="N_segm over the whole protein (upstream: 20)")
    p.add_argument("--downsize", type=int, default=None, help="Npix_downsize (default: no downsampling)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--check-poses", action="store_true", help="print the pose/frame agreement first")
    p.add_argument("--latents", action="store_true", help="afterwards write z.npy with cryoSPHERE's analyze code")
    p.add_argument("--light-clash", action="store_true", help="upstream's full_clashing_loss: false (pairs 4-10 Å)")
    p.add_argument("--n-epochs-schedule", type=int, default=None, help="the config's N_epochs (upstream: 300)")
    p.add_argument("--evaluate", type=Path, default=None, metavar="GT", help="afterwards score per-state maps (doc)")
    p.add_argument("--cryohet-python", default="/work/main/.venv/bin/python", help="python of the project's venv")
    p.add_argument("--no-train", action="store_true", help="only --evaluate the checkpoint of --epochs in WORKDIR")
    a = p.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    workdir = a.workdir.resolve()
    cfg = prepare(
        a.dataset.resolve(), a.model.resolve(), a.frame, workdir, a.batch_size, a.downsize, a.segments,
        n_epochs_schedule=a.n_epochs_schedule, light_clash=a.light_clash,
    )  # fmt: skip
    timer = Timer(a.max_batches)
    ct = install_cpu_shim(workdir, timer, a.epochs)
    if a.check_poses:
        print("pose check (mean Pearson r, first 128 images):", check_poses(cfg))
    if a.no_train:
        if a.evaluate is None:
            p.error("--no-train needs --evaluate")
        evaluate(a, cfg, workdir)
        return
    t0 = time.perf_counter()
    ct.train(CpuRank(), 1, str(cfg))
    t_end = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"\ncryoSPHERE on CPU, {a.threads} torch thread(s); load: {os.getloadavg()}")
    print(f"setup (parse_yaml: data, model, pairs): {timer.setup_done - t0:.1f} s")
    heads = [("epoch", 5), ("batches", 7), ("images", 6), ("s/epoch", 8), ("images/s", 8), ("s/batch(>1st)", 13)]
    print(" ".join(f"{h:>{w}}" for h, w in heads + [("save_s", 6), ("corr_loss", 9)]))
    for e, (start, end) in enumerate(zip(timer.epoch_start, timer.epoch_end)):
        marks = timer.batches[e] + [end]
        n_img = len(timer.batches[e]) * timer.batch_size
        steady = np.diff(marks)[1:].mean() if len(marks) > 2 else float("nan")
        row = f"{e:>5} {len(timer.batches[e]):>7} {n_img:>6} {end - start:>8.1f} {n_img / (end - start):>8.2f}"
        print(f"{row} {steady:>13.2f} {timer.save_s[e]:>6.2f} {timer.corr_loss[e]:>9.4f}")
    print(f"total wall {t_end - t0:.1f} s; peak RSS {rss_mb:.0f} MB")
    print(f"checkpoints: {sorted(p.name for p in (workdir / 'cryoSPHERE').glob('*.pt'))}")

    if a.latents:
        import cryosphere.data.analyze as an

        ckpt = workdir / "cryoSPHERE" / f"ckpt{a.epochs - 1}.pt"
        seg = workdir / "cryoSPHERE" / f"seg{a.epochs - 1}.pt"
        an.start_sample_latent(CpuRank(), 1, str(cfg), str(workdir), str(ckpt), str(seg))
        z = np.load(workdir / "z.npy")
        print(f"latents: {workdir / 'z.npy'} {z.shape}")
    if a.evaluate is not None:
        evaluate(a, cfg, workdir)


def evaluate(a: argparse.Namespace, cfg: Path, workdir: Path) -> None:
    """Export the states here (peer venv), then score them in the project's venv (a second process)."""
    out = export_states(cfg, workdir, a.epochs - 1, a.evaluate.resolve(), workdir / "eval")
    cmd = [a.cryohet_python, str(Path(__file__).resolve().with_name("cryosphere_score.py")), str(out.parent),
           "--gt", str(a.evaluate.resolve()), "--model", str(a.model.resolve()), "--frame", a.frame]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    subprocess.run(cmd, check=True, env=env)


if __name__ == "__main__":
    main()
