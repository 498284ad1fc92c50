"""Dataset registry with train / validation / test splits, all as in-memory uint8 tensors.

Images reach the model as raw [0,1] float tensors (the model normalises, DESIGN §4). The validation
split is carved from the official training set with a fixed seed (``SPLIT_SEED``), independent of the
run seed, so every run of a track sees the same validation and training samples. Batches carry the
sample's index in its split so methods can cache per-sample state (ACERT warm starts).

Where files are looked for, in order: ``--data-dir``, ``$ACTBENCH_DATA``, ``./data``,
``~/.cache/actbench/data`` and (Fashion-MNIST) Debian's ``/usr/share/datasets/fashion-mnist``.
When nothing is found and ``download`` is on, torchvision downloads into the first of those folders;
offline, :class:`DatasetNotFound` says which files to put where.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from actbench.errors import DatasetNotFound, InvalidConfig, UnknownName

SPLIT_SEED = 20240917
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a registered dataset."""

    name: str
    title: str
    num_classes: int
    in_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int
    test_size: int
    folder: str  # expected sub-folder of the data dir
    url: str
    how_to_get: str


@dataclass
class Split:
    """One split: uint8 images ``[N, C, H, W]``, int64 labels ``[N]``; yields float [0,1] batches."""

    images: torch.Tensor
    labels: torch.Tensor
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, count: int | None) -> Split:
        """The first ``count`` samples (deterministic), or self when ``count`` is None."""
        if count is None or count >= len(self):
            return self
        return Split(self.images[:count], self.labels[:count], self.augment)

    def tensors(self, indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float [0,1] images and labels (all, or the given indices), without augmentation."""
        images = self.images if indices is None else self.images[indices]
        labels = self.labels if indices is None else self.labels[indices]
        return images.float().div_(255.0), labels

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
        train: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y, index)`` batches; ``train=True`` applies the dataset's augmentation."""
        if batch_size < 1:
            raise InvalidConfig(f"batch size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x, y = self.tensors(idx)
            if train and self.augment is not None:
                x = self.augment(x, generator if generator is not None else torch.default_generator)
            yield x, y, idx

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)


@dataclass
class Splits:
    """Train / validation / test splits of one dataset, plus the facts needed to build a model."""

    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    source: str
    sizes: dict[str, int] = field(default_factory=dict)


def _flip_and_crop(padding: int) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """Random horizontal flip, then random crop back to size after ``padding`` pixels of edge padding."""

    def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        flip = torch.rand(b, generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        padded = torch.nn.functional.pad(x, (padding,) * 4, mode="replicate")
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=gen)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=gen)
        rows = (dy.view(-1, 1) + torch.arange(h)).view(b, 1, h, 1).expand(b, x.shape[1], h, w + 2 * padding)
        out = padded.gather(2, rows)
        cols = (dx.view(-1, 1) + torch.arange(w)).view(b, 1, 1, w).expand(b, x.shape[1], h, w)
        return out.gather(3, cols)

    return augment


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "Fashion-MNIST", 10, (1, 28, 28), (0.0,), (1.0,), 60000, 10000, "fashion-mnist",
        "https://github.com/zalandoresearch/fashion-mnist",
        "the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz); on Debian/Ubuntu: "
        "`apt-get install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist",
    ),
    "mnist": DatasetInfo(
        "mnist", "MNIST", 10, (1, 28, 28), (0.0,), (1.0,), 60000, 10000, "mnist",
        "https://yann.lecun.com/exdb/mnist/",
        "the four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])",
    ),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010),
        50000, 10000, "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "the extracted python version of CIFAR-10 (folder cifar-10-batches-py with data_batch_1..5 "
        "and test_batch)",
    ),
    "tinyimagenet": DatasetInfo(
        "tinyimagenet", "TinyImageNet", 200, (3, 64, 64), (0.4802, 0.4481, 0.3975),
        (0.2302, 0.2265, 0.2262), 100000, 10000, "tiny-imagenet-200",
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        "the extracted tiny-imagenet-200 folder (train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
        "val/val_annotations.txt); the validation images are reorganised into class folders automatically "
        "and serve as the test split",
    ),
}
AUGMENTATIONS = {"cifar10": _flip_and_crop(2), "tinyimagenet": _flip_and_crop(4)}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def get_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise UnknownName("dataset", name, list(DATASETS))
    return DATASETS[name]


def candidate_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for dataset files, in order."""
    dirs = []
    if data_dir:
        dirs.append(Path(data_dir))
    if os.environ.get("ACTBENCH_DATA"):
        dirs.append(Path(os.environ["ACTBENCH_DATA"]))
    dirs += [Path("data"), Path.home() / ".cache" / "actbench" / "data"]
    return dirs


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetNotFound(f"cannot read IDX file {path}: {exc}") from exc
    if len(data) < 4:
        raise DatasetNotFound(f"IDX file {path} is truncated")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DatasetNotFound(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetNotFound(f"IDX file {path} has {body.size} bytes of data, expected {int(np.prod(dims))}")
    return body.reshape(dims)


def _find_idx_folder(folders: list[Path]) -> Path | None:
    for folder in folders:
        if all(_idx_path(folder, stem) is not None for stem in IDX_FILES.values()):
            return folder
    return None


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_folders(info: DatasetInfo, data_dir: str | Path | None) -> list[Path]:
    tv_name = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}[info.name]
    folders = []
    for base in candidate_dirs(data_dir):
        folders += [base, base / info.folder, base / tv_name / "raw"]
    if info.name == "fashion-mnist":
        folders.append(DEBIAN_FASHION_MNIST)
    return folders


def _load_idx_dataset(info: DatasetInfo, data_dir: str | Path | None, download: bool):
    folders = _idx_folders(info, data_dir)
    folder = _find_idx_folder(folders)
    if folder is None and download:
        _torchvision_download(info, data_dir)
        folder = _find_idx_folder(folders)
    if folder is None:
        raise _not_found(info, data_dir)
    arrays = {key: read_idx(_idx_path(folder, stem)) for key, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        if arrays[f"{split}_images"].shape[0] != arrays[f"{split}_labels"].shape[0]:
            raise DatasetNotFound(f"{folder}: {split} images and labels have different lengths")
    to_images = lambda a: torch.from_numpy(a.copy()).unsqueeze(1)  # noqa: E731
    to_labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return (
        to_images(arrays["train_images"]), to_labels(arrays["train_labels"]),
        to_images(arrays["test_images"]), to_labels(arrays["test_labels"]), str(folder),
    )  # fmt: skip


# ---------------------------------------------------------------- CIFAR-10


def _load_cifar10(info: DatasetInfo, data_dir: str | Path | None, download: bool):
    import pickle

    def find() -> Path | None:
        for base in candidate_dirs(data_dir):
            folder = base / info.folder
            if (folder / "test_batch").is_file() and (folder / "data_batch_5").is_file():
                return folder
        return None

    folder = find()
    if folder is None and download:
        _torchvision_download(info, data_dir)
        folder = find()
    if folder is None:
        raise _not_found(info, data_dir)

    def read(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for name in names:
            with open(folder / name, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += list(entry["labels"])
        return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)

    train_x, train_y = read([f"data_batch_{i}" for i in range(1, 6)])
    test_x, test_y = read(["test_batch"])
    return train_x, train_y, test_x, test_y, str(folder)


# ---------------------------------------------------------------- TinyImageNet


def reorganise_tinyimagenet_val(root: Path) -> None:
    """Move ``val/images/*.JPEG`` into ``val/<wnid>/`` class folders using ``val_annotations.txt``."""
    val = root / "val"
    ann = val / "val_annotations.txt"
    images = val / "images"
    if not ann.is_file() or not images.is_dir():
        return
    for line in ann.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        src = images / parts[0]
        if src.is_file():
            (val / parts[1]).mkdir(exist_ok=True)
            shutil.move(str(src), str(val / parts[1] / parts[0]))
    if not any(images.iterdir()):
        images.rmdir()


def _load_image_folder(folder: Path, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    images, labels = [], []
    for label, wnid in enumerate(classes):
        class_dir = folder / wnid
        files = sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        for path in files:
            with Image.open(path) as img:
                images.append(np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))
            labels.append(label)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)


def _load_tinyimagenet(info: DatasetInfo, data_dir: str | Path | None, download: bool):
    root = next((b / info.folder for b in candidate_dirs(data_dir) if (b / info.folder / "train").is_dir()), None)
    if root is None:
        raise _not_found(info, data_dir)
    cache = root / "actbench-cache.pt"
    if cache.is_file():
        blob = torch.load(cache)
        return blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"], str(root)
    reorganise_tinyimagenet_val(root)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if len(classes) != info.num_classes:
        raise DatasetNotFound(f"{root}/train has {len(classes)} class folders, expected {info.num_classes}")
    train_x, train_y = _load_image_folder(root / "train", classes)
    test_x, test_y = _load_image_folder(root / "val", classes)
    torch.save({"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}, cache)
    return train_x, train_y, test_x, test_y, str(root)


# ---------------------------------------------------------------- download and errors


def _torchvision_download(info: DatasetInfo, data_dir: str | Path | None) -> None:
    """Try a torchvision download into the first candidate folder; stay quiet when offline."""
    import torchvision

    root = candidate_dirs(data_dir)[0]
    target = root / info.folder if info.name in ("fashion-mnist", "mnist") else root
    cls = {"fashion-mnist": torchvision.datasets.FashionMNIST, "mnist": torchvision.datasets.MNIST,
           "cifar10": torchvision.datasets.CIFAR10}.get(info.name)  # fmt: skip
    if cls is None:
        return
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)
    try:
        for train in (True, False):
            cls(str(target), train=train, download=True)
        if info.name in ("fashion-mnist", "mnist"):
            raw = target / cls.__name__ / "raw"
            for file in raw.glob("*-ubyte*"):
                shutil.copy(file, target / file.name) if not (target / file.name).exists() else None
    except Exception:  # noqa: BLE001 - any network failure means "not available offline"
        return
    finally:
        socket.setdefaulttimeout(previous)


def _not_found(info: DatasetInfo, data_dir: str | Path | None) -> DatasetNotFound:
    where = candidate_dirs(data_dir)[0] / info.folder
    return DatasetNotFound(
        f"{info.title} is not available offline. Put {info.how_to_get} into {where} "
        f"(or pass --data-dir / set ACTBENCH_DATA to a folder containing {info.folder}/). "
        f"Get the files from {info.url}."
    )


_LOADERS = {
    "fashion-mnist": _load_idx_dataset,
    "mnist": _load_idx_dataset,
    "cifar10": _load_cifar10,
    "tinyimagenet": _load_tinyimagenet,
}


def is_available(name: str, data_dir: str | Path | None = None) -> bool:
    """Whether the dataset's files are on disk (no download attempted)."""
    info = get_info(name)
    if info.name in ("fashion-mnist", "mnist"):
        return _find_idx_folder(_idx_folders(info, data_dir)) is not None
    if info.name == "cifar10":
        return any((b / info.folder / "test_batch").is_file() for b in candidate_dirs(data_dir))
    return any((b / info.folder / "train").is_dir() for b in candidate_dirs(data_dir))


def validation_indices(train_size: int, val_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed, disjoint ``(train_idx, val_idx)`` of the official training set (seed ``SPLIT_SEED``)."""
    if not 0 <= val_size < train_size:
        raise InvalidConfig(f"validation size {val_size} must be in [0, {train_size})")
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    perm = torch.randperm(train_size, generator=gen)
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def load_splits(
    name: str,
    data_dir: str | Path | None = None,
    val_size: int = 5000,
    train_subset: int | None = None,
    download: bool = True,
    augment: bool = True,
) -> Splits:
    """Load a dataset as train / validation / test splits of uint8 tensors.

    ``train_subset`` keeps a fixed random subset of the training split (for quick presets and tests).
    """
    info = get_info(name)
    train_x, train_y, test_x, test_y, source = _LOADERS[name](info, data_dir, download)
    train_idx, val_idx = validation_indices(train_x.shape[0], val_size)
    if train_subset is not None:
        if train_subset < 1:
            raise InvalidConfig(f"train subset must be >= 1, got {train_subset}")
        gen = torch.Generator().manual_seed(SPLIT_SEED + 1)
        keep = torch.randperm(train_idx.numel(), generator=gen)[:train_subset]
        train_idx = train_idx[keep.sort().values]
    aug = AUGMENTATIONS.get(name) if augment else None
    splits = Splits(
        info=info,
        train=Split(train_x[train_idx].contiguous(), train_y[train_idx].contiguous(), aug),
        val=Split(train_x[val_idx].contiguous(), train_y[val_idx].contiguous()),
        test=Split(test_x.contiguous(), test_y.contiguous()),
        source=source,
    )
    splits.sizes = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
    from actbench.splitguard import guard

    return guard(splits)  # a split sealed by `actbench tune`'s search phase is handed out unreadable
