"""Batched loading: sampler modes, epochs, worker processes, downsampled copies."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import starfile

from cryohet.data import BatchedParticleLoader, ParticleDataset, SortedBatchSampler, downsample_particles
from cryohet.data.batch import ParticleBatch
from cryohet.data.synthetic import write_synthetic_particles
from cryohet.errors import InputError
from cryohet.io.particles import load_particles


@pytest.fixture(scope="module")
def particle_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("loader")
    star, _ = write_synthetic_particles(d, n=53, box=12, apix=2.0, n_stacks=2, seed=1)
    meta = load_particles(star)
    direct = np.concatenate([np.array(mrcfile.open(f).data) for f in meta.image_files])
    return meta, direct


def _collect(loader):
    rows, imgs = [], []
    for batch in loader:
        assert isinstance(batch, ParticleBatch)
        b = len(batch.index)
        assert batch.images.shape == (b, 12, 12) and batch.ctf_params.shape == (b, 9)
        assert batch.rotations.shape == (b, 3, 3) and batch.shifts_A.shape == (b, 2)
        rows.append(batch.index.numpy())
        imgs.append(batch.images.numpy())
    return np.concatenate(rows), np.concatenate(imgs)


def test_sequential_loader(particle_set):
    meta, direct = particle_set
    loader = BatchedParticleLoader(ParticleDataset(meta), batch_size=10)
    assert len(loader) == 6
    rows, imgs = _collect(loader)
    np.testing.assert_array_equal(rows, np.arange(53))
    np.testing.assert_array_equal(imgs, direct)


def test_shuffled_batches_cover_everything_once(particle_set):
    meta, direct = particle_set
    ds = ParticleDataset(meta)
    loader = BatchedParticleLoader(ds, batch_size=8, shuffle=True, seed=5)
    loader.set_epoch(0)
    rows0, imgs0 = _collect(loader)
    assert sorted(rows0.tolist()) == list(range(53))
    np.testing.assert_array_equal(imgs0, direct[rows0])
    loader.set_epoch(1)
    rows1, _ = _collect(loader)
    assert not np.array_equal(rows0, rows1)
    loader.set_epoch(0)
    np.testing.assert_array_equal(_collect(loader)[0], rows0)  # deterministic per epoch
    for batch in SortedBatchSampler(ds.storage_order(), 8, shuffle=True, seed=5).batches():
        assert np.all(np.diff(batch) > 0)  # sorted on disk within each batch


def test_chunk_mode_reads_contiguous_blocks(particle_set):
    meta, _ = particle_set
    ds = ParticleDataset(meta)
    sampler = SortedBatchSampler(ds.storage_order(), 10, shuffle=True, mode="chunks", seed=2)
    batches = sampler.batches()
    assert sorted(np.concatenate(batches).tolist()) == list(range(53))
    for b in batches:
        assert np.all(np.diff(b) == 1)
    assert [b[0] for b in batches] != sorted(b[0] for b in batches)  # block order shuffled
    assert len(SortedBatchSampler(ds.storage_order(), 10, drop_last=True)) == 5


def test_worker_processes_read_the_same(particle_set):
    meta, direct = particle_set
    ds = ParticleDataset(meta, box=8)
    ds.get_batch([0])  # maps opened in the parent before forking
    ref_rows, ref = _collect_box(BatchedParticleLoader(ds, batch_size=16, shuffle=True, seed=3))
    rows, imgs = _collect_box(BatchedParticleLoader(ds, batch_size=16, shuffle=True, seed=3, num_workers=2))
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_allclose(imgs, ref, atol=1e-6)


def _collect_box(loader):
    rows, imgs = [], []
    for batch in loader:
        rows.append(batch.index.numpy())
        imgs.append(batch.images.numpy())
    return np.concatenate(rows), np.concatenate(imgs)


def test_downsample_particles_streams_and_keeps_metadata(particle_set, tmp_path):
    meta, direct = particle_set
    stack, star, new = downsample_particles(meta, 6, tmp_path / "out", chunk=7)
    with mrcfile.open(stack) as m:
        data = np.array(m.data)
        assert m.voxel_size.x == pytest.approx(4.0)
        assert m.header.dmax == pytest.approx(data.max())
    ref = ParticleDataset(meta, box=6).get_batch(np.arange(53)).images.numpy()
    np.testing.assert_allclose(data, ref, atol=1e-6)
    back = load_particles(star)
    np.testing.assert_allclose(back.apix, 4.0)
    np.testing.assert_allclose(back.shifts_A, meta.shifts_A, atol=1e-4)
    np.testing.assert_allclose(back.rotations, meta.rotations, atol=1e-5)
    np.testing.assert_allclose(back.ctf.as_array(), meta.ctf.as_array(), atol=1e-3)
    tables = starfile.read(star)
    assert tables["optics"]["rlnImageSize"].tolist() == [6]
    assert tables["particles"]["rlnImageName"].iloc[0] == "000001@particles.6.mrcs"
    assert new.image_files == [stack.resolve()]
    # same result with another chunk size; refuses to overwrite its own input
    stack2, _, _ = downsample_particles(meta, 6, tmp_path / "out2", chunk=1000)
    np.testing.assert_array_equal(np.array(mrcfile.open(stack2).data), data)
    with pytest.raises(InputError, match="would overwrite the input"):
        downsample_particles(back, 6, tmp_path / "out")
