"""Speed of the bound engine relative to a plain forward pass, and beside auto_LiRPA when it is importable.

Run: ``.venv/bin/python benchmarks/bounds.py [--repeats 7] [--threads 2] [--default-allocator]``.

Eval mode under no_grad, float32, CNN7 on a CIFAR-10 batch of 32 and cnn3 on a Fashion-MNIST batch
of 128 (random weights, eps 2/255): the forward ``model(x)``, then actbench's IBP and CROWN-IBP inside
``bounds.prepared(model)`` (repeated calls on a fixed model, as in certification) and as plain calls
that prepare the model afresh; auto_LiRPA's IBP and CROWN-IBP ("patches" mode, one ``BoundedModule``
built beforehand) when ``auto_LiRPA`` can be imported, with the largest difference of its margin
bounds from actbench's. A second line per model: train mode with autograd on, the clean forward
(``clean_forward``) and IBP with the clean batch's statistics (graph built, no backward).

Every timing is the median over ``--repeats`` rounds in which each function runs once (interleaved, so
load changes on a shared machine hit all alike); ratios are to the forward of the same rounds. The
glibc allocator is tuned first (``bounds.allocator``, as the CLI does); ``--default-allocator`` skips it.
On a loaded machine ``--threads 1 --clock cpu`` (process CPU time) gives steadier ratios.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable

import torch

from actbench.bounds import clean_forward, lirpa, margin_bounds, prepared
from actbench.bounds.allocator import tune_allocator
from actbench.models import create_model

SETTINGS = [  # label, model, input shape, batch
    ("cnn7 / CIFAR-10", "cnn7", (3, 32, 32), 32),
    ("cnn3 / Fashion-MNIST", "cnn3", (1, 28, 28), 128),
]
EPS = 2 / 255


CLOCK: Callable[[], float] = time.perf_counter


def medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function over ``repeats`` interleaved rounds (after one warm-up round)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for rep in range(repeats + 1):
        for name, fn in fns.items():
            start = CLOCK()
            fn()
            if rep:
                times[name].append(CLOCK() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def eval_row(name: str, shape: tuple[int, ...], batch: int, repeats: int) -> tuple[dict[str, float], str]:
    model = create_model(name, shape, 10, [0.5] * shape[0], [0.25] * shape[0]).eval()
    x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
    fns: dict[str, Callable[[], object]] = {"forward": lambda: model(x)}
    note = ""
    with torch.no_grad(), prepared(model):
        fns["IBP"] = lambda: margin_bounds(model, x, y, EPS)
        fns["CROWN-IBP"] = lambda: margin_bounds(model, x, y, EPS, method="crown-ibp")
        twin = copy.deepcopy(model)  # the same network outside the block: its calls prepare afresh
        fns["IBP fresh"] = lambda: margin_bounds(twin, x, y, EPS)
        fns["CROWN-IBP fresh"] = lambda: margin_bounds(twin, x, y, EPS, method="crown-ibp")
        if lirpa.available():
            bounded = lirpa.bounded_module(model, x)
            fns["LiRPA IBP"] = lambda: lirpa.margin_bounds(model, x, y, EPS, bounded=bounded)
            fns["LiRPA CROWN-IBP"] = lambda: lirpa.margin_bounds(model, x, y, EPS, "crown-ibp", bounded=bounded)
            diffs = [float((margin_bounds(model, x, y, EPS, method=m).lower
                            - lirpa.margin_bounds(model, x, y, EPS, m, bounded=bounded).lower).abs().max())
                     for m in ("ibp", "crown-ibp")]
            note = f"  [auto_LiRPA {lirpa_version()}: max |lb difference| IBP {diffs[0]:.1e}, CROWN-IBP {diffs[1]:.1e}]"
        return medians(fns, repeats), note


def lirpa_version() -> str:
    import auto_LiRPA

    return auto_LiRPA.__version__


def train_row(name: str, shape: tuple[int, ...], batch: int, repeats: int) -> dict[str, float]:
    model = create_model(name, shape, 10, [0.5] * shape[0], [0.25] * shape[0]).train()
    x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    _, stats = clean_forward(model, x)
    stats = {m: (mu.detach(), var.detach()) for m, (mu, var) in stats.items()}
    out = medians({"forward": lambda: clean_forward(model, x),
                   "IBP": lambda: margin_bounds(model, x, y, EPS, bn_stats=stats)}, repeats)
    model.load_state_dict(state)
    return out


def run(repeats: int, threads: int, tune: bool, clock: str = "wall") -> None:
    global CLOCK
    CLOCK = time.process_time if clock == "cpu" else time.perf_counter
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tuned = tune_allocator() if tune else False
    print(f"float32, {threads} threads, {clock} clock, eps {EPS:.4f}, median of {repeats}, allocator tuned: {tuned}, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for label, name, shape, batch in SETTINGS:
        t, note = eval_row(name, shape, batch, repeats)
        fwd = t.pop("forward")
        cells = " | ".join(f"{k} {v * 1e3:7.1f} ms ({v / fwd:5.2f}x)" for k, v in t.items())
        print(f"{label:21s} B={batch:<4d} eval  forward {fwd * 1e3:6.1f} ms | {cells}{note}")
        tr = train_row(name, shape, batch, repeats)
        print(f"{label:21s} B={batch:<4d} train forward {tr['forward'] * 1e3:6.1f} ms | IBP {tr['IBP'] * 1e3:7.1f} ms "
              f"({tr['IBP'] / tr['forward']:4.2f}x)  [autograd on]")
    print(f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--default-allocator", action="store_true", help="skip the glibc allocator tuning")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall time, or process CPU time (steadier on a loaded machine; use with --threads 1)")
    args = parser.parse_args()
    run(args.repeats, args.threads, not args.default_allocator, args.clock)
