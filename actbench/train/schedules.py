"""The eps ramp (ACERT.md §2.5) and the learning-rate schedules, both stepped per training batch.

**eps** (the smoothed schedule of Shi et al. 2021 / auto_LiRPA, mid-point 0.25, exponent 4): with
``L`` batches per epoch, ``init = warmup_epochs·L``, ``final = (warmup_epochs + ramp_epochs)·L`` and
``mid = init + ⌊0.25·(final − init)⌋``, the batch with 1-based global index ``s`` trains at

- ``0`` for ``s ≤ init`` (the warm-up epochs are clean),
- ``α·(s − init)^4`` for ``init < s < mid``, ``α = eps / ((final − mid)·4·(mid − init)^3 + (mid − init)^4)``
  (so the slope is continuous at ``mid``),
- linear from ``α·(mid − init)^4`` to ``eps`` for ``mid ≤ s ≤ final``, and ``eps`` after.

So the last batch of the ramp trains at exactly ``eps``. A ramp shorter than 4 batches is linear.

**LR**: ``multistep`` multiplies the LR by ``lr_gamma`` at each milestone (fractions of the planned
epochs, rounded to whole epochs, as fast-IBP's MultiStepLR stepped per epoch); ``onecycle`` is
PyTorch's OneCycleLR as in ACERT (pct_start 0.3, linear, three_phase, div 25, final_div 100) over
``planned_epochs·L`` iterations. ``cycle_momentum`` is left on, as in the ACERT reference: with Adam
it cycles β1 between 0.95 and 0.85 inversely to the LR. This is a deliberate choice to reproduce the
paper's recipe; it applies equally to every method of a onecycle track.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from actbench.errors import InvalidConfig

POLY_EXPONENT = 4
MID_POINT = 0.25


@dataclass(frozen=True)
class EpsSchedule:
    """eps of every training batch; ``value(s)`` takes the 1-based global batch index."""

    eps: float
    warmup_epochs: int
    ramp_epochs: int
    steps_per_epoch: int

    def __post_init__(self) -> None:
        if self.warmup_epochs < 0 or self.ramp_epochs < 0 or self.steps_per_epoch < 1:
            raise InvalidConfig(
                f"eps schedule needs warmup_epochs >= 0, ramp_epochs >= 0 and >= 1 batch per epoch, got "
                f"{self.warmup_epochs}, {self.ramp_epochs}, {self.steps_per_epoch}"
            )

    @property
    def init(self) -> int:
        return self.warmup_epochs * self.steps_per_epoch

    @property
    def final(self) -> int:
        return (self.warmup_epochs + self.ramp_epochs) * self.steps_per_epoch

    @property
    def mid(self) -> int:
        return self.init + math.floor(MID_POINT * (self.final - self.init))

    def value(self, s: int) -> float:
        """eps for the batch with 1-based global index ``s``."""
        init, mid, final = self.init, self.mid, self.final
        if s <= init:
            return 0.0
        if s >= final:
            return self.eps
        m = mid - init
        if m == 0:  # a ramp of fewer than 4 batches: linear only
            return self.eps * (s - init) / (final - init)
        beta = POLY_EXPONENT
        alpha = self.eps / ((final - mid) * beta * m ** (beta - 1) + m**beta)
        if s < mid:
            return alpha * (s - init) ** beta
        at_mid = alpha * m**beta
        return at_mid + (self.eps - at_mid) * (s - mid) / (final - mid)

    def end_of_epoch(self, epoch: int) -> float:
        """eps of the last batch of (0-based) ``epoch``."""
        return self.value((epoch + 1) * self.steps_per_epoch)

    def reached(self, epoch: int) -> bool:
        """Whether eps has reached its target by the end of ``epoch``."""
        return (epoch + 1) * self.steps_per_epoch >= self.final


def make_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    lr: float,
    planned_epochs: int,
    steps_per_epoch: int,
    milestones: tuple[float, ...] = (),
    gamma: float = 0.2,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The track's LR schedule as a scheduler stepped once per training batch."""
    total = planned_epochs * steps_per_epoch
    if schedule == "multistep":
        for f in milestones:
            if not 0.0 < f < 1.0:
                raise InvalidConfig(f"lr milestone {f} must be a fraction of the epoch budget in (0, 1)")
        epochs = sorted(round(f * planned_epochs) for f in milestones)

        def factor(step: int) -> float:
            epoch = step // steps_per_epoch
            return gamma ** sum(1 for m in epochs if epoch >= m)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=max(total, 2), pct_start=0.3, anneal_strategy="linear",
            three_phase=True, div_factor=25.0, final_div_factor=100.0, cycle_momentum=True,
        )  # fmt: skip
    raise InvalidConfig(f"lr schedule {schedule!r}: choose multistep or onecycle")
