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
        self._pending: dict[str, torch.Tensor | float] = {}
        self._last: torch.Tensor | float = math.nan
        self._steps: list[int] = []

    @property
    def pending(self) -> int:
        """Steps added since the last read."""
        return len(self._steps)

    def add(self, step: int, loss: torch.Tensor, stats: dict[str, torch.Tensor | float], n: int) -> None:
        """Add one step (``step`` counts from 0 within the epoch) of ``n`` samples; no host read."""
        for key, value in (("loss", loss), *stats.items()):
            weighted = value.detach().double() * n if isinstance(value, torch.Tensor) else float(value) * n
            self._pending[key] = self._pending.get(key, 0.0) + weighted
        self._last = loss.detach()
        self._steps.append(step)

    def due(self) -> bool:
        return len(self._steps) >= self.interval

    def flush(self, objective: str, epoch: int) -> tuple[int, float]:
        """Read the pending sums in one transfer; returns ``(steps read, last loss)``.

        Raises :class:`ActbenchError` when the loss of one of those steps was not finite.
        """
        keys = list(self._pending)
        values = [*self._pending.values(), self._last]
        tensors = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor)]
        if tensors:
            read = torch.stack([values[i].double().reshape(()) for i in tensors]).tolist()  # the one host read
            for i, v in zip(tensors, read, strict=True):
                values[i] = v
        steps, last = self._steps, float(values[-1])
        self._pending, self._steps, self._last = {}, [], math.nan
        if not math.isfinite(float(values[0])):
            where = f"step {steps[0] + 1}" if len(steps) == 1 else f"steps {steps[0] + 1}-{steps[-1] + 1}"
            raise ActbenchError(
                f"training diverged: the {objective} loss is {float(values[0])} at epoch {epoch + 1}, {where}; "
                "lower the learning rate or check the method's parameters"
            )
        for key, value in zip(keys, values[:-1], strict=True):
            self.sums[key] += float(value)
        return len(steps), last
