"""Speed of the bound engine relative to a plain forward pass (float32, 2 threads, median of repeats).

Run: ``.venv/bin/python benchmarks/bounds.py [--repeats 7]``. Eval mode under no_grad: forward, IBP and
CROWN-IBP; a second line per model in train mode with autograd on: the clean forward (clean_forward)
and IBP with the clean batch statistics (graph built, no backward).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from actbench.bounds import clean_forward, margin_bounds
from actbench.models import create_model

SETTINGS = [  # name, model, input shape, batch
    ("cnn3 / Fashion-MNIST", "cnn3", (1, 28, 28), 128),
    ("cnn7 / CIFAR-10", "cnn7", (3, 32, 32), 32),
]


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(repeats: int) -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    eps = 2 / 255
    for label, name, shape, batch in SETTINGS:
        model = create_model(name, shape, 10, [0.5] * shape[0], [0.25] * shape[0])
        x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
        model.eval()
        with torch.no_grad():
            fwd = median_time(lambda: model(x), repeats)  # noqa: B023
            ibp = median_time(lambda: margin_bounds(model, x, y, eps), repeats)  # noqa: B023
            cib = median_time(lambda: margin_bounds(model, x, y, eps, method="crown-ibp"), repeats)  # noqa: B023
        print(f"{label:22s} B={batch:<4d} eval  forward {fwd * 1e3:8.1f} ms | IBP {ibp * 1e3:8.1f} ms "
              f"({ibp / fwd:4.2f}x) | CROWN-IBP {cib * 1e3:8.1f} ms ({cib / fwd:5.2f}x)")
        model.train()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        fwd_t = median_time(lambda: clean_forward(model, x), repeats)  # noqa: B023
        _, stats = clean_forward(model, x)
        stats = {m: (mu.detach(), var.detach()) for m, (mu, var) in stats.items()}
        ibp_t = median_time(lambda: margin_bounds(model, x, y, eps, bn_stats=stats), repeats)  # noqa: B023
        model.load_state_dict(state)
        print(f"{label:22s} B={batch:<4d} train forward {fwd_t * 1e3:8.1f} ms | IBP {ibp_t * 1e3:8.1f} ms "
              f"({ibp_t / fwd_t:4.2f}x)  [autograd on]")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    run(parser.parse_args().repeats)
