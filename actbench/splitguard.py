"""Sealed splits: make a data split unreadable for a while, so a search provably never looks at it.

``actbench tune`` trains and scores every trial inside ``with sealed("test"):``. While a split is
sealed, :func:`actbench.data.load_splits` hands out a :class:`SealedSplit` in its place, and any use of
it (its length, its images, a batch) raises :class:`~actbench.errors.SplitSealed`. Training and model
selection read only the training and validation splits, so they run unchanged; certification, which
reads the test split, fails loudly if it is attempted inside the block. The seal is per process (each
trial runs in its own worker) and nests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from actbench.errors import SplitSealed

SPLITS = ("train", "val", "test")
_sealed: dict[str, int] = {}  # split name -> nesting depth


@contextmanager
def sealed(*names: str) -> Iterator[None]:
    """Seal the named splits for the duration of the block."""
    for name in names:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
    for name in names:
        _sealed[name] = _sealed.get(name, 0) + 1
    try:
        yield
    finally:
        for name in names:
            _sealed[name] -= 1
            if not _sealed[name]:
                del _sealed[name]


def is_sealed(name: str) -> bool:
    return name in _sealed


class SealedSplit:
    """Stands in for a sealed split: every attribute, ``len`` and iteration raise :class:`SplitSealed`."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _refuse(self, what: str) -> NoReturn:
        raise SplitSealed(f"the {self._name} split is sealed here ({what} was attempted): a search phase must "
                          f"not read it; only certification, after the search has scored the trial, may")

    def __getattr__(self, attr: str) -> Any:
        self._refuse(f"reading .{attr}")

    def __len__(self) -> int:
        self._refuse("len()")

    def __iter__(self) -> NoReturn:
        self._refuse("iteration")


def guard(splits: Any) -> Any:
    """``splits`` with every currently sealed split replaced by a :class:`SealedSplit` (sizes kept)."""
    for name in SPLITS:
        if is_sealed(name):
            setattr(splits, name, SealedSplit(name))
    return splits
