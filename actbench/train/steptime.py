"""Time of one training step of a track's model, method and batch size on a device; the run-time estimate.

A step is what the trainer does per batch: the objective's loss at the track's full eps, backward,
gradient clipping and an Adam step, on random [0,1] images of the track's shape labelled with the
model's own predictions (so every sample is correctly classified and ACERT searches the radius of each:
its costliest case). Each timed step ends
with a device synchronisation, so GPU time is counted, and the median of a few steps is reported. On
CUDA the number of host synchronisations inside a step (``torch.cuda.set_sync_debug_mode``) is counted
as well: each one stalls the host until the GPU is idle.

:func:`run_estimate` turns a step time into the time of a whole run of the track: steps per epoch x
epochs, plus validation and certification as multiples of a step (see there). It is an estimate: the
real cost of ACERT's radius search depends on how robust the model is at each point of training.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from dataclasses import dataclass

import torch

from actbench.config import Track, load_track
from actbench.data import get_info
from actbench.models import create_model, ibp_init
from actbench.objectives import create_objective, load_method
from actbench.objectives.base import StepContext
from actbench.objectives.cost import PropagationCounter


@dataclass
class StepTiming:
    track: str
    method: str
    device: str
    batch_size: int
    ms: float  # median wall time of one step
    gflop: float  # matmul/convolution work of one step (forward and backward), in 1e9 floating-point operations
    syncs: float | None  # host synchronisations per step (CUDA only)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(track_name: str, method: str, device: str = "cpu", batch_size: int | None = None, steps: int = 5,
               warmup: int = 2, seed: int = 0) -> StepTiming:
    """Median time of ``steps`` training steps (after ``warmup`` untimed ones) of ``method`` on the track."""
    from torch.utils.flop_counter import FlopCounterMode

    track = load_track(track_name)
    info = get_info(track.dataset)
    dev = torch.device(device)
    batch = batch_size or track.batch_size
    torch.manual_seed(seed)
    model = ibp_init(create_model(track.model, info.in_shape, info.num_classes, info.mean, info.std)).to(dev).train()
    objective = create_objective(load_method(method, track.name, {}), track)
    objective.setup(batch, dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *info.in_shape, generator=gen).to(dev)
    with torch.no_grad():  # the model's own predictions: every sample is "correct", so ACERT searches them all
        y = model(x).argmax(1)
    index = torch.arange(batch)

    def step(i: int) -> None:
        ctx = StepContext(eps_t=track.eps, eps=track.eps, epoch=track.warmup_epochs + track.ramp_epochs, step=i,
                          reg_phase=False, reg_weight=0.0, indices=index, counter=PropagationCounter(),
                          num_classes=info.num_classes, w_tight=track.reg_tightness, w_relu=track.reg_relu)
        loss, _ = objective.loss(model, x, y, ctx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), track.grad_clip)
        optimizer.step()

    for i in range(warmup):
        step(i)
    times = []
    for i in range(steps):
        _sync(dev)
        start = time.perf_counter()
        step(warmup + i)
        _sync(dev)
        times.append(time.perf_counter() - start)
    syncs = _count_syncs(step, dev) if dev.type == "cuda" else None
    counter = FlopCounterMode(display=False)
    with counter:
        step(0)
    return StepTiming(track.name, method, dev.type, batch, 1000 * statistics.median(times),
                      counter.get_total_flops() / 1e9, syncs)


def _count_syncs(step, dev: torch.device, repeats: int = 2) -> float:
    """Host synchronisations per step, as reported by CUDA's sync debug mode."""
    _sync(dev)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for i in range(repeats):
                step(i)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught) / repeats


def steps_per_run(track: Track) -> int:
    """Training steps of a full run of the track: epochs x ceil(training images / batch size)."""
    info = get_info(track.dataset)
    train = track.train_subset or (info.train_size - track.val_size)
    return int(track.budget.value) * math.ceil(train / track.batch_size)


def run_estimate(track: Track, step_ms: float, cert_ms_per_sample: float) -> dict[str, float]:
    """Hours of one full run: training steps at ``step_ms``, plus certifying the track's test samples at
    ``cert_ms_per_sample`` (cascade and attack), plus per-epoch validation on ``selection_samples``
    (counted as that many samples of training, an upper bound: validation has no backward pass)."""
    info = get_info(track.dataset)
    steps = steps_per_run(track)
    validation = int(track.budget.value) * track.selection_samples / track.batch_size
    samples = track.certify_samples or info.test_size
    train_h = (steps + validation) * step_ms / 3.6e6
    cert_h = samples * cert_ms_per_sample / 3.6e6
    return {"steps": steps, "train_hours": train_h, "certify_hours": cert_h, "total_hours": train_h + cert_h}
