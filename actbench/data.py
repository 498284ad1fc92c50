"""Dataset registry with train / validation / test splits, all as in-memory uint8 tensors.

Images reach the model as raw [0,1] float tensors (the model normalises, DESIGN §4). The validation
split is carved from the official training set with a fixed seed (``SPLIT_SEED``), independent of the
run seed, so every run of a track sees the same validation and training samples. Batches carry the
sample's index in its split so methods can cache per-sample state (ACERT warm starts).

Where files are looked for, in order: ``--data-dir``, ``$ACTBENCH_DATA``, ``./data``,
``~/.cache/actbench/data`` and (Fashion-MNIST) Debian's ``/usr/share/datasets/fashion-mnist``.
When nothing is found and ``download`` is on, torchvision downloads into the first of those folders;
offline, :class:`DatasetNotFound` says which files to put where. Files that are there but incomplete,
truncated or of the wrong shape raise :class:`DatasetCorrupt` naming the file. Loaders never modify the
dataset folder (TinyImageNet's decoded images are cached beside it only when it is writable).

On a GPU, batches leave the host once, as uint8 through pinned memory; conversion to [0,1] floats and
augmentation run on the device, with random draws from the CPU generator so CPU and GPU runs of one seed
see the same batches.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import socket
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from actbench.device import to_device
from actbench.errors import DatasetCorrupt, DatasetNotFound, InvalidConfig, UnknownName

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

    def tensors(self, indices: torch.Tensor | None = None, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """[0,1] images (float32 values, cast to ``dtype``) and labels, all or ``indices``, no augmentation.

        With ``device`` the uint8 images travel once (pinned, non-blocking) and are converted there.
        """
        images = self.images if indices is None else self.images[indices]
        labels = self.labels if indices is None else self.labels[indices]
        if device is not None:
            images, labels = to_device(images, device), to_device(labels, device)
        x = images.float().div_(255.0)
        return (x if dtype == torch.float32 else x.to(dtype)), labels

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
        train: bool = False, device: torch.device | str | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y, index)`` batches, ``x`` and ``y`` on ``device`` (default: the CPU), ``index`` on
        the CPU; ``train=True`` applies the dataset's augmentation (on the device)."""
        if batch_size < 1:
            raise InvalidConfig(f"batch size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x, y = self.tensors(idx, device)
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
    """Random horizontal flip, then random crop back to size after ``padding`` pixels of edge padding.

    The random draws come from the (CPU) generator and move to ``x``'s device, so a batch is augmented
    the same way on every device. (A plain ``.to("cuda")`` of a host tensor waits for the GPU to finish
    its queue; :func:`to_device` does not.)
    """

    def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        dev = x.device
        flip = to_device(torch.rand(b, generator=gen) < 0.5, dev)  # pinned and non-blocking: no host wait
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        padded = torch.nn.functional.pad(x, (padding,) * 4, mode="replicate")
        dy = to_device(torch.randint(0, 2 * padding + 1, (b,), generator=gen), dev)
        dx = to_device(torch.randint(0, 2 * padding + 1, (b,), generator=gen), dev)
        rows = (dy.view(-1, 1) + torch.arange(h, device=dev)).view(b, 1, h, 1).expand(b, c, h, w + 2 * padding)
        out = padded.gather(2, rows)
        cols = (dx.view(-1, 1) + torch.arange(w, device=dev)).view(b, 1, 1, w).expand(b, c, h, w)
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
        "the extracted tiny-imagenet-200 folder (wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG "
        "and val/val_annotations.txt; `unzip -q tiny-imagenet-200.zip -d <data-dir>`); the official "
        "validation images serve as the test split",
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
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetCorrupt(f"cannot read IDX file {path} ({exc}); the file is truncated or damaged, "
                             "download it again") from exc
    if len(data) < 4:
        raise DatasetCorrupt(f"IDX file {path} is truncated (only {len(data)} bytes); download it again")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim == 0 or len(data) < 4 + 4 * ndim:
        raise DatasetCorrupt(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetCorrupt(f"IDX file {path} has {body.size} bytes of data, expected {int(np.prod(dims))} "
                             f"for shape {list(dims)}; the file is truncated, download it again")
    return body.reshape(dims)


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _find_idx_folder(folders: list[Path]) -> Path | None:
    """The first folder holding all four IDX files; when none does, one holding some of them is an error."""
    partial: tuple[Path, list[str]] | None = None
    for folder in folders:
        missing = [stem + "[.gz]" for stem in IDX_FILES.values() if _idx_path(folder, stem) is None]
        if not missing:
            return folder
        if len(missing) < len(IDX_FILES) and partial is None:
            partial = (folder, missing)
    if partial is not None:
        raise DatasetCorrupt(f"{partial[0]} holds only some of the four IDX files ({', '.join(partial[1])} "
                             "missing); put all four there")
    return None


def _idx_folders(info: DatasetInfo, data_dir: str | Path | None) -> list[Path]:
    """``<base>/<folder>`` and torchvision's ``<base>/<Name>/raw`` of every candidate base folder.

    Never ``<base>`` itself: MNIST and Fashion-MNIST files have the same names, so a bare folder of IDX
    files could be taken for the wrong dataset.
    """
    tv_name = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}[info.name]
    folders = []
    for base in candidate_dirs(data_dir):
        folders += [base / info.folder, base / tv_name / "raw"]
    if info.name == "fashion-mnist":
        folders.append(DEBIAN_FASHION_MNIST)
    return folders


def _load_idx_dataset(info: DatasetInfo, data_dir: str | Path | None, download: bool, progress: bool):
    folders = _idx_folders(info, data_dir)
    folder = _find_idx_folder(folders)
    if folder is None and download:
        _torchvision_download(info, data_dir)
        folder = _find_idx_folder(folders)
    if folder is None:
        raise _not_found(info, data_dir)
    paths = {key: _idx_path(folder, stem) for key, stem in IDX_FILES.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    _, h, w = info.in_shape
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (h, w):
            raise DatasetCorrupt(f"{paths[f'{split}_images']}: images of shape {list(images.shape)}, expected "
                                 f"[N, {h}, {w}]; is it the {info.title} images file?")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DatasetCorrupt(f"{folder}: {images.shape[0]} {split} images but labels of shape "
                                 f"{list(labels.shape)}; the label file does not belong to the images")
        _check_labels(labels, info, paths[f"{split}_labels"])
    to_images = lambda a: torch.from_numpy(a.copy()).unsqueeze(1)  # noqa: E731
    to_labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return (
        to_images(arrays["train_images"]), to_labels(arrays["train_labels"]),
        to_images(arrays["test_images"]), to_labels(arrays["test_labels"]), str(folder),
    )  # fmt: skip


def _check_labels(labels: np.ndarray, info: DatasetInfo, where: Path | str) -> None:
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= info.num_classes):
        raise DatasetCorrupt(f"{where}: labels range over [{int(labels.min())}, {int(labels.max())}], "
                             f"expected [0, {info.num_classes - 1}]")


# ---------------------------------------------------------------- CIFAR-10

CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = ["test_batch"]


def _find_cifar_folder(info: DatasetInfo, data_dir: str | Path | None) -> Path | None:
    """The first ``cifar-10-batches-py`` holding all six batches; when none does, an incomplete one is an error."""
    names = CIFAR_TRAIN + CIFAR_TEST
    partial: tuple[Path, list[str]] | None = None
    for base in candidate_dirs(data_dir):
        folder = base / info.folder
        missing = [name for name in names if not (folder / name).is_file()]
        if not missing:
            return folder
        if len(missing) < len(names) and partial is None:
            partial = (folder, missing)
    if partial is not None:
        raise DatasetCorrupt(f"{partial[0]} is incomplete ({', '.join(partial[1])} missing); extract "
                             "cifar-10-python.tar.gz there again")
    return None


def _read_cifar_batch(path: Path, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: uint8 images ``[N, 3, 32, 32]`` and int64 labels."""
    try:
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
        data = np.asarray(entry["data"])
        labels = np.asarray(entry["labels"], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, KeyError, TypeError, ValueError,
            IndexError) as exc:  # what a truncated or foreign pickle raises
        raise DatasetCorrupt(f"cannot read CIFAR-10 batch {path} ({type(exc).__name__}: {exc}); the file is "
                             "truncated or not a CIFAR-10 python batch, extract cifar-10-python.tar.gz again") from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetCorrupt(f"{path}: data of shape {list(data.shape)} ({data.dtype}) with {len(labels)} labels, "
                             "expected uint8 [N, 3072] with N labels; extract cifar-10-python.tar.gz again")
    _check_labels(labels, info, path)
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar10(info: DatasetInfo, data_dir: str | Path | None, download: bool, progress: bool):
    folder = _find_cifar_folder(info, data_dir)
    if folder is None and download:
        _torchvision_download(info, data_dir)
        folder = _find_cifar_folder(info, data_dir)
    if folder is None:
        raise _not_found(info, data_dir)
    meta = folder / "batches.meta"
    if meta.is_file():
        try:
            with open(meta, "rb") as fh:
                names = pickle.load(fh, encoding="latin1").get("label_names")
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError) as exc:
            raise DatasetCorrupt(f"cannot read {meta} ({exc}); extract cifar-10-python.tar.gz again") from exc
        if names is not None and len(names) != info.num_classes:
            raise DatasetCorrupt(f"{meta} names {len(names)} classes, expected {info.num_classes}: is this "
                                 "CIFAR-100?")

    def read(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_read_cifar_batch(folder / name, info) for name in names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        return torch.from_numpy(images), torch.from_numpy(labels)

    train_x, train_y = read(CIFAR_TRAIN)
    test_x, test_y = read(CIFAR_TEST)
    return train_x, train_y, test_x, test_y, str(folder)


# ---------------------------------------------------------------- TinyImageNet

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
TIN_CACHE_PREFIX = "actbench-cache-"


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def tinyimagenet_files(root: Path, num_classes: int = 200) -> tuple[list[str], list[tuple[Path, int]],
                                                                     list[tuple[Path, int]]]:
    """Classes (sorted wnids) and the labelled ``(path, label)`` files of train and of the official val.

    Reads the layout of ``tiny-imagenet-200.zip`` as extracted (``val/images`` with
    ``val/val_annotations.txt``) and also a validation folder already sorted into ``val/<wnid>/``.
    """
    wnids_file = root / "wnids.txt"
    if wnids_file.is_file():
        wnids = [line.strip() for line in wnids_file.read_text().splitlines() if line.strip()]
    else:
        wnids = [p.name for p in (root / "train").iterdir() if p.is_dir()]
    classes = sorted(set(wnids))
    if len(classes) != num_classes:
        where = wnids_file if wnids_file.is_file() else root / "train"
        raise DatasetCorrupt(f"{where} names {len(classes)} classes, expected {num_classes}; extract "
                             "tiny-imagenet-200.zip again")
    label = {wnid: i for i, wnid in enumerate(classes)}
    train: list[tuple[Path, int]] = []
    for wnid in classes:
        files = _images_under(root / "train" / wnid) if (root / "train" / wnid).is_dir() else []
        if not files:
            raise DatasetCorrupt(f"{root / 'train' / wnid} has no images; extract tiny-imagenet-200.zip again")
        train += [(path, label[wnid]) for path in files]

    val = root / "val"
    test: list[tuple[Path, int]] = []
    for wnid in classes:  # already sorted into class folders
        if (val / wnid).is_dir():
            test += [(path, label[wnid]) for path in _images_under(val / wnid)]
    annotations = val / "val_annotations.txt"
    if (val / "images").is_dir():
        if not annotations.is_file():
            raise DatasetCorrupt(f"{val / 'images'} has no {annotations.name} beside it, so its images have no "
                                 "labels; extract tiny-imagenet-200.zip again")
        for n, line in enumerate(annotations.read_text().splitlines(), 1):
            parts = line.split("\t")
            if not line.strip():
                continue
            if len(parts) < 2 or parts[1] not in label:
                raise DatasetCorrupt(f"{annotations}, line {n}: {line!r} does not name an image and one of the "
                                     f"{num_classes} wnids")
            path = val / "images" / parts[0]
            if not path.is_file():
                raise DatasetCorrupt(f"{path} is listed in {annotations.name} but missing; extract "
                                     "tiny-imagenet-200.zip again")
            test.append((path, label[parts[1]]))
    if not test:
        raise DatasetCorrupt(f"{val} holds no labelled images (val/images with val_annotations.txt, or "
                             "val/<wnid>/ folders); extract tiny-imagenet-200.zip again")
    return classes, train, test


def _decode(path: Path, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DatasetCorrupt(f"cannot decode {path} ({exc}); the image is truncated or damaged, extract "
                             "tiny-imagenet-200.zip again") from exc
    if pixels.shape[:2] != size:
        raise DatasetCorrupt(f"{path} is {pixels.shape[1]}x{pixels.shape[0]} pixels, expected {size[1]}x{size[0]}")
    return pixels.transpose(2, 0, 1)


def _decode_all(files: list[tuple[Path, int]], size: tuple[int, int], what: str,
                progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode images on a few threads (PIL releases the GIL while decoding), with a progress bar."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.progress import Progress

    images = np.empty((len(files), 3, *size), dtype=np.uint8)

    def work(i: int) -> None:
        images[i] = _decode(files[i][0], size)

    with Progress(disable=not progress, transient=True) as bar, \
            ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        task = bar.add_task(f"decoding {what}", total=len(files))
        for _ in pool.map(work, range(len(files))):
            bar.advance(task)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return torch.from_numpy(images), labels


def _files_digest(files: list[tuple[Path, int]], root: Path) -> str:
    """A fingerprint of the file list (names, labels, sizes, modification times) for the decode cache."""
    h = hashlib.sha1()
    for path, label in files:
        st = path.stat()
        h.update(f"{path.relative_to(root)}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _cache_dirs(root: Path) -> list[Path]:
    return [root, Path.home() / ".cache" / "actbench" / "decoded"]


def _read_cache(root: Path, digest: str) -> dict[str, torch.Tensor] | None:
    for folder in _cache_dirs(root):
        path = folder / f"{TIN_CACHE_PREFIX}{digest}.pt"
        if path.is_file():
            try:
                blob = torch.load(path, weights_only=True)
                if isinstance(blob, dict) and {"train_x", "train_y", "test_x", "test_y"} <= set(blob):
                    return blob
            except Exception:  # noqa: BLE001 - a damaged cache is rebuilt from the images
                pass
    return None


def _write_cache(root: Path, digest: str, blob: dict[str, torch.Tensor]) -> None:
    """Atomically save decoded images in the dataset folder, else the user cache; never fail the load."""
    from actbench.store import atomic_write

    for folder in _cache_dirs(root):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob(f"{TIN_CACHE_PREFIX}*.pt"):
                if old.name != f"{TIN_CACHE_PREFIX}{digest}.pt" and folder == root:
                    old.unlink(missing_ok=True)
            atomic_write(folder / f"{TIN_CACHE_PREFIX}{digest}.pt", lambda tmp: torch.save(blob, tmp))
            return
        except OSError:
            continue


def _load_tinyimagenet(info: DatasetInfo, data_dir: str | Path | None, download: bool, progress: bool):
    root = next((b / info.folder for b in candidate_dirs(data_dir) if (b / info.folder / "train").is_dir()), None)
    if root is None:
        raise _not_found(info, data_dir)
    _, train, test = tinyimagenet_files(root, info.num_classes)
    digest = _files_digest(train + test, root)
    blob = _read_cache(root, digest)
    if blob is None:
        size = info.in_shape[1:]
        train_x, train_y = _decode_all(train, size, "TinyImageNet train", progress)
        test_x, test_y = _decode_all(test, size, "TinyImageNet val", progress)
        blob = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
        _write_cache(root, digest, blob)
    return blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"], str(root)


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
    """Whether the dataset's files are on disk and complete (no download attempted, nothing decoded)."""
    info = get_info(name)
    try:
        if info.name in ("fashion-mnist", "mnist"):
            return _find_idx_folder(_idx_folders(info, data_dir)) is not None
        if info.name == "cifar10":
            return _find_cifar_folder(info, data_dir) is not None
    except DatasetCorrupt:
        return False
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
    progress: bool = False,
) -> Splits:
    """Load a dataset as train / validation / test splits of uint8 tensors.

    ``train_subset`` keeps a fixed random subset of the training split (for quick presets and tests).
    ``progress`` shows a bar while images are decoded (TinyImageNet's first load).
    """
    info = get_info(name)
    train_x, train_y, test_x, test_y, source = _LOADERS[name](info, data_dir, download, progress)
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
