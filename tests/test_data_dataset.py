"""ParticleDataset: lazy reads equal direct reads, Fourier-crop downsampling, subsets,
normalisation, NaN/Inf detection, pickling for worker processes."""

from __future__ import annotations

import pickle
import warnings

import mrcfile
import numpy as np
import pytest
import torch

from cryohet.data import ParticleDataset, StackReader, train_val_split
from cryohet.data.synthetic import write_synthetic_particles
from cryohet.errors import InputError
from cryohet.io.metadata import CTFParams
from cryohet.io.mrc import write_stack
from cryohet.io.particles import load_particles

pytestmark = pytest.mark.filterwarnings("ignore:.*non-standard MRC header:UserWarning")


@pytest.fixture(scope="module")
def particle_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    star, _ = write_synthetic_particles(d, n=40, box=16, apix=1.5, n_stacks=3, seed=7)
    meta = load_particles(star)
    direct = np.concatenate([np.array(mrcfile.open(f).data) for f in meta.image_files])
    return meta, direct


def _numpy_fourier_crop(images: np.ndarray, new: int) -> np.ndarray:
    """Independent reference: centred numpy FFT, keep the central new x new, invert."""
    d = images.shape[-1]
    F = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1))), axes=(-2, -1))
    s = d // 2 - new // 2
    C = F[..., s : s + new, s : s + new]
    out = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(C, axes=(-2, -1))), axes=(-2, -1)).real
    return out * (new / d) ** 2


def test_lazy_reads_equal_direct_reads(particle_set):
    meta, direct = particle_set
    ds = ParticleDataset(meta)
    rows = np.random.default_rng(0).permutation(len(ds))[:17]
    batch = ds.get_batch(rows)
    np.testing.assert_array_equal(batch.images.numpy(), direct[rows])
    np.testing.assert_array_equal(batch.index.numpy(), rows)
    item = ds[13]
    np.testing.assert_array_equal(item.images[0].numpy(), direct[13])
    assert len(item) == 1 and item.has_poses and item.ctf_params is not None
    assert item.images[0].shape == (16, 16) and item.images[0].dtype == torch.float32
    assert item.ctf_params[0].shape == (9,) and item.ctf_params[0].dtype == torch.float32
    np.testing.assert_allclose(item.ctf_params[0].numpy(), meta.ctf.as_array()[13].astype(np.float32))
    assert item.rotations[0].shape == (3, 3) and item.shifts_A[0].shape == (2,)
    np.testing.assert_allclose(item.rotations[0].numpy(), meta.rotations[13], atol=1e-6)
    np.testing.assert_allclose(item.shifts_A[0].numpy(), meta.shifts_A[13], atol=1e-5)
    # duplicates and reading twice (pages were released after the first read)
    np.testing.assert_array_equal(ds.get_batch([5, 5, 0]).images.numpy(), direct[[5, 5, 0]])
    np.testing.assert_array_equal(ds.get_batch(rows).images.numpy(), direct[rows])


def test_fixture_stack_reads(shared_fixtures):
    with pytest.warns(UserWarning):
        meta = load_particles(shared_fixtures / "relion31.star")
    ds = ParticleDataset(meta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no map ID, zero machine stamp
        ref = np.array(mrcfile.open(shared_fixtures / "relion31.mrcs", permissive=True).data)
    np.testing.assert_array_equal(ds.get_batch([4, 0, 2]).images.numpy(), ref[[4, 0, 2]])


def test_downsampling_is_fourier_crop(particle_set):
    meta, direct = particle_set
    for new in (8, 7):
        ds = ParticleDataset(meta, box=new)
        imgs = ds.get_batch(np.arange(len(ds))).images.numpy()
        assert imgs.shape == (len(ds), new, new)
        np.testing.assert_allclose(imgs, _numpy_fourier_crop(direct.astype(np.float64), new), atol=1e-5)
        np.testing.assert_allclose(ds.apix, meta.apix * 16 / new)
        np.testing.assert_allclose(ds[3].shifts_A[0].numpy(), meta.shifts_A[3], atol=1e-5)  # Å unchanged
    with pytest.raises(InputError, match="cannot downsample"):
        ParticleDataset(meta, box=32)


def test_subsets_keep_original_indices(particle_set):
    meta, direct = particle_set
    ds = ParticleDataset(meta, indices=[30, 2, 11, 7])
    assert len(ds) == 4
    assert ds.meta.original_index.tolist() == [30, 2, 11, 7]
    np.testing.assert_array_equal(ds[0].images[0].numpy(), direct[30])
    sub = ds.subset([3, 1])
    assert sub.meta.original_index.tolist() == [7, 2]
    np.testing.assert_array_equal(sub.get_batch([0, 1]).images.numpy(), direct[[7, 2]])
    assert sub[0].index[0].item() == 0  # index is the row in *this* dataset


def test_with_poses_keeps_rows_images_and_flags(particle_set):
    """A dataset with other poses (a run's estimates): same rows, pixels, box, flags and std;
    the new poses, not the file's, in its batches; the original untouched."""
    from cryohet.geometry.rotations import random_rotations

    meta, direct = particle_set
    ds = ParticleDataset(meta, indices=[30, 2, 11, 7], box=12, normalize=True, invert=True)
    rot = random_rotations(4, 3)
    shifts_A = np.arange(8, dtype=np.float64).reshape(4, 2)
    posed = ds.with_poses(rot, shifts_A)
    assert (posed.box, posed.std, posed.invert, len(posed)) == (12, ds.std, True, 4)
    assert posed.meta.original_index.tolist() == [30, 2, 11, 7]
    a, b = ds.get_batch([0, 3]), posed.get_batch([0, 3])
    np.testing.assert_array_equal(a.images.numpy(), b.images.numpy())
    np.testing.assert_allclose(b.rotations.numpy(), rot[[0, 3]], atol=1e-6)
    np.testing.assert_allclose(b.shifts_A.numpy(), shifts_A[[0, 3]], atol=1e-6)
    np.testing.assert_array_equal(ds.meta.rotations, meta.subset([30, 2, 11, 7]).rotations)


def test_normalize_and_invert(particle_set):
    meta, direct = particle_set
    ds = ParticleDataset(meta, normalize=True, invert=True, std_sample=1000)
    centred = direct - direct.mean(axis=(1, 2), keepdims=True)
    assert ds.std == pytest.approx(float(centred.std()), rel=1e-4)  # sample covers all 40
    img = ds.get_batch(np.arange(5)).images.numpy()
    np.testing.assert_allclose(img, -centred[:5] / ds.std, atol=1e-5)
    small = ParticleDataset(meta, normalize=True, std_sample=10, seed=1)
    again = ParticleDataset(meta, normalize=True, std_sample=10, seed=1)
    assert small.std == again.std  # deterministic sample
    assert ParticleDataset(meta, normalize=True, std=2.0).std == 2.0


def test_nan_pixels_are_reported(tmp_path):
    imgs = np.zeros((6, 8, 8), np.float32)
    imgs[4, 1, 2] = np.nan
    imgs[4, 3, 3] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile notes the NaN when writing header stats
        write_stack(tmp_path / "bad.mrcs", imgs, 2.0)
    meta = load_particles(tmp_path / "bad.mrcs", apix=2.0)
    ds = ParticleDataset(meta)
    ds.get_batch([0, 1, 2])  # clean images read fine
    with pytest.raises(InputError, match=r"2 NaN/Inf pixels in 1 image\(s\) \(first: image 5") as ei:
        ds.get_batch([3, 4])
    assert str(tmp_path / "bad.mrcs") in str(ei.value)
    with pytest.raises(InputError, match="bad.mrcs: 2 NaN/Inf pixels"):
        ds.validate(chunk=2)
    assert ParticleDataset(meta, indices=[0, 1, 5]).validate() == 3


def test_dataset_pickles_without_the_memmap(particle_set):
    meta, direct = particle_set
    ds = ParticleDataset(meta)
    ds.get_batch(np.arange(len(ds)))  # opens every map
    blob = pickle.dumps(ds)
    assert len(blob) < direct.nbytes  # the stacks themselves are not pickled
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.get_batch([1, 39]).images.numpy(), direct[[1, 39]])


def test_no_ctf_no_poses(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.ones((3, 8, 8), np.float32), 2.0)
    ds = ParticleDataset(load_particles(tmp_path / "s.mrcs", apix=2.0))
    item = ds[0]
    assert item.ctf_params is None and item.rotations is None and item.shifts_A is None
    assert not ds.has_ctf and not ds.has_poses


def test_stack_reader_orders(particle_set):
    meta, direct = particle_set
    reader = StackReader(meta.image_files, release_pages=False)
    rows = np.array([39, 0, 20, 21, 22, 13])
    out = reader.read(meta.file_index[rows], meta.image_index[rows])
    np.testing.assert_array_equal(out, direct[rows])


def test_train_val_split():
    tr, va = train_val_split(1000, 0.1, seed=3)
    assert len(va) == 100 and len(tr) == 900
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).tolist() == list(range(1000))
    tr2, va2 = train_val_split(1000, 0.1, seed=3)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, train_val_split(1000, 0.1, seed=4)[1])
    assert len(train_val_split(5, 0.01)[1]) == 1
    assert CTFParams.field_names()[0] == "defocus_u_A"  # ctf column order the batches use


def test_unchecked_index_beyond_stack_is_an_input_error(tmp_path):
    import pandas as pd
    import starfile

    write_stack(tmp_path / "s.mrcs", np.zeros((3, 8, 8), np.float32), 2.0)
    df = pd.DataFrame({"rlnImageName": ["1@s.mrcs", "9@s.mrcs"], "rlnImagePixelSize": 2.0, "rlnImageSize": 8})
    starfile.write(df, tmp_path / "p.star")
    meta = load_particles(tmp_path / "p.star", stack_check="skip")
    ds = ParticleDataset(meta)
    ds.get_batch([0])
    with pytest.raises(InputError, match="s.mrcs: image 9 requested but the stack holds 3"):
        ds.get_batch([1, 0])
