"""Per-step loss and statistics summed on the device, read by the host only every few steps.

Reading a GPU value (``float(loss)``, ``bool(torch.isfinite(loss))``) blocks the host until the GPU has
finished every queued kernel, so the host can no longer prepare the next step while the GPU computes.
The trainer therefore adds each step's loss and stats here as device tensors and reads them in one
transfer every ``interval`` steps (:func:`actbench.device.sync_interval`: every step on the CPU, where
reading is free, every 50 on a GPU) and at the end of each epoch. Divergence (a non-finite loss) is
detected at those reads, before the epoch's validation and checkpoint, so a diverged model is never
selected or saved.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from actbench.errors import ActbenchError


class StepTally:
    """Batch-size-weighted sums of the training loss and the objective's stats over one epoch."""

    def __init__(self, interval: int) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.interval = interval
        self.sums: dict[str, float] = defaultdict(float)
        self._stats: dict[str, torch.Tensor | float] = {}
        self._losses: list[torch.Tensor | float] = []
        self._sizes: list[int] = []
        self._steps: list[int] = []

    @property
    def pending(self) -> int:
        """Steps added since the last read."""
        return len(self._steps)

    def add(self, step: int, loss: torch.Tensor, stats: dict[str, torch.Tensor | float], n: int) -> None:
        """Add one step (``step`` counts from 0 within the epoch) of ``n`` samples; no host read."""
        for key, value in stats.items():
            weighted = value.detach().double() * n if isinstance(value, torch.Tensor) else float(value) * n
            self._stats[key] = self._stats.get(key, 0.0) + weighted
        self._losses.append(loss.detach().double().reshape(()) if isinstance(loss, torch.Tensor) else float(loss))
        self._sizes.append(n)
        self._steps.append(step)

    def due(self) -> bool:
        return len(self._steps) >= self.interval

    def flush(self, objective: str, epoch: int) -> tuple[int, float]:
        """Read the pending values in one transfer; returns ``(steps read, last step's loss)``.

        Raises :class:`ActbenchError` naming the first step whose loss was not finite.
        """
        keys = list(self._stats)
        values = [*self._stats.values(), *self._losses]
        tensors = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor)]
        if tensors:
            read = torch.stack([values[i].double().reshape(()) for i in tensors]).tolist()  # the one host read
            for i, v in zip(tensors, read, strict=True):
                values[i] = v
        stats, losses = values[: len(keys)], [float(v) for v in values[len(keys):]]
        steps, sizes = self._steps, self._sizes
        self._stats, self._losses, self._sizes, self._steps = {}, [], [], []
        for step, loss in zip(steps, losses, strict=True):
            if not math.isfinite(loss):
                raise ActbenchError(
                    f"training diverged: the {objective} loss is {loss} at epoch {epoch + 1}, step {step + 1}; "
                    "lower the learning rate or check the method's parameters"
                )
        self.sums["loss"] += sum(loss * n for loss, n in zip(losses, sizes, strict=True))
        for key, value in zip(keys, stats, strict=True):
            self.sums[key] += float(value)
        return len(steps), losses[-1]
