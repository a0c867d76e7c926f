"""Helpers for the distributed tests: run a function on N gloo ranks (CPU) as torchrun would.

Each rank is a spawned process with torchrun's environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and one torch thread; a rank that fails
or hangs fails the test.
"""

from __future__ import annotations

import os
import socket
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

PINNED = Path(__file__).resolve().parent / "data" / "pinned" / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, world: int, port: int, fn, args: tuple, errors) -> None:
    os.environ.update(
        WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from cryohet.training.distributed import shutdown_distributed

    try:
        fn(rank, *args)
    except BaseException:  # noqa: BLE001 - reported to the parent; no shutdown (the peers may be gone)
        errors.put((rank, traceback.format_exc()))
        raise
    shutdown_distributed()


def run_ranks(world: int, fn, *args, timeout: float = 180.0) -> list[str]:
    """Run ``fn(rank, *args)`` on ``world`` ranks; returns the tracebacks of failed ranks."""
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(r, world, port, fn, args, errors)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
        p.join()
    if hung:
        raise TimeoutError(f"{len(hung)} rank(s) did not finish within {timeout} s")
    failures = []
    while not errors.empty():
        failures.append(errors.get()[1])
    if not failures and any(p.exitcode != 0 for p in procs):
        failures.append(f"exit codes {[p.exitcode for p in procs]}")
    return failures


# ---------------------------------------------------------------------------- workers
def spire_config(data: Path, out: Path, batch: int, epochs_a: int = 2, epochs_b: int = 3, **kw):
    from cryohet.io.source import ParticleSource
    from cryohet.methods.spire import SpireConfig

    return SpireConfig(
        data=ParticleSource(path=data / "particles.star"),
        out=str(out),
        zdim=3,
        latent_search=4,
        init_regions=4,
        stage_a={"epochs": epochs_a, "gaussians": 128, "feature_dim": 8, "hidden": 16},
        stage_b={"epochs": epochs_b, "gaussians": 256, "hidden": 32, "layers": 2},
        optim={"batch_size": batch},
        seed=3,
        **kw,
    )


def train_spire_rank(rank: int, data: Path, out: Path, batch: int, tables: Path, kill_at: int = -1) -> None:
    """Train CryoSPIRE; every rank saves its final latent table to ``tables/rank<r>.npy``;
    with ``kill_at >= 0`` every rank dies at the start of that epoch."""
    from cryohet.methods.spire import trainer as spire_trainer

    original_outputs = spire_trainer.write_outputs
    original_epoch = spire_trainer.SpireTrainer.train_epoch

    def write_outputs(tr) -> None:
        np.save(tables / f"rank{rank}.npy", tr.latents.z.cpu().numpy())
        original_outputs(tr)

    def train_epoch(self, epoch):
        if epoch == kill_at:
            raise SystemExit(3)
        return original_epoch(self, epoch)

    spire_trainer.write_outputs = write_outputs
    spire_trainer.SpireTrainer.train_epoch = train_epoch
    resume = (out / "checkpoints").is_dir()
    spire_trainer.train_spire(spire_config(data, out, batch), resume=resume)


def train_baseline_rank(rank: int, name: str, data: Path, out: Path) -> None:
    from cryohet.io.source import ParticleSource
    from cryohet.methods import baselines as b

    src = ParticleSource(path=data / "particles.star")
    if name == "homogeneous":
        b.train_homogeneous(b.HomogeneousConfig(data=src, out=str(out)))
    elif name == "pca":
        b.train_pca(b.PCAConfig(data=src, out=str(out), components=2, iterations=2))
    elif name == "classify3d":
        b.train_classify3d(b.Classify3DConfig(data=src, out=str(out), classes=2, iterations=2, init_iterations=2))
    else:
        raise ValueError(name)


def train_sphere_rank(rank: int, data: Path, model: Path, out: Path, batch: int, kill_at: int = -1) -> None:
    """Train cryoSPHERE (4 segments, 3 epochs); with ``kill_at >= 0`` every rank dies at the
    start of that epoch."""
    from cryohet.io.source import ParticleSource
    from cryohet.methods.sphere import SphereConfig
    from cryohet.methods.sphere import trainer as sphere_trainer

    original_epoch = sphere_trainer.SphereTrainer.train_epoch

    def train_epoch(self, epoch):
        if epoch == kill_at:
            raise SystemExit(3)
        return original_epoch(self, epoch)

    sphere_trainer.SphereTrainer.train_epoch = train_epoch
    cfg = SphereConfig(data=ParticleSource(path=data / "particles.star"), out=str(out), model=str(model), segments=4,
                       zdim=2, epochs=3, optim={"batch_size": batch})  # fmt: skip
    sphere_trainer.train_sphere(cfg, resume=(out / "checkpoints").is_dir())
