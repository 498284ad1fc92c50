"""The training loop shared by every method: one objective, one budget, one selection rule.

Per step: the objective's loss at the scheduled eps (plus the track's L1 penalty), backward, gradient
norm clipping (``track.grad_clip``), an Adam step and an LR-scheduler step. After every epoch:
validation metrics, model selection, ``history.csv`` and an atomic checkpoint, so an interrupted run
resumes at the last completed epoch and ends with the same metrics as an uninterrupted one (CPU).

Seeding: ``train`` seeds torch's RNG and the data-order generator from ``seed``, so everything it
draws (IBP initialisation, shuffling, augmentation, attack starts) is reproducible. The initial weights
of layers that IBP init does not redraw are the caller's: create the model right after
``torch.manual_seed(seed)`` (as the runner does) for a fully reproducible run.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from actbench.config import Budget, Track
from actbench.data import Splits
from actbench.errors import ActbenchError, InvalidConfig
from actbench.models import ibp_init
from actbench.objectives.base import Objective, StepContext
from actbench.objectives.cost import PropagationCounter
from actbench.objectives.losses import l1_penalty
from actbench.train.budget import BudgetMeter, planned_epochs
from actbench.train.checkpoint import checkpoint_path, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from actbench.train.history import write_history
from actbench.train.progress import EpochProgress
from actbench.train.schedules import EpsSchedule, make_lr_scheduler
from actbench.train.selection import Selector, evaluate

STANDARD_STATS = ("loss", "robust_loss", "clean_loss", "reg_loss", "train_acc")


@dataclass
class TrainResult:
    """What :func:`train` returns: the selected model (eval mode) and the run's record."""

    model: nn.Module
    history: list[dict[str, Any]]
    used: dict[str, float]
    stopped_by: str
    selection: dict[str, Any]


def _run_config(track: Track, objective: Objective, seed: int, budget: Budget, epochs: int, steps: int,
                train_size: int) -> dict[str, Any]:
    """What identifies a run for resuming: a checkpoint of another configuration is refused."""
    return {
        "objective": objective.name, "params": dict(objective.params), "seed": seed, "track": track.name,
        "eps": track.eps, "batch_size": track.batch_size, "lr": track.lr, "lr_schedule": track.lr_schedule,
        "warmup_epochs": track.warmup_epochs, "ramp_epochs": track.ramp_epochs, "budget": str(budget),
        "planned_epochs": epochs, "steps_per_epoch": steps, "train_size": train_size,
    }  # fmt: skip


def _check_inputs(splits: Splits, track: Track, budget: Budget) -> None:
    if not isinstance(budget, Budget):
        raise InvalidConfig(f"budget must be an actbench.config.Budget, got {budget!r}")
    if len(splits.train) == 0:
        raise InvalidConfig("the training split is empty")
    if track.batch_size < 1:
        raise InvalidConfig(f"batch size must be >= 1, got {track.batch_size}")
    if track.selection != "last" and (track.selection_samples < 1 or len(splits.val) == 0):
        raise InvalidConfig(f"selection {track.selection} needs a validation split and selection_samples >= 1")
    if track.grad_clip < 0 or track.l1 < 0 or track.lr <= 0:
        raise InvalidConfig("track needs lr > 0, grad_clip >= 0 and l1 >= 0")


def train(
    model: nn.Module,
    splits: Splits,
    track: Track,
    objective: Objective,
    *,
    budget: Budget,
    run_dir: Path | str,
    seed: int,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    on_resume: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``model`` with ``objective`` on ``splits.train`` under ``budget``; select on validation.

    Writes ``run_dir/history.csv`` and ``run_dir/checkpoint.pt`` after every epoch. With ``resume``
    an existing checkpoint of the same configuration is continued (a finished one is returned as is), after
    calling ``on_resume(epochs_done, planned_epochs)``.
    """
    _check_inputs(splits, track, budget)
    run_dir = Path(run_dir)
    dev = torch.device(device)
    steps_per_epoch = splits.train.num_batches(track.batch_size)
    epochs = planned_epochs(budget, track)
    schedule = EpsSchedule(track.eps, track.warmup_epochs, track.ramp_epochs, steps_per_epoch)
    selector = Selector(track.selection)
    val_split = splits.val.subset(track.selection_samples)
    config = _run_config(track, objective, seed, budget, epochs, steps_per_epoch, len(splits.train))

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model.to(dev)
    if objective.ibp_init:
        ibp_init(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=track.lr)
    scheduler = make_lr_scheduler(optimizer, track.lr_schedule, track.lr, epochs, steps_per_epoch,
                                  tuple(track.lr_milestones), track.lr_gamma)  # fmt: skip
    objective.setup(len(splits.train), dev)
    meter = BudgetMeter(budget, epochs, steps_per_epoch)
    counter = PropagationCounter()
    history: list[dict[str, Any]] = []
    start_epoch = 0

    blob = load_checkpoint(run_dir, config) if resume else None
    if blob is None:
        checkpoint_path(run_dir).unlink(missing_ok=True)
    else:
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        objective.load_state_dict(blob["objective"])
        meter.load_state_dict(blob["meter"])
        counter.load_state_dict(blob["counter"])
        selector.load_state_dict(blob["selection"])
        history = list(blob["history"])
        start_epoch = int(blob["epoch"])
        set_rng_state(blob["rng"], generator, dev)
        if on_resume is not None:
            on_resume(start_epoch, epochs)
        if blob.get("finished"):
            return _result(model, selector, history, meter)

    def checkpoint(epoch: int, finished: bool) -> None:
        save_checkpoint(run_dir, {
            "config": config, "epoch": epoch, "finished": finished, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "objective": objective.state_dict(), "meter": meter.state_dict(), "counter": counter.state_dict(),
            "selection": selector.state_dict(), "history": history, "rng": rng_state(generator, dev),
        })  # fmt: skip

    model.train()
    with EpochProgress(enabled=progress, steps_per_epoch=steps_per_epoch, epochs=epochs) as bar:
        for epoch in range(start_epoch, epochs):
            sums, seen, lr_used = _run_epoch(
                model, splits, track, objective, optimizer, scheduler, schedule, meter, counter, generator,
                dev, epoch, bar,
            )  # fmt: skip
            if seen == 0:  # the budget was spent before this epoch's first step
                break
            val = evaluate(model, val_split, track.eps, track.batch_size, dev, pgd=selector.needs_pgd)
            eps_now = schedule.value(meter.steps)
            selector.update(epoch + 1, val, meter.steps >= schedule.final, model)
            row: dict[str, Any] = {"epoch": epoch + 1, "eps_t": eps_now, "lr": lr_used}
            row.update({k: v / seen for k, v in sums.items()})
            row.update({"val_acc": val.acc, "val_ibp_cert_acc": val.cert_acc, "val_ibp_acr": val.acr,
                        "val_acceps": val.acceps, **({"val_pgd_acc": val.pgd_acc} if selector.needs_pgd else {}),
                        "seconds": round(meter.seconds, 3),
                        "propagations": meter.propagations})  # fmt: skip
            history.append(row)
            write_history(run_dir, history)
            finished = meter.stopped_by is not None or meter.schedule_done()
            checkpoint(epoch + 1, finished)
            if finished:
                break
    if meter.stopped_by is None:
        meter.schedule_done()
    meter.stopped_by = meter.stopped_by or "epochs"
    checkpoint(len(history), True)
    return _result(model, selector, history, meter)


def _run_epoch(
    model: nn.Module, splits: Splits, track: Track, objective: Objective, optimizer: torch.optim.Optimizer,
    scheduler: Any, schedule: EpsSchedule, meter: BudgetMeter, counter: PropagationCounter,
    generator: torch.Generator, dev: torch.device, epoch: int, bar: EpochProgress,
) -> tuple[dict[str, float], int, float]:
    """One (possibly partial) epoch; returns batch-size-weighted stat sums, samples seen and last LR."""
    steps_per_epoch = schedule.steps_per_epoch
    sums: dict[str, float] = defaultdict(float)
    seen = 0
    lr_used = optimizer.param_groups[0]["lr"]
    batches = splits.train.batches(track.batch_size, shuffle=True, generator=generator, train=True)
    reg_phase = epoch < track.warmup_epochs + track.ramp_epochs
    bar.start_epoch(epoch)
    for b in range(steps_per_epoch):
        if meter.exhausted_before_step():
            break
        start = time.perf_counter()
        x, y, index = next(batches)
        x, y = x.to(dev), y.to(dev)
        step = epoch * steps_per_epoch + b
        eps_t = schedule.value(step + 1)
        reg_weight = 0.0
        if reg_phase and objective.shi_reg:
            reg_weight = 1.0 - eps_t / track.eps if track.eps > 0 else 1.0
        ctx = StepContext(
            eps_t=eps_t, eps=track.eps, epoch=epoch, step=step, reg_phase=reg_phase, reg_weight=reg_weight,
            indices=index, counter=counter, num_classes=splits.info.num_classes, w_tight=track.reg_tightness,
            w_relu=track.reg_relu,
        )  # fmt: skip
        before = counter.total
        loss, stats = objective.loss(model, x, y, ctx)
        total = loss + track.l1 * l1_penalty(model) if track.l1 > 0 else loss
        if not bool(torch.isfinite(total)):
            raise ActbenchError(
                f"training diverged: the {objective.name} loss is {float(total)} at epoch {epoch + 1}, step "
                f"{b + 1}; lower the learning rate or check the method's parameters"
            )
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if track.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), track.grad_clip)
        optimizer.step()
        lr_used = optimizer.param_groups[0]["lr"]
        scheduler.step()
        meter.record_step(time.perf_counter() - start, counter.total - before)
        n = int(y.shape[0])
        seen += n
        sums["loss"] += float(total.detach()) * n
        for key, value in stats.items():
            sums[key] += float(value) * n
        bar.advance(float(total.detach()), eps_t)
        if meter.exhausted_after_step():
            break
    return dict(sums), seen, lr_used


def _result(model: nn.Module, selector: Selector, history: list[dict[str, Any]], meter: BudgetMeter) -> TrainResult:
    """Load the selected weights and package the run's record."""
    if selector.state is not None:
        model.load_state_dict(selector.state)
    model.eval()
    return TrainResult(model, history, meter.used(), meter.stopped_by or "epochs", selector.summary())
