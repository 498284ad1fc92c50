"""Training-step cost of every method, relative to standard training and to IBP.

Setting: cnn3 on Fashion-MNIST-shaped data (the real Fashion-MNIST when available, else synthetic),
batch 128, train mode, eps_t = eps = 0.1 after the ramp (no regulariser), 2 threads. The model is
first trained briefly with the IBP objective up to eps 0.1 so the radii and attacks see a
mid-training network. Each method then runs from a copy of those weights over the same fixed
batches: one untimed pass (it also fills ACERT's warm-start cache, as the previous epoch would),
then timed passes; a step is the full loss + backward + clipping + Adam step. The whole setting runs
``--trials`` times from the same weights and the step times are pooled. Prints the median step
time (and median process CPU time, which a busy machine disturbs less), its ratio to ``standard`` and
``ibp``, propagations per sample (``actbench.objectives.cost``)
and bound passes per step. ACERT is shown with its defaults (warm start, predicted stop, rtol 1e-2),
without the predicted stop, without the warm start, and at the reference's tolerance (rtol 1e-4).
Targets: ACERT step <= 1.3x an IBP step at eps and <= 1.5x early in the ramp. After the timing, the
training radii of each ACERT variant (as the last trial left it) on the same batches are compared
with an exact root search (rtol 1e-7): "radius / exact" is the ratio of their means (1 = exact;
radii are always certified).
The glibc allocator is tuned first, as the CLI does (``--default-allocator`` skips it).

Also shown: an early-ramp setting (the model after the clean epoch, eps_t 0.02), where most correctly
classified samples are certified below the cap, so ACERT's search does the most work.

Run: ``.venv/bin/python benchmarks/train_step.py [--threads 2] [--batches 4] [--repeats 3] [--trials 3]``
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table

from actbench.bounds import clean_forward
from actbench.bounds.allocator import tune_allocator
from actbench.certify import certified_radii
from actbench.config import Budget, load_track
from actbench.data import Split, Splits, get_info, is_available, load_splits
from actbench.models import create_model
from actbench.objectives import create_objective, load_method
from actbench.objectives.base import StepContext
from actbench.objectives.cost import PropagationCounter
from actbench.train import train

EPS, BATCH = 0.1, 128
EARLY_EPS = 0.02
VARIANTS = [  # (label, method, overrides, eps_t, model: "mid" = trained to eps, "early" = after the clean epoch)
    ("standard", "standard", {}, EPS, "mid"),
    ("pgd", "pgd", {}, EPS, "mid"),
    ("ibp", "ibp", {}, EPS, "mid"),
    ("crown_ibp", "crown_ibp", {}, EPS, "mid"),
    ("crown_ibp mid-ramp (eps_t 0.05, beta 0.5)", "crown_ibp", {}, EPS / 2, "mid"),
    ("sabr", "sabr", {}, EPS, "mid"),
    ("mtl_ibp", "mtl_ibp", {}, EPS, "mid"),
    ("adaptive", "adaptive", {}, EPS, "mid"),
    ("adaptive, no predicted stop", "adaptive", {"predict_stop": False}, EPS, "mid"),
    ("adaptive, no warm start", "adaptive", {"warm_start": False}, EPS, "mid"),
    ("adaptive, rtol 1e-4 (reference tolerance)", "adaptive", {"train_rtol": 1e-4}, EPS, "mid"),
    (f"ibp, early ramp (clean-trained model, eps_t {EARLY_EPS})", "ibp", {}, EARLY_EPS, "early"),
    (f"adaptive, early ramp (eps_t {EARLY_EPS})", "adaptive", {}, EARLY_EPS, "early"),
    ("adaptive, early ramp, no predicted stop", "adaptive", {"predict_stop": False}, EARLY_EPS, "early"),
    ("adaptive, early ramp, no warm start", "adaptive", {"warm_start": False}, EARLY_EPS, "early"),
]


def data(n_train: int) -> tuple[Splits, str]:
    """Real Fashion-MNIST when on disk, otherwise class-template synthetic images of the same shape."""
    if is_available("fashion-mnist"):
        return load_splits("fashion-mnist", val_size=1000, train_subset=n_train, augment=False), "Fashion-MNIST"
    gen = torch.Generator().manual_seed(0)
    templates = torch.rand(10, 1, 28, 28, generator=gen)

    def split(n: int) -> Split:
        labels = torch.arange(n) % 10
        images = 0.6 * templates[labels] + 0.4 * torch.rand(n, 1, 28, 28, generator=gen)
        return Split(images.mul(255).round().to(torch.uint8), labels)

    info = get_info("fashion-mnist")
    splits = Splits(info, split(n_train), split(256), split(256), "synthetic")
    splits.sizes = {"train": n_train, "val": 256, "test": 256}
    return splits, "synthetic"


def pretrain(splits: Splits, epochs: int) -> torch.nn.Module:
    """IBP-objective training: 1 epoch is the clean warm-up (an early-ramp model); 2 epochs add the
    ramp, so eps reaches 0.1 (a mid-training model)."""
    track = dataclasses.replace(load_track("fashion-mnist"), batch_size=BATCH, warmup_epochs=1, ramp_epochs=1,
                                selection="last", selection_samples=64)  # fmt: skip
    torch.manual_seed(0)
    model = create_model("cnn3", (1, 28, 28), 10)
    objective = create_objective(load_method("ibp", track.name, {}), track)
    with tempfile.TemporaryDirectory() as run_dir:
        train(model, splits, track, objective, budget=Budget("epochs", epochs), run_dir=run_dir, seed=0, progress=False)
    return model


@dataclasses.dataclass
class Runner:
    """One method's model, optimiser and objective, stepped over the fixed batches; its records
    (times, propagations, passes) accumulate over :meth:`restart`."""

    label: str
    start: Callable[[], tuple[object, torch.nn.Module, torch.optim.Optimizer]]
    eps_t: float
    objective: object = None
    model: torch.nn.Module | None = None
    opt: torch.optim.Optimizer | None = None
    counter: PropagationCounter = dataclasses.field(default_factory=PropagationCounter)
    times: list = dataclasses.field(default_factory=list)
    cpu: list = dataclasses.field(default_factory=list)
    props: list = dataclasses.field(default_factory=list)
    passes: list = dataclasses.field(default_factory=list)
    radius_passes: list = dataclasses.field(default_factory=list)

    def restart(self) -> None:
        """A fresh objective, model copy and optimiser, as at the start of a trial."""
        self.objective, self.model, self.opt = self.start()

    def step(self, i: int, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, record: bool) -> None:
        ctx = StepContext(eps_t=self.eps_t, eps=EPS, epoch=10, step=i, reg_phase=False, reg_weight=0.0,
                          indices=index, counter=self.counter, num_classes=10)  # fmt: skip
        before = self.counter.total
        start, cpu_start = time.perf_counter(), time.process_time()
        loss, stats = self.objective.loss(self.model, x, y, ctx)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
        self.opt.step()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if record:
            self.times.append(elapsed)
            self.cpu.append(cpu)
            self.props.append((self.counter.total - before) / x.shape[0])
            self.passes.append(stats.get("bound_passes", float("nan")))
            self.radius_passes.append(stats.get("radius_passes", float("nan")))

    def radius_quality(self, batches: list) -> float:
        """Mean training radius over the batches divided by the mean exact certified radius (rtol 1e-7)."""
        found = exact = 0.0
        for i, (x, y, index) in enumerate(batches):
            ctx = StepContext(eps_t=self.eps_t, eps=EPS, epoch=10, step=i, reg_phase=False, reg_weight=0.0,
                              indices=index, counter=PropagationCounter(), num_classes=10)  # fmt: skip
            with torch.no_grad():
                logits, stats = clean_forward(self.model, x)
                radius, _ = self.objective.radii(self.model, x, y, logits, stats, ctx)
                best = certified_radii(self.model, x, y, self.eps_t, rtol=1e-7, atol=1e-12, max_passes=200,
                                       logits=logits, bn_stats=stats)  # fmt: skip
            found, exact = found + float(radius.double().sum()), exact + float(best.radius.double().sum())
        return found / exact if exact > 0 else float("nan")

    def summary(self) -> dict:
        mean = statistics.mean
        return {"ms": 1000 * statistics.median(self.times), "cpu_ms": 1000 * statistics.median(self.cpu),
                "props": mean(self.props),
                "passes": mean(self.passes), "radius_passes": mean(self.radius_passes)}  # fmt: skip


def make_runner(base: torch.nn.Module, label: str, name: str, overrides: dict, eps_t: float, n: int) -> Runner:
    track = load_track("fashion-mnist")

    def start() -> tuple[object, torch.nn.Module, torch.optim.Optimizer]:
        objective = create_objective(load_method(name, track.name, overrides), track)
        objective.setup(n, "cpu")
        model = copy.deepcopy(base).train()
        return objective, model, torch.optim.Adam(model.parameters(), lr=1e-4)

    runner = Runner(label, start, eps_t)
    runner.restart()
    return runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=4, help="fixed batches per pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the batches")
    parser.add_argument("--trials", type=int, default=3,
                        help="independent runs of the whole setting from the same weights; their step times are pooled")
    parser.add_argument("--pretrain-samples", type=int, default=4096)
    parser.add_argument("--default-allocator", action="store_true", help="skip the glibc allocator tuning")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tuned = False if args.default_allocator else tune_allocator()
    console = Console()
    if not console.is_terminal:  # keep the table whole when the output is a file or a pipe
        console = Console(width=150)
    splits, source = data(args.pretrain_samples)
    console.print(f"data: {source}; pretraining cnn3 with IBP to eps {EPS} ...")
    bases = {"early": pretrain(splits, 1), "mid": pretrain(splits, 2)}
    batches = list(splits.train.batches(BATCH))[: args.batches]
    runners = [make_runner(bases[which], label, name, overrides, eps_t, len(batches) * BATCH)
               for label, name, overrides, eps_t, which in VARIANTS]  # fmt: skip
    for trial in range(args.trials):
        # Each trial starts every method afresh from the same weights, so its steps are new draws of
        # the same setting (more steps per trial would move the setting: radii settle as they train).
        if trial:
            for runner in runners:
                runner.restart()
        torch.manual_seed(0)
        # Interleaved: every pass runs each method over the same batches, so load changes on a shared
        # machine affect all methods alike. Pass 0 is untimed (warm-up; fills ACERT's warm-start cache).
        for rep in range(args.repeats + 1):
            for runner in runners:
                for i, (x, y, index) in enumerate(batches):
                    runner.step(i, x, y, index, record=rep > 0)
            console.print(f"  trial {trial + 1}/{args.trials}: pass {rep + 1}/{args.repeats + 1} done")
    results = {r.label: r.summary() for r in runners}
    for r in runners:
        results[r.label]["quality"] = r.radius_quality(batches) if r.label.startswith("adaptive") else float("nan")
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    title = (f"Training step, cnn3, batch {BATCH}, eps_t = eps = {EPS}, {args.threads} threads ({source}), "
             f"allocator tuned: {tuned}, load average {load}")
    table = Table(title=title)
    for col in ("method", "median ms", "x standard", "x ibp", "cpu ms", "cpu x ibp", "propagations/sample",
                "bound passes/step", "search passes/sample", "radius / exact"):
        table.add_column(col, justify="left" if col == "method" else "right")
    std, ibp, ibp_cpu = results["standard"]["ms"], results["ibp"]["ms"], results["ibp"]["cpu_ms"]
    for label, r in results.items():
        cells = ["" if v != v else f"{v:.2f}" for v in (r["passes"], r["radius_passes"])]
        cells.append("" if r["quality"] != r["quality"] else f"{r['quality']:.4f}")
        table.add_row(label, f"{r['ms']:.1f}", f"{r['ms'] / std:.2f}", f"{r['ms'] / ibp:.2f}", f"{r['cpu_ms']:.1f}",
                      f"{r['cpu_ms'] / ibp_cpu:.2f}", f"{r['props']:.1f}", *cells)  # fmt: skip
    console.print(table)
    ratio = results["adaptive"]["ms"] / ibp
    verdict = "meets" if ratio <= 1.3 else "misses"
    cold = results["adaptive, no warm start"]
    early_ibp = results[f"ibp, early ramp (clean-trained model, eps_t {EARLY_EPS})"]
    early = results[f"adaptive, early ramp (eps_t {EARLY_EPS})"]
    early_ratio = early["ms"] / early_ibp["ms"]
    console.print(f"Early ramp: ACERT step = {early_ratio:.2f}x an IBP step "
                  f"({'meets' if early_ratio <= 1.5 else 'misses'} the 1.5x target; "
                  f"CPU {early['cpu_ms'] / early_ibp['cpu_ms']:.2f}x).")
    console.print(f"ACERT step = {ratio:.2f}x an IBP step ({verdict} the 1.3x target); without warm start "
                  f"{cold['ms'] / ibp:.2f}x. CPU time: {results['adaptive']['cpu_ms'] / ibp_cpu:.2f}x and "
                  f"{cold['cpu_ms'] / ibp_cpu:.2f}x (steadier on a busy machine).")  # fmt: skip


if __name__ == "__main__":
    main()
