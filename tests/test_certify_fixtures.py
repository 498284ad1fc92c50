"""Shared helpers for the certification tests (no tests here): a briefly IBP-trained small model on
Fashion-MNIST (synthetic look-alike data when the dataset is not on disk) and a run folder with a card."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from actbench.bounds import margin_bounds
from actbench.config import load_track
from actbench.data import Split, is_available, load_splits
from actbench.models import create_model, ibp_init, save_model
from actbench.store import SCHEMA_VERSION, write_card

TRAIN_EPS = 0.02


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread (the test machine's two cores are shared; oversubscription is slow)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@functools.lru_cache(maxsize=1)
def fmnist() -> tuple[Split, Split, str]:
    """(train subset, test split, source) of Fashion-MNIST, or synthetic class templates offline."""
    if is_available("fashion-mnist"):
        splits = load_splits("fashion-mnist", val_size=1000, train_subset=3000, download=False, augment=False)
        return splits.train, splits.test, "fashion-mnist"
    gen = torch.Generator().manual_seed(0)
    templates = torch.rand(10, 1, 28, 28, generator=gen)

    def make(n: int) -> Split:
        labels = torch.arange(n) % 10
        images = (0.6 * templates[labels] + 0.4 * torch.rand(n, 1, 28, 28, generator=gen)).mul(255).round()
        return Split(images.to(torch.uint8), labels)

    return make(3000), make(500), "synthetic"


@functools.lru_cache(maxsize=4)
def _trained_state(name: str, steps: int, seed: int) -> dict[str, torch.Tensor]:
    train, _, _ = fmnist()
    torch.manual_seed(seed)
    model = ibp_init(create_model(name, (1, 28, 28), 10))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with one_thread():
        _train(model, opt, train, gen, steps)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, train: Split, gen: torch.Generator,
           steps: int) -> None:
    for step in range(steps):
        idx = torch.randint(0, len(train), (64,), generator=gen)
        x, y = train.tensors(idx)
        eps = TRAIN_EPS * min(1.0, step / (steps / 2))
        logits = model(x)
        lower = margin_bounds(model, x, y, eps).lower
        robust = F.cross_entropy(torch.cat([torch.zeros_like(lower[:, :1]), -lower], 1),
                                 torch.zeros_like(y))
        loss = 0.5 * F.cross_entropy(logits, y) + 0.5 * robust
        opt.zero_grad()
        loss.backward()
        opt.step()


def trained_model(name: str = "mlp", steps: int = 60, seed: int = 0) -> torch.nn.Module:
    """A fresh copy of a small model briefly trained with a CE + IBP loss at eps 0.02 (eval mode)."""
    model = create_model(name, (1, 28, 28), 10)
    model.load_state_dict(_trained_state(name, steps, seed))
    return model.eval()


def make_run(run_dir: Path, name: str = "mlp", samples: int = 40) -> Path:
    """A trained run folder: model.pt plus a valid card on the fashion-mnist track (eps 0.02)."""
    track = load_track("fashion-mnist").to_dict()
    track.update(eps=TRAIN_EPS, eps_test=[0.01], eps_grid=[0.0, 0.005, 0.01, 0.015, 0.02], certify_samples=samples,
                 certify_verifiers=["ibp", "crown-ibp"])
    model = trained_model(name)
    save_model(run_dir / "model.pt", model, name, (1, 28, 28), 10, [0.0], [1.0])
    card = {
        "schema": SCHEMA_VERSION, "run_id": run_dir.name, "status": "trained", "command": "test",
        "track": track, "method": {"name": "ibp", "params": {}}, "model": {"name": name, "parameters": 0},
        "seed": 0, "budget": {"limit": {"kind": "epochs", "value": 1}, "used": {}}, "environment": {},
        "files": {"history": "history.csv", "model": "model.pt", "radii": "radii.parquet"},
    }
    write_card(run_dir, card)
    return run_dir
