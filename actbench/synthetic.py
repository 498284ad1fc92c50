"""Small synthetic datasets written in the real on-disk formats, for tests and machine checks.

The files are byte-for-byte the layouts the loaders read (``actbench.data``): MNIST's four IDX ``.gz``
files, CIFAR-10's python pickles (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``,
``batches.meta``) and TinyImageNet's folders (``train/<wnid>/images/*.JPEG``, ``val/images`` with
``val_annotations.txt``, ``wnids.txt``). Each image is a fixed random template of its class blended with
noise, so a model learns something in a few steps and certification has correct samples to work on.

Run ``python -m actbench.synthetic cifar10 DIR [--train N] [--test N]`` to write one into ``DIR``
(``DIR`` is then a valid ``--data-dir``).
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TEMPLATE_WEIGHT = 0.6  # share of the class template in every pixel; the rest is uniform noise


def class_images(n: int, shape: tuple[int, ...], num_classes: int, seed: int,
                 labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images ``[n, *shape]`` and their labels (balanced, cycling over the classes)."""
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(1234).random((num_classes, *shape), dtype=np.float32)  # shared by splits
    labels = np.arange(n) % num_classes if labels is None else np.asarray(labels)
    images = np.empty((n, *shape), dtype=np.uint8)
    for start in range(0, n, 1024):  # chunks keep the float scratch small (TinyImageNet: 48 KB per image)
        part = labels[start:start + 1024]
        noise = rng.random((len(part), *shape), dtype=np.float32)
        mixed = TEMPLATE_WEIGHT * templates[part] + (1 - TEMPLATE_WEIGHT) * noise
        images[start:start + len(part)] = np.round(mixed * 255).astype(np.uint8)
    return images, labels.astype(np.int64)


# ---------------------------------------------------------------- MNIST / Fashion-MNIST (IDX)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file (gzipped when ``path`` ends in ``.gz``)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def write_mnist(root: Path | str, n_train: int = 6000, n_test: int = 500, seed: int = 0,
                folder: str = "mnist") -> Path:
    """MNIST's four IDX ``.gz`` files in ``root/<folder>/``; returns that folder."""
    out = Path(root) / folder
    out.mkdir(parents=True, exist_ok=True)
    for split, n, offset in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = class_images(n, (28, 28), 10, seed + offset)
        write_idx(out / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(out / f"{split}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return out


# ---------------------------------------------------------------- CIFAR-10 (python pickles)


def write_cifar10(root: Path | str, n_train: int = 6000, n_test: int = 500, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/`` with five training batches, ``test_batch`` and ``batches.meta``."""
    out = Path(root) / "cifar-10-batches-py"
    out.mkdir(parents=True, exist_ok=True)
    images, labels = class_images(n_train, (3, 32, 32), 10, seed)
    for i, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        _write_cifar_batch(out / f"data_batch_{i}", f"training batch {i} of 5", images[part], labels[part])
    images, labels = class_images(n_test, (3, 32, 32), 10, seed + 1)
    _write_cifar_batch(out / "test_batch", "testing batch 1 of 1", images, labels)
    meta = {"num_cases_per_batch": max(1, n_train // 5), "label_names": CIFAR_LABELS, "num_vis": 3072}
    (out / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return out


def _write_cifar_batch(path: Path, title: str, images: np.ndarray, labels: np.ndarray) -> None:
    entry = {
        "batch_label": title,
        "labels": [int(v) for v in labels],
        "data": images.reshape(len(images), 3072),  # rows of 1024 red, 1024 green, 1024 blue values
        "filenames": [f"synthetic_{i:05d}.png" for i in range(len(images))],
    }
    path.write_bytes(pickle.dumps(entry, protocol=2))


# ---------------------------------------------------------------- TinyImageNet (JPEG folders)


def tinyimagenet_wnids(num_classes: int = 200) -> list[str]:
    """WordNet-style ids ``n00000000 …`` in a deliberately unsorted order (as in the real ``wnids.txt``)."""
    return [f"n{(i * 7919) % 100000:08d}" for i in range(num_classes)]


def write_tinyimagenet(root: Path | str, train_per_class: int = 52, val_per_class: int = 2, seed: int = 0,
                       num_classes: int = 200, quality: int = 95) -> Path:
    """``root/tiny-imagenet-200/`` in the layout of the official zip; returns that folder.

    The official validation split (``val/images`` + ``val_annotations.txt``) is the test split of the
    track; the loader carves its validation split from ``train``. A 64x64 JPEG is about 3 KB.
    """
    from PIL import Image

    out = Path(root) / "tiny-imagenet-200"
    wnids = tinyimagenet_wnids(num_classes)
    order = sorted(wnids)  # the loader's labels are the sorted wnids
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (out / "words.txt").write_text("".join(f"{w}\tsynthetic class {i}\n" for i, w in enumerate(wnids)))

    def save(path: Path, pixels: np.ndarray) -> None:
        Image.fromarray(pixels.transpose(1, 2, 0)).save(path, "JPEG", quality=quality)

    labels = np.repeat(np.arange(num_classes), train_per_class)
    images, _ = class_images(len(labels), (3, 64, 64), num_classes, seed, labels=labels)
    for c, wnid in enumerate(order):
        folder = out / "train" / wnid / "images"
        folder.mkdir(parents=True, exist_ok=True)
        boxes = []
        for j in range(train_per_class):
            name = f"{wnid}_{j}.JPEG"
            save(folder / name, images[c * train_per_class + j])
            boxes.append(f"{name}\t0\t0\t63\t63\n")
        (out / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))

    val_labels = np.tile(np.arange(num_classes), val_per_class)
    images, _ = class_images(len(val_labels), (3, 64, 64), num_classes, seed + 1, labels=val_labels)
    (out / "val" / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, label in enumerate(val_labels):
        name = f"val_{i}.JPEG"
        save(out / "val" / "images" / name, images[i])
        lines.append(f"{name}\t{order[label]}\t0\t0\t63\t63\n")
    (out / "val" / "val_annotations.txt").write_text("".join(lines))
    (out / "test" / "images").mkdir(parents=True, exist_ok=True)  # unlabelled in the real set; unused
    save(out / "test" / "images" / "test_0.JPEG", images[0])
    return out


WRITERS = {"mnist": write_mnist, "cifar10": write_cifar10}


def write_dataset(name: str, root: Path | str, train: int, test: int, seed: int = 0) -> Path:
    """One dataset by track name: ``train``/``test`` are image counts (per class for TinyImageNet)."""
    if name == "tinyimagenet":
        return write_tinyimagenet(root, train_per_class=train, val_per_class=test, seed=seed)
    if name == "fashion-mnist":
        return write_mnist(root, train, test, seed, folder="fashion-mnist")
    if name not in WRITERS:
        from actbench.errors import UnknownName

        raise UnknownName("dataset", name, [*WRITERS, "fashion-mnist", "tinyimagenet"])
    return WRITERS[name](root, train, test, seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a small synthetic dataset in its real on-disk format.")
    parser.add_argument("dataset", choices=["mnist", "fashion-mnist", "cifar10", "tinyimagenet"])
    parser.add_argument("root", type=Path, help="the data folder (use it as --data-dir)")
    parser.add_argument("--train", type=int, default=None, help="training images (per class for tinyimagenet)")
    parser.add_argument("--test", type=int, default=None, help="test images (per class for tinyimagenet)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    tin = args.dataset == "tinyimagenet"
    train = args.train if args.train is not None else (52 if tin else 6000)
    test = args.test if args.test is not None else (2 if tin else 500)
    print(write_dataset(args.dataset, args.root, train, test, args.seed))


if __name__ == "__main__":
    main()
