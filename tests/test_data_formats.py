"""The loaders on the real on-disk formats, written here: MNIST IDX .gz, CIFAR-10 pickles, TinyImageNet folders.

Each format loads with the documented shapes, dtypes and label ranges, splits into train/val/test, and a
missing, truncated or foreign file raises ``DatasetCorrupt`` (or ``DatasetNotFound``) naming the file.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from actbench.data import TIN_CACHE_PREFIX, get_info, is_available, load_splits
from actbench.errors import DatasetCorrupt, DatasetNotFound
from actbench.synthetic import class_images, tinyimagenet_wnids, write_cifar10, write_mnist, write_tinyimagenet


@pytest.fixture(autouse=True)
def _isolated_data_dirs(tmp_path, monkeypatch):
    """Only the test's own folders are searched (no ./data, ~/.cache or $ACTBENCH_DATA of the machine)."""
    monkeypatch.delenv("ACTBENCH_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def _load(name: str, root: Path, val_size: int = 100, **kwargs):
    return load_splits(name, root, val_size=val_size, download=False, **kwargs)


def _check_splits(splits, name: str, train_total: int, test_total: int, val_size: int) -> None:
    info = get_info(name)
    assert splits.sizes == {"train": train_total - val_size, "val": val_size, "test": test_total}
    for split in (splits.train, splits.val, splits.test):
        assert split.images.dtype == torch.uint8 and tuple(split.images.shape[1:]) == info.in_shape
        assert split.labels.dtype == torch.int64
        assert int(split.labels.min()) >= 0 and int(split.labels.max()) < info.num_classes
    x, y, idx = next(splits.test.batches(64))
    assert x.dtype == torch.float32 and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert idx.tolist() == list(range(min(64, test_total))) and torch.equal(y, splits.test.labels[: len(y)])


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ---------------------------------------------------------------- MNIST


def test_mnist_idx_gz_files_load_with_documented_shapes(tmp_path):
    folder = write_mnist(tmp_path, n_train=400, n_test=60)
    assert sorted(p.name for p in folder.iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]  # fmt: skip
    splits = _load("mnist", tmp_path)
    _check_splits(splits, "mnist", 400, 60, 100)
    assert splits.source == str(folder)
    expected, labels = class_images(60, (28, 28), 10, seed=1)  # what write_mnist put in the test file
    assert torch.equal(splits.test.images[:, 0], torch.from_numpy(expected))
    assert torch.equal(splits.test.labels, torch.from_numpy(labels))
    assert is_available("mnist", tmp_path)


def test_mnist_in_torchvision_raw_layout_and_uncompressed(tmp_path):
    folder = write_mnist(tmp_path, n_train=300, n_test=20, folder="MNIST/raw")
    for gz in folder.glob("*.gz"):  # torchvision keeps both; the uncompressed files alone must do
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    _check_splits(_load("mnist", tmp_path), "mnist", 300, 20, 100)


def test_mnist_truncated_file_names_it(tmp_path):
    folder = write_mnist(tmp_path, n_train=300, n_test=20)
    _truncate(folder / "train-images-idx3-ubyte.gz")
    with pytest.raises(DatasetCorrupt, match="train-images-idx3-ubyte.gz"):
        _load("mnist", tmp_path)
    # a complete gzip of a shortened file: the header promises more bytes than there are
    data = gzip.decompress((write_mnist(tmp_path / "b", 300, 20) / "t10k-images-idx3-ubyte.gz").read_bytes())
    with gzip.open(tmp_path / "b" / "mnist" / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(data[:-100])
    with pytest.raises(DatasetCorrupt, match="expected 15680 for shape"):
        _load("mnist", tmp_path / "b")


def test_mnist_missing_file_is_listed(tmp_path):
    folder = write_mnist(tmp_path, n_train=300, n_test=20)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetCorrupt, match=r"t10k-labels-idx1-ubyte\[.gz\] missing"):
        _load("mnist", tmp_path)
    assert not is_available("mnist", tmp_path)


def test_mnist_mismatched_or_foreign_files(tmp_path):
    folder = write_mnist(tmp_path, n_train=300, n_test=20)
    other = write_mnist(tmp_path / "other", n_train=300, n_test=30)
    shutil.copy(other / "t10k-labels-idx1-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetCorrupt, match="20 test images but labels of shape"):
        _load("mnist", tmp_path)
    shutil.copy(other / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")  # images as labels
    with pytest.raises(DatasetCorrupt, match="labels"):
        _load("mnist", tmp_path)


def test_missing_mnist_says_where_to_put_files(tmp_path):
    with pytest.raises(DatasetNotFound) as info:
        _load("mnist", tmp_path / "empty")
    message = str(info.value)
    assert not isinstance(info.value, DatasetCorrupt)
    assert str(tmp_path / "empty" / "mnist") in message and "t10k-labels-idx1-ubyte" in message


# ---------------------------------------------------------------- CIFAR-10


def test_cifar10_python_batches_load_with_documented_shapes(tmp_path):
    folder = write_cifar10(tmp_path, n_train=500, n_test=50)
    assert sorted(p.name for p in folder.iterdir()) == [
        "batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
    ]  # fmt: skip
    splits = _load("cifar10", tmp_path)
    _check_splits(splits, "cifar10", 500, 50, 100)
    # channel order: each row of `data` is 1024 red, then 1024 green, then 1024 blue values
    with open(folder / "test_batch", "rb") as fh:
        row = pickle.load(fh, encoding="latin1")["data"][3]
    image = splits.test.images[3]
    assert torch.equal(image[0].flatten(), torch.from_numpy(row[:1024]))
    assert torch.equal(image[2].flatten(), torch.from_numpy(row[2048:]))
    # the five training batches are concatenated in order before the validation split is carved out
    with open(folder / "data_batch_5", "rb") as fh:
        last = pickle.load(fh, encoding="latin1")
    all_train = torch.cat([splits.train.images, splits.val.images])
    assert any(torch.equal(img, torch.from_numpy(last["data"][-1].reshape(3, 32, 32))) for img in all_train)


def test_cifar10_bytes_keys_and_missing_meta_are_accepted(tmp_path):
    folder = write_cifar10(tmp_path, n_train=300, n_test=20)
    path = folder / "data_batch_2"
    with open(path, "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    path.write_bytes(pickle.dumps({k.encode(): v for k, v in entry.items()}))  # as pickled with encoding="bytes"
    (folder / "batches.meta").unlink()
    _check_splits(_load("cifar10", tmp_path), "cifar10", 300, 20, 100)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong-shape"])
def test_cifar10_damaged_batch_names_the_file(tmp_path, damage):
    folder = write_cifar10(tmp_path, n_train=300, n_test=20)
    path = folder / "data_batch_3"
    if damage == "truncate":
        _truncate(path)
    elif damage == "garbage":
        path.write_bytes(b"not a pickle at all")
    else:
        path.write_bytes(pickle.dumps({"data": np.zeros((60, 1024), np.uint8), "labels": [0] * 60}))
    with pytest.raises(DatasetCorrupt, match="data_batch_3"):
        _load("cifar10", tmp_path)


def test_cifar10_missing_batch_or_cifar100_meta(tmp_path):
    folder = write_cifar10(tmp_path, n_train=300, n_test=20)
    (folder / "data_batch_2").unlink()
    with pytest.raises(DatasetCorrupt, match="data_batch_2 missing"):
        _load("cifar10", tmp_path)
    assert not is_available("cifar10", tmp_path)
    folder = write_cifar10(tmp_path / "b", n_train=300, n_test=20)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(100)]}))
    with pytest.raises(DatasetCorrupt, match="CIFAR-100"):
        _load("cifar10", tmp_path / "b")


def test_cifar10_out_of_range_label(tmp_path):
    folder = write_cifar10(tmp_path, n_train=300, n_test=20)
    with open(folder / "test_batch", "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    entry["labels"][0] = 10
    (folder / "test_batch").write_bytes(pickle.dumps(entry))
    with pytest.raises(DatasetCorrupt, match=r"test_batch: labels range over \[0, 10\]"):
        _load("cifar10", tmp_path)


# ---------------------------------------------------------------- TinyImageNet


@pytest.fixture(scope="module")
def tin_source(tmp_path_factory) -> Path:
    """A complete TinyImageNet layout: 200 classes, 3 training and 1 validation image each."""
    root = tmp_path_factory.mktemp("tin")
    write_tinyimagenet(root, train_per_class=3, val_per_class=1)
    return root / "tiny-imagenet-200"


@pytest.fixture
def tin(tin_source, tmp_path) -> Path:
    """A private copy of the layout (tests damage it); returns the data folder holding tiny-imagenet-200/."""
    shutil.copytree(tin_source, tmp_path / "data" / "tiny-imagenet-200")
    return tmp_path / "data"


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_tinyimagenet_folder_layout_loads_with_documented_shapes(tin):
    root = tin / "tiny-imagenet-200"
    before = _listing(root)
    splits = _load("tinyimagenet", tin, val_size=100)
    _check_splits(splits, "tinyimagenet", 600, 200, 100)
    # labels are the sorted wnids; each val image carries the class of its annotation line
    order = sorted(tinyimagenet_wnids())
    lines = (root / "val" / "val_annotations.txt").read_text().splitlines()
    expected = [order.index(line.split("\t")[1]) for line in lines]
    assert sorted(splits.test.labels.tolist()) == sorted(expected)
    # pixels: a decoded image is its JPEG, channels first
    name, wnid = lines[0].split("\t")[:2]
    with Image.open(root / "val" / "images" / name) as img:
        pixels = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
    matches = [i for i in range(len(splits.test)) if torch.equal(splits.test.images[i], pixels)]
    assert matches and all(int(splits.test.labels[i]) == order.index(wnid) for i in matches)
    # nothing in the dataset was moved or rewritten; only the decode cache was added
    after = _listing(root)
    added = set(after) - set(before)
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(added) == 1 and next(iter(added)).startswith(TIN_CACHE_PREFIX)


def test_tinyimagenet_sorted_val_folders_give_the_same_test_split(tin, tmp_path):
    reference = _load("tinyimagenet", tin, val_size=100).test
    other = tmp_path / "sorted"
    shutil.copytree(tin, other)
    val = other / "tiny-imagenet-200" / "val"
    for line in (val / "val_annotations.txt").read_text().splitlines():  # the ACERT repository's layout
        name, wnid = line.split("\t")[:2]
        (val / wnid).mkdir(exist_ok=True)
        shutil.move(val / "images" / name, val / wnid / name)
    (val / "images").rmdir()
    (val / "val_annotations.txt").unlink()
    for cache in (other / "tiny-imagenet-200").glob(f"{TIN_CACHE_PREFIX}*"):
        cache.unlink()
    test = _load("tinyimagenet", other, val_size=100).test
    def key(split):
        return sorted((int(label), image.numpy().tobytes()) for image, label in
                      zip(split.images, split.labels, strict=True))

    assert key(test) == key(reference)


def test_tinyimagenet_cache_is_reused_invalidated_and_rebuilt(tin, monkeypatch):
    import actbench.data as data

    root = tin / "tiny-imagenet-200"
    first = _load("tinyimagenet", tin)
    monkeypatch.setattr(data, "_decode", lambda *a: pytest.fail("decoded although the cache is valid"))
    second = _load("tinyimagenet", tin)
    assert torch.equal(first.train.images, second.train.images)
    monkeypatch.undo()
    # a changed image changes the fingerprint: decoded again, old cache replaced
    wnid = sorted(tinyimagenet_wnids())[0]
    target = root / "train" / wnid / "images" / f"{wnid}_0.JPEG"
    Image.new("RGB", (64, 64), (255, 0, 0)).save(target, "JPEG")
    third = _load("tinyimagenet", tin)
    assert not torch.equal(torch.cat([first.train.images, first.val.images]).sum(0),
                           torch.cat([third.train.images, third.val.images]).sum(0))  # fmt: skip
    caches = list(root.glob(f"{TIN_CACHE_PREFIX}*"))
    assert len(caches) == 1
    # a damaged cache is ignored and rewritten
    caches[0].write_bytes(b"garbage")
    fourth = _load("tinyimagenet", tin)
    assert torch.equal(third.test.images, fourth.test.images) and caches[0].stat().st_size > 1000


def test_tinyimagenet_read_only_folder_caches_in_home(tin, tmp_path, monkeypatch):
    import actbench.store as store

    root = tin / "tiny-imagenet-200"
    write = store.atomic_write

    def read_only_dataset(path, fn):
        if Path(path).parent == root:
            raise PermissionError(f"read-only: {path}")
        write(path, fn)

    monkeypatch.setattr(store, "atomic_write", read_only_dataset)
    first = _load("tinyimagenet", tin)
    assert not list(root.glob(f"{TIN_CACHE_PREFIX}*"))
    cached = list((tmp_path / "home" / ".cache" / "actbench" / "decoded").glob(f"{TIN_CACHE_PREFIX}*.pt"))
    assert len(cached) == 1
    import actbench.data as data

    monkeypatch.setattr(data, "_decode", lambda *a: pytest.fail("decoded although the home cache is valid"))
    assert torch.equal(_load("tinyimagenet", tin).train.images, first.train.images)


def test_tinyimagenet_truncated_jpeg_names_the_file(tin):
    wnid = sorted(tinyimagenet_wnids())[5]
    path = tin / "tiny-imagenet-200" / "train" / wnid / "images" / f"{wnid}_1.JPEG"
    _truncate(path, 0.3)
    with pytest.raises(DatasetCorrupt, match=f"{wnid}_1.JPEG"):
        _load("tinyimagenet", tin)


@pytest.mark.parametrize("damage", ["no-annotations", "missing-image", "bad-wnid", "wnids-short", "empty-class",
                                    "wrong-size"])
def test_tinyimagenet_layout_errors(tin, damage):
    root = tin / "tiny-imagenet-200"
    ann = root / "val" / "val_annotations.txt"
    wnid = sorted(tinyimagenet_wnids())[7]
    if damage == "no-annotations":
        ann.unlink()
        match = "val_annotations.txt"
    elif damage == "missing-image":
        (root / "val" / "images" / "val_3.JPEG").unlink()
        match = "val_3.JPEG is listed"
    elif damage == "bad-wnid":
        ann.write_text(ann.read_text().replace("\tn", "\tx", 1))
        match = "line 1"
    elif damage == "wnids-short":
        lines = (root / "wnids.txt").read_text().splitlines()
        (root / "wnids.txt").write_text("\n".join(lines[:-1]) + "\n")
        match = "names 199 classes, expected 200"
    elif damage == "empty-class":
        shutil.rmtree(root / "train" / wnid / "images")
        match = f"{wnid} has no images"
    else:
        Image.new("RGB", (56, 56)).save(root / "train" / wnid / "images" / f"{wnid}_0.JPEG", "JPEG")
        match = "56x56 pixels, expected 64x64"
    with pytest.raises(DatasetCorrupt, match=match):
        _load("tinyimagenet", tin)


def test_missing_tinyimagenet_says_where_to_put_files(tmp_path):
    with pytest.raises(DatasetNotFound) as info:
        _load("tinyimagenet", tmp_path / "empty")
    assert "tiny-imagenet-200" in str(info.value) and "cs231n" in str(info.value)


# ---------------------------------------------------------------- batches on a device


def test_batches_and_tensors_on_a_device_match_the_host_path(tmp_path):
    write_cifar10(tmp_path, n_train=300, n_test=20)
    splits = _load("cifar10", tmp_path, val_size=50)
    x, y = splits.test.tensors(torch.arange(10))
    x64, y64 = splits.test.tensors(torch.arange(10), device="cpu", dtype=torch.float64)
    assert x64.dtype == torch.float64 and torch.equal(x64, x.double()) and torch.equal(y64, y)
    host = list(splits.train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(3), train=True))
    moved = list(splits.train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(3), train=True,
                                      device=torch.device("cpu")))  # fmt: skip
    assert len(host) == len(moved) == 4
    for (xa, ya, ia), (xb, yb, ib) in zip(host, moved, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
    # augmentation changed the training images (flip + crop) but not the labels
    first = host[0]
    assert not torch.equal(first[0], splits.train.tensors(first[2])[0]) and torch.equal(
        first[1], splits.train.labels[first[2]])
