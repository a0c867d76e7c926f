"""Several processes, one per GPU (``torchrun``): process group, collectives, DDP, logging.

Launch: ``torchrun --nproc_per_node=G cryohet ...``. torchrun sets ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each process;
:func:`init_distributed` reads them and joins the default process group (backend
``"nccl"`` for CUDA, each rank on ``cuda:LOCAL_RANK``; ``"gloo"`` on CPUs).

With ONE process (no torchrun, or ``WORLD_SIZE=1``) nothing is initialised and every
function here is a no-op that returns its input (``shard`` returns all rows,
``wrap_ddp`` the module itself), so the single-process code path is exactly the plain one.

Conventions:

* rank 0 is the main process: it writes files and logs (:func:`quiet_non_main`);
* data parallelism: each rank reads its share of each step
  (:class:`cryohet.data.loader.SortedBatchSampler` with ``rank``/``world_size``), the
  networks are wrapped by :func:`wrap_ddp` (gradients are AVERAGED over ranks);
* per-image tables (latents, poses, ...; N rows) are synchronised by gathering the rows
  each rank updated (:func:`all_gather_rows` of the row indices and of the new values),
  never by all-reducing a dense ``N x d`` gradient or table;
* per-image passes (inference, search) take :func:`shard` of the rows and gather results.

Tensors given to a collective may be on any device: they are moved to the backend's
device (CUDA for nccl, CPU for gloo) and the result is returned on the input's device.
"""

from __future__ import annotations

import logging
import os
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..console import get_logger, set_progress_enabled
from ..device import resolve_device
from ..errors import ConfigError, InputError

__all__ = [
    "DistInfo",
    "init_distributed",
    "get_dist",
    "shutdown_distributed",
    "barrier",
    "all_reduce_sum_",
    "average_gradients",
    "all_gather_rows",
    "broadcast_tensor",
    "broadcast_object",
    "shard",
    "wrap_ddp",
    "quiet_non_main",
]

_TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on its node).

    ``backend`` is ``"nccl"``, ``"gloo"`` or None for a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0 (always true with one process): the process that writes and logs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """More than one process in a process group (collectives do something)."""
        return self.world_size > 1 and self.backend is not None


_SINGLE = DistInfo()
_current: DistInfo = _SINGLE
_owns_group = False  # whether init_distributed created the process group (shutdown destroys it)
_ddp_wrappers: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # live wrap_ddp results (see shutdown)


def get_dist() -> DistInfo:
    """The current :class:`DistInfo` (``DistInfo(0, 1, 0, None)`` before/without init)."""
    return _current


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer (torchrun sets it)") from None


def _torchrun_env() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's variables; None for one process."""
    if "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") <= 1:
        return None
    missing = [v for v in _TORCHRUN_VARS if not os.environ.get(v)]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: launch with torchrun"
        )
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world or local < 0:
        raise ConfigError(f"RANK={rank}, LOCAL_RANK={local} do not fit WORLD_SIZE={world}")
    return rank, world, local


def _rank_device(requested: torch.device, local_rank: int) -> torch.device:
    """``cuda:LOCAL_RANK`` (made current) for a CUDA request; the requested device otherwise."""
    if requested.type != "cuda":
        return requested
    if local_rank >= torch.cuda.device_count():
        raise InputError(f"LOCAL_RANK={local_rank} but torch sees {torch.cuda.device_count()} CUDA device(s)")
    dev = torch.device("cuda", local_rank)
    torch.cuda.set_device(dev)
    return dev


def init_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join torchrun's process group if there is one; returns ``(info, device)``.

    One process (no torchrun variables, or ``WORLD_SIZE`` <= 1): nothing is initialised;
    returns ``DistInfo(0, 1, 0, None)`` and ``resolve_device(device)`` (one-line
    :class:`ConfigError` for a bad name, :class:`InputError` for CUDA without CUDA).

    Several processes: initialises the default process group from the environment
    (``env://``) with backend ``"nccl"`` if ``device`` is CUDA (the device becomes
    ``cuda:LOCAL_RANK``, whatever index was asked for) and ``"gloo"`` otherwise. A process
    group that already exists (created by the caller) is adopted, not re-created.

    Idempotent: a second call returns the current info (and the device for ``device``).
    """
    global _current, _owns_group
    requested = resolve_device(device)
    if _current.enabled:
        return _current, _rank_device(requested, _current.local_rank)
    env = _torchrun_env()
    if dist.is_available() and dist.is_initialized():
        local = env[2] if env is not None else (_env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0)
        info = DistInfo(dist.get_rank(), dist.get_world_size(), local, str(dist.get_backend()))
    elif env is not None:
        if not dist.is_available():
            raise ConfigError("torch was built without torch.distributed: cannot run several processes")
        rank, world, local = env
        backend = "nccl" if requested.type == "cuda" else "gloo"
        _rank_device(requested, local)  # nccl: the current CUDA device before the group forms
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
        _owns_group = True
        info = DistInfo(rank, world, local, backend)
    else:
        info = _SINGLE
    if not info.enabled:
        _current = _SINGLE
        return _current, requested
    _current = info
    return info, _rank_device(requested, info.local_rank)


def shutdown_distributed() -> None:
    """Destroy the process group :func:`init_distributed` created (no-op with one process).

    Call it on every rank's NORMAL exit path, not in a ``finally``: a rank that fails
    should just raise and exit (torchrun then stops the others), since ranks stuck in a
    collective never reach a clean shutdown. DDP wrappers from :func:`wrap_ddp` that are
    still alive become unusable: their gradient reducers are released while the group
    still exists (a gloo reducer freed after the group was destroyed can hang the
    process). Afterwards :func:`get_dist` is the single-process info again.
    """
    global _current, _owns_group
    if _owns_group and dist.is_initialized():
        for wrapper in list(_ddp_wrappers):
            wrapper.reducer = None
            wrapper.logger = None
        _ddp_wrappers.clear()
        dist.destroy_process_group()
    _owns_group = False
    _current = _SINGLE


# ---------------------------------------------------------------------- collectives
def _comm_device() -> torch.device:
    """Where the backend communicates: the current CUDA device for nccl, else CPU."""
    if _current.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op with one process)."""
    if not _current.enabled:
        return
    if _current.backend == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks IN PLACE and return it (unchanged with one process).

    For small accumulators (loss sums, counts, histograms); per-image tables are
    synchronised with :func:`all_gather_rows`, not by summing dense ``N x d`` arrays.
    """
    if not _current.enabled:
        return tensor
    comm = _comm_device()
    buf = tensor if tensor.device == comm and tensor.is_contiguous() else tensor.detach().to(comm).contiguous()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    if buf is not tensor:
        tensor.copy_(buf)
    return tensor


def all_gather_rows(values: torch.Tensor) -> torch.Tensor:
    """Rows of every rank, concatenated in rank order: rank 0's, then rank 1's, ...

    ``values`` is ``(n_r, *rest)`` (at least 1-D); ``n_r`` may differ between ranks (0 included), while
    ``rest`` and the dtype must be the same. Sizes are gathered first, each rank's rows
    padded to the largest, all-gathered and stripped. With one process returns ``values``.

    This is how per-image tables are kept in sync: each rank gathers the indices and the
    new values of the rows it updated, and every rank writes all of them into its table.
    """
    if not _current.enabled:
        return values
    if values.dtype == torch.bool:  # not every backend gathers bool
        return all_gather_rows(values.to(torch.uint8)).bool()
    comm, world = _comm_device(), _current.world_size
    local = values.detach().to(comm).contiguous()
    sizes = [torch.zeros(1, dtype=torch.int64, device=comm) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], dtype=torch.int64, device=comm))
    counts = [int(s.item()) for s in sizes]
    biggest = max(counts)
    if biggest == 0:
        return values.new_empty((0, *values.shape[1:]))
    if local.shape[0] < biggest:
        pad = local.new_zeros((biggest - local.shape[0], *local.shape[1:]))
        local = torch.cat([local, pad])
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local)
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)]).to(values.device)


def broadcast_tensor(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Copy rank ``src``'s ``t`` into ``t`` on every rank (in place; same shape and dtype on all).

    Returns ``t``; with one process returns it unchanged.
    """
    if not _current.enabled:
        return t
    comm = _comm_device()
    buf = t if t.device == comm and t.is_contiguous() else t.detach().to(comm).contiguous()
    dist.broadcast(buf, src=src)
    if buf is not t:
        t.copy_(buf)
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled; returns ``obj`` with one process).

    For small Python objects (k-means centres, a chosen seed, a stop flag) exchanged
    between our own ranks only: unpickling is not safe for untrusted data.
    """
    if not _current.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def shard(n: int, rank: int | None = None, world: int | None = None) -> np.ndarray:
    """The rows ``0..n-1`` this rank handles in a per-image pass (``np.arange(n)`` with one process).

    Contiguous blocks: ``np.array_split(np.arange(n), world)[rank]`` (sizes differ by at
    most one; a rank may get none when ``n < world``). ``rank``/``world`` default to
    :func:`get_dist`'s. Gathering the ranks' results with :func:`all_gather_rows`
    gives the rows back in order ``0..n-1``.
    """
    rank = _current.rank if rank is None else int(rank)
    world = _current.world_size if world is None else int(world)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank {rank}, world {world}")
    return np.array_split(np.arange(int(n)), world)[rank]


def wrap_ddp(module: nn.Module, device: torch.device, **ddp_kwargs: Any) -> nn.Module:
    """``DistributedDataParallel(module)`` when distributed; the module itself with one process.

    ``module`` must already be on ``device`` (``device_ids=[device]`` for CUDA, none for
    CPU). DDP broadcasts rank 0's parameters and buffers at construction, then AVERAGES
    gradients over ranks during ``backward`` (every rank must run forward/backward at every
    step, even on an empty local batch). So the gradient of the mean over the global batch
    comes from a per-rank loss of ``sum(local per-image losses) * world_size / G`` with ``G``
    the step's global batch size (``loader.global_batch_sizes()[step]``), not the local
    mean; with one process that is the plain batch mean. ``ddp_kwargs`` go to DDP (e.g.
    ``find_unused_parameters=True``). Reach the wrapped module as ``.module``; the wrapper
    stops working at :func:`shutdown_distributed`.
    """
    if not _current.enabled:
        return module
    device = torch.device(device)
    device_ids = [device] if device.type == "cuda" else None
    wrapper = nn.parallel.DistributedDataParallel(module, device_ids=device_ids, **ddp_kwargs)
    _ddp_wrappers.add(wrapper)
    return wrapper


def quiet_non_main() -> None:
    """On ranks > 0: the cryohet logger shows warnings and errors only, and no progress bars.

    So only rank 0 prints progress and info. No-op on rank 0 and with one process.
    """
    if _current.is_main:
        return
    get_logger().setLevel(logging.WARNING)
    set_progress_enabled(False)


def average_gradients(parameters) -> None:
    """Mean of every parameter's gradient over ranks, in place (zeros where a rank had none:
    every rank takes part in the same collectives). No-op with one process. For methods
    that run a network more than once per step (which DDP's hooks do not allow)."""
    dist = get_dist()
    if not dist.enabled:
        return
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        all_reduce_sum_(p.grad)
        p.grad /= dist.world_size
