"""Datasets: the real Fashion-MNIST files, splits, augmentation, missing-data errors (formats: test_data_formats)."""

import gzip
import struct

import numpy as np
import pytest
import torch

from actbench.data import (
    AUGMENTATIONS,
    DEBIAN_FASHION_MNIST,
    SPLIT_SEED,
    get_info,
    is_available,
    load_splits,
    read_idx,
    validation_indices,
)
from actbench.errors import DatasetNotFound, UnknownName

needs_fmnist = pytest.mark.skipif(not is_available("fashion-mnist"), reason="Fashion-MNIST files not installed")


@needs_fmnist
def test_real_fashion_mnist_idx_files():
    splits = load_splits("fashion-mnist", val_size=5000)
    assert splits.sizes == {"train": 55000, "val": 5000, "test": 10000}
    assert len(splits.train) + len(splits.val) == 60000
    for split in (splits.train, splits.val, splits.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (1, 28, 28)
        assert set(split.labels.unique().tolist()) == set(range(10))
    x, y, idx = next(splits.test.batches(512))
    assert x.dtype == torch.float32 and x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.99
    assert idx.tolist() == list(range(512))
    # balanced classes: 6000 per class in train+val, 1000 per class in test
    counts = torch.bincount(torch.cat([splits.train.labels, splits.val.labels]), minlength=10)
    assert counts.tolist() == [6000] * 10
    assert torch.bincount(splits.test.labels).tolist() == [1000] * 10


@needs_fmnist
def test_raw_idx_reader_matches_header():
    images = read_idx(DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert images.dtype == np.uint8 and labels.max() == 9


def test_idx_reader_rejects_corrupt_files(tmp_path):
    bad = tmp_path / "bad-idx1-ubyte.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(struct.pack(">HBB", 0, 0x08, 1) + struct.pack(">I", 10) + bytes(5))
    with pytest.raises(DatasetNotFound, match="expected 10"):
        read_idx(bad)
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DatasetNotFound, match="not an unsigned-byte IDX"):
        read_idx(wrong)


def test_validation_split_is_deterministic_and_disjoint():
    train_a, val_a = validation_indices(1000, 100)
    train_b, val_b = validation_indices(1000, 100)
    assert torch.equal(train_a, train_b) and torch.equal(val_a, val_b)
    assert len(set(train_a.tolist()) & set(val_a.tolist())) == 0
    assert sorted(train_a.tolist() + val_a.tolist()) == list(range(1000))
    assert SPLIT_SEED == 20240917  # changing it changes every track's validation set


@needs_fmnist
def test_train_subset_is_fixed_and_inside_train():
    a = load_splits("fashion-mnist", train_subset=300)
    b = load_splits("fashion-mnist", train_subset=300)
    assert len(a.train) == 300 and torch.equal(a.train.images, b.train.images)
    assert len(a.val) == 5000


def test_augmentation_flip_and_edge_padded_crop():
    aug = AUGMENTATIONS["cifar10"]
    x = torch.rand(64, 3, 32, 32)
    out = aug(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    # every output is a shifted crop of the (possibly flipped) edge-padded input: values come from the input
    for i in range(8):
        assert set(out[i].flatten().tolist()) <= set(x[i].flatten().tolist())
    assert not torch.equal(out, x)


def test_missing_cifar10_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTBENCH_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DatasetNotFound) as info:
        load_splits("cifar10", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert "cifar-10-batches-py" in message and str(tmp_path) in message and "https://" in message


def test_unknown_dataset_lists_choices():
    with pytest.raises(UnknownName, match="fashion-mnist"):
        get_info("svhn")
