"""Shared helpers for the training and objective tests (no tests here): tiny synthetic splits, a
small track and a model factory, so engine tests run in seconds on two cores."""

from __future__ import annotations

import dataclasses

import torch

from actbench.config import Budget, Track, load_track
from actbench.data import Split, Splits, get_info
from actbench.models import create_model


def synthetic_splits(n_train: int = 192, n_val: int = 64, seed: int = 0) -> Splits:
    """Fashion-MNIST-shaped uint8 images: one random template per class plus noise (learnable)."""
    gen = torch.Generator().manual_seed(seed)
    templates = torch.rand(10, 1, 28, 28, generator=gen)

    def make(n: int) -> Split:
        labels = torch.arange(n) % 10
        noise = torch.rand(n, 1, 28, 28, generator=gen)
        images = (0.6 * templates[labels] + 0.4 * noise).mul(255).round().to(torch.uint8)
        return Split(images, labels)

    info = get_info("fashion-mnist")
    splits = Splits(info=info, train=make(n_train), val=make(n_val), test=make(n_val), source="synthetic")
    splits.sizes = {"train": n_train, "val": n_val, "test": n_val}
    return splits


def small_track(**changes) -> Track:
    """The fashion-mnist track shrunk for tests: batch 64, 1 clean + 1 ramp epoch, 32 selection samples."""
    base = dataclasses.replace(
        load_track("fashion-mnist"), batch_size=64, warmup_epochs=1, ramp_epochs=1, selection_samples=32,
        budget=Budget("epochs", 3),
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def make_model(seed: int = 0, name: str = "cnn3") -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, (1, 28, 28), 10)
