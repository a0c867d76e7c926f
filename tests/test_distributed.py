"""torch.distributed layer: rank-aware batches, single-process no-ops, a real 2-process gloo run."""

from __future__ import annotations

import copy
import logging
import os
import socket
import time

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from cryohet import console
from cryohet.data import BatchedParticleLoader, ParticleDataset, SortedBatchSampler
from cryohet.data.synthetic import write_synthetic_particles
from cryohet.errors import ConfigError, InputError
from cryohet.io.particles import load_particles
from cryohet.training import distributed as D

_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# ---------------------------------------------------------------------- sampler
def _todays_batches(order, b, shuffle, mode, seed, epoch, drop_last):
    """A copy of the single-process SortedBatchSampler.batches before rank/world_size existed."""
    order = np.asarray(order, dtype=np.int64)
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    n = len(order)
    rng = np.random.default_rng(seed + epoch)
    if not shuffle:
        rows = np.arange(n)
        out = [rows[i : i + b] for i in range(0, n, b)]
    elif mode == "random":
        perm = rng.permutation(n)
        out = [perm[i : i + b] for i in range(0, n, b)]
        out = [batch[np.argsort(position[batch], kind="stable")] for batch in out]
    else:
        chunks = [order[i : i + b] for i in range(0, n, b)]
        out = [chunks[j] for j in rng.permutation(len(chunks))]
    if drop_last:
        out = [batch for batch in out if len(batch) == b]
    return out


def _storage_order(n, seed=0):
    return np.random.default_rng(seed).permutation(n)  # a non-trivial storage order


MODES = [(False, "random"), (True, "random"), (True, "chunks")]
CASES = [(601, 16, 2), (601, 7, 3), (601, 50, 4), (64, 8, 4), (3, 4, 5), (1, 1, 2), (10, 3, 1), (7, 2, 8)]


@pytest.mark.parametrize(("shuffle", "mode"), MODES)
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("n", [601, 53, 5, 1])
def test_world_size_one_is_todays_sampler(shuffle, mode, drop_last, n):
    order = _storage_order(n)
    for b in (1, 4, 16):
        s = SortedBatchSampler(order, b, shuffle=shuffle, mode=mode, seed=3, drop_last=drop_last)
        for epoch in (0, 1, 5):
            s.set_epoch(epoch)
            ref = _todays_batches(order, b, shuffle, mode, 3, epoch, drop_last)
            got = s.batches()
            assert len(s) == len(got) == len(ref)
            assert all(g.dtype == r.dtype and np.array_equal(g, r) for g, r in zip(got, ref, strict=True))
            assert s.global_batch_sizes() == [len(r) for r in ref]


@pytest.mark.parametrize(("shuffle", "mode"), MODES)
@pytest.mark.parametrize(("n", "b", "world"), CASES)
def test_ranks_split_the_single_process_batches(shuffle, mode, n, b, world):
    order = _storage_order(n, seed=n)
    for drop_last in (False, True):
        samplers = [
            SortedBatchSampler(
                order, b, shuffle=shuffle, mode=mode, seed=7, drop_last=drop_last, rank=r, world_size=world
            )
            for r in range(world)
        ]
        big = SortedBatchSampler(order, b * world, shuffle=shuffle, mode=mode, seed=7, drop_last=drop_last)
        for epoch in (0, 2):
            for s in [*samplers, big]:
                s.set_epoch(epoch)
            per_rank = [s.batches() for s in samplers]
            ref = big.batches()
            n_steps = len(ref)
            assert all(len(s) == n_steps and len(p) == n_steps for s, p in zip(samplers, per_rank, strict=True))
            sizes = samplers[0].global_batch_sizes()
            assert sizes == [len(x) for x in ref] and all(s.global_batch_sizes() == sizes for s in samplers)
            for step in range(n_steps):
                local = [p[step] for p in per_rank]
                assert np.array_equal(np.concatenate(local), ref[step])  # union (in rank order) = big batch
                assert max(map(len, local)) <= b and max(map(len, local)) - min(map(len, local)) <= 1
            seen = np.concatenate([np.concatenate(p) for p in per_rank]) if n_steps else np.zeros(0, int)
            if drop_last:
                assert len(seen) == n_steps * b * world and len(np.unique(seen)) == len(seen)
            else:
                assert np.array_equal(np.sort(seen), np.arange(n))  # every image exactly once
            for s, p in zip(samplers, per_rank, strict=True):
                assert [list(x) for x in p] == list(s)  # __iter__ yields the same lists


def test_random_mode_local_batches_are_storage_sorted():
    order = _storage_order(601)
    position = np.argsort(order)
    for r in range(3):
        s = SortedBatchSampler(order, 16, shuffle=True, seed=1, rank=r, world_size=3)
        for batch in s.batches():
            assert np.all(np.diff(position[batch]) > 0)


def test_empty_local_batch_when_fewer_rows_than_ranks():
    # 5 rows, 2 per rank, 2 ranks: steps of 4 then 1 row; rank 1 is empty at the last step
    s0, s1 = (SortedBatchSampler(np.arange(5), 2, rank=r, world_size=2) for r in (0, 1))
    assert [len(x) for x in s0.batches()] == [2, 1] and [len(x) for x in s1.batches()] == [2, 0]
    assert s0.global_batch_sizes() == s1.global_batch_sizes() == [4, 1]
    assert list(s1)[-1] == []
    # fewer rows than ranks: one step, most ranks empty
    sizes = [len(SortedBatchSampler(np.arange(3), 4, rank=r, world_size=5).batches()[0]) for r in range(5)]
    assert sizes == [1, 1, 1, 0, 0]
    assert len(SortedBatchSampler(np.arange(3), 4, drop_last=True, rank=2, world_size=5)) == 0


def test_sampler_rejects_bad_rank():
    for rank, world in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="rank"):
            SortedBatchSampler(np.arange(4), 2, rank=rank, world_size=world)


def test_loader_with_ranks_reads_each_image_once(tmp_path):
    star, _ = write_synthetic_particles(tmp_path, n=13, box=12, apix=2.0, n_stacks=2, seed=1)
    meta = load_particles(star)
    for box in (12, 8):  # 8: the downsampling path, which cannot take zero images
        ds = ParticleDataset(meta, box=box, normalize=True)
        loaders = [BatchedParticleLoader(ds, 2, shuffle=True, seed=4, rank=r, world_size=4) for r in range(4)]
        rows = []
        for loader in loaders:
            loader.set_epoch(1)
            assert len(loader) == 2 and loader.global_batch_sizes() == [8, 5]
            batches = list(loader)
            assert len(batches) == 2
            for batch in batches:
                m = len(batch.index)
                assert batch.images.shape == (m, box, box) and batch.ctf_params.shape == (m, 9)
                assert batch.index.dtype == torch.int64 and batch.images.dtype == torch.float32
                rows.append(batch.index.numpy())
        assert [len(r) for r in rows[1::2]] == [2, 1, 1, 1]  # last step: 5 rows over 4 ranks
        assert np.array_equal(np.sort(np.concatenate(rows)), np.arange(13))
        empty = BatchedParticleLoader(ds, 1, rank=1, world_size=2)
        last = list(empty)[-1]  # 13 rows, 2 per step: rank 1's last batch is empty
        assert len(last.index) == 0 and last.images.shape == (0, box, box)
        assert last.rotations.shape == (0, 3, 3)


# ---------------------------------------------------------------------- one process
@pytest.fixture
def no_torchrun(monkeypatch):
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    D.shutdown_distributed()
    yield monkeypatch
    D.shutdown_distributed()


def test_single_process_is_a_no_op(no_torchrun):
    info, dev = D.init_distributed("cpu")
    assert info == D.DistInfo(0, 1, 0, None) == D.get_dist()
    assert info.is_main and not info.enabled and dev == torch.device("cpu")
    assert D.init_distributed("cpu")[0] is info  # idempotent
    t = torch.arange(6.0).reshape(3, 2)
    ref = t.clone()
    assert D.all_reduce_sum_(t) is t and torch.equal(t, ref)
    assert D.all_gather_rows(t) is t
    assert D.all_gather_rows(t[:0]).shape == (0, 2)
    assert D.broadcast_tensor(t) is t and torch.equal(t, ref)
    obj = {"centres": np.ones((3, 2))}
    assert D.broadcast_object(obj) is obj
    D.barrier()
    assert np.array_equal(D.shard(7), np.arange(7))
    assert np.array_equal(D.shard(7, rank=1, world=3), [3, 4])
    lin = torch.nn.Linear(2, 1)
    assert D.wrap_ddp(lin, dev) is lin
    level = console.get_logger().level
    D.quiet_non_main()
    assert console.get_logger().level == level and console._progress_enabled


def test_world_size_one_env_is_single_process(no_torchrun):
    for name, value in zip(_ENV, ("1", "0", "0", "127.0.0.1", "29500"), strict=True):
        no_torchrun.setenv(name, value)
    info, dev = D.init_distributed("cpu")
    assert not info.enabled and dev.type == "cpu"


def test_device_errors_are_one_line(no_torchrun):
    with pytest.raises(ConfigError, match="--device"):
        D.init_distributed("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            D.init_distributed("cuda")


def test_incomplete_torchrun_env_is_an_error(no_torchrun):
    no_torchrun.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set"):
        D.init_distributed("cpu")
    no_torchrun.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="not an integer"):
        D.init_distributed("cpu")
    assert not D.get_dist().enabled


def test_shard_covers_rows_in_order():
    for n, world in [(601, 2), (601, 7), (3, 5), (0, 2)]:
        parts = [D.shard(n, r, world) for r in range(world)]
        assert np.array_equal(np.concatenate(parts), np.arange(n))
    with pytest.raises(ValueError):
        D.shard(4, rank=2, world=2)


# ---------------------------------------------------------------------- two processes (gloo)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int) -> None:
    """One rank: env as torchrun sets it, then every primitive. Raises on failure."""
    torch.set_num_threads(1)
    os.environ.update(
        WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    info, dev = D.init_distributed("cpu")  # no try/finally: a failing rank must exit, not wait in shutdown
    assert info == D.DistInfo(rank, world, rank, "gloo") == D.get_dist() and info.enabled
    assert info.is_main == (rank == 0) and dev == torch.device("cpu")
    assert D.init_distributed("cpu")[0] is info

    # all_gather_rows: unequal row counts, zero rows on one rank, all empty
    for counts, dtype in [((3, 0), torch.float32), ((2, 5), torch.int64), ((0, 4), torch.float64)]:
        rows = [torch.arange(c * 2, dtype=dtype).reshape(c, 2) + 100 * r for r, c in enumerate(counts)]
        got = D.all_gather_rows(rows[rank])
        assert got.dtype == dtype and torch.equal(got, torch.cat(rows)), (counts, got)
    assert D.all_gather_rows(torch.zeros(0, 3)).shape == (0, 3)
    flags = D.all_gather_rows(torch.tensor([True, False][: 2 - rank]))
    assert flags.dtype == torch.bool and flags.tolist() == [True, False, True]

    obj = {"centres": np.arange(6.0).reshape(3, 2), "k": 3} if rank == 0 else None
    got = D.broadcast_object(obj)
    assert got["k"] == 3 and np.array_equal(got["centres"], np.arange(6.0).reshape(3, 2))
    assert D.broadcast_object("from 1" if rank == 1 else None, src=1) == "from 1"

    t = torch.tensor([rank + 1.0, 2.0])
    assert D.all_reduce_sum_(t) is t and torch.equal(t, torch.tensor([3.0, 4.0]))
    m = torch.tensor([[rank, 0], [7, 0]])
    D.all_reduce_sum_(m[:, 0])  # a non-contiguous view is reduced in place too
    assert torch.equal(m, torch.tensor([[1, 0], [14, 0]]))
    b = torch.full((2, 2), float(rank))
    assert D.broadcast_tensor(b) is b and torch.equal(b, torch.zeros(2, 2))
    D.barrier()
    assert np.array_equal(D.shard(5), [0, 1, 2] if rank == 0 else [3, 4])

    # the sampler's local batches, gathered, are the global batch (empty one included)
    sampler = SortedBatchSampler(np.arange(5), 2, shuffle=True, seed=3, rank=rank, world_size=world)
    big = SortedBatchSampler(np.arange(5), 4, shuffle=True, seed=3).batches()
    for step, local in enumerate(sampler.batches()):
        assert np.array_equal(D.all_gather_rows(torch.from_numpy(local)).numpy(), big[step])

    # DDP: rank 0's weights on both ranks, gradients averaged over ranks
    torch.manual_seed(10 + rank)  # different initial weights on purpose
    lin = torch.nn.Linear(3, 2)
    ddp = D.wrap_ddp(lin, dev)
    assert isinstance(ddp, torch.nn.parallel.DistributedDataParallel) and ddp.module is lin
    w = torch.cat([p.detach().flatten() for p in lin.parameters()])
    assert torch.equal(D.all_gather_rows(w[None])[0], D.all_gather_rows(w[None])[1])
    plain = copy.deepcopy(lin)
    x = torch.randn(4 + rank, 3)  # different data and sizes on each rank
    plain(x).square().sum().backward()
    ddp(x).square().sum().backward()
    local = torch.cat([p.grad.flatten() for p in plain.parameters()])
    grads = D.all_gather_rows(torch.cat([p.grad.flatten() for p in lin.parameters()])[None])
    assert torch.equal(grads[0], grads[1])  # identical on both ranks
    assert torch.allclose(grads[0], D.all_gather_rows(local[None]).mean(0), atol=1e-6)  # the average

    D.quiet_non_main()
    level = console.get_logger().level
    assert level == (logging.INFO if rank == 0 else logging.WARNING)
    assert console._progress_enabled == (rank == 0)
    D.shutdown_distributed()  # also releases the still-referenced DDP wrapper
    assert not D.get_dist().enabled


def test_two_process_gloo():
    world, timeout_s = 2, 60.0
    ctx = mp.start_processes(_worker, args=(world, _free_port()), nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not ctx.join(timeout=1.0):  # raises ProcessRaisedException / ProcessExitedException on failure
            if time.monotonic() > deadline:
                pytest.fail(f"2-process gloo test did not finish within {timeout_s:.0f} s (hang?)")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
                p.join(5)
    assert [p.exitcode for p in ctx.processes] == [0, 0]
