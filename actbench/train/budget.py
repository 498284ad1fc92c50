"""Compute budgets: how many epochs the schedules are planned for, and when training must stop.

A run has one limit (``Budget``: epochs, seconds or propagations) and records all three quantities:

- ``epochs``: training steps done divided by steps per epoch (fractional when a seconds or
  propagations limit stops the run mid-epoch);
- ``seconds``: wall-clock time inside training steps (batch preparation, forward/backward passes,
  optimiser step). Per-epoch validation, model selection and checkpoint writes are not counted: they
  follow one rule for every method and are not training compute;
- ``propagations``: forward-equivalent sample passes as defined in ``actbench.objectives.cost``.

The LR and eps schedules need a planned number of epochs. An epochs budget plans exactly its count.
For seconds and propagation budgets the schedules are planned for ``track.schedule_epochs`` (when
set) or else the epoch budget of the registered track of the same name; training then stops when the
limit is hit or the planned epochs are done, whichever comes first (``stopped_by`` says which).

Stopping rule for seconds and propagations: after every step, stop when the limit is reached; before
every step, stop when the previous step's cost would take the run past the limit. With steps of
constant cost the used amount therefore never exceeds the limit and falls short by less than one step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from actbench.config import Budget, Track
from actbench.errors import InvalidConfig, UnknownName


def planned_epochs(budget: Budget, track: Track) -> int:
    """Epochs the LR and eps schedules are planned for (see the module docstring)."""
    if budget.kind == "epochs":
        return int(budget.value)
    if track.schedule_epochs:
        return int(track.schedule_epochs)
    if track.budget.kind == "epochs":
        return int(track.budget.value)
    try:
        from actbench.config import load_track

        registered = load_track(track.name)
    except UnknownName:
        registered = None
    if registered is not None and registered.budget.kind == "epochs":
        return int(registered.budget.value)
    raise InvalidConfig(
        f"a {budget.kind} budget needs a planned number of epochs for the LR and eps schedules: "
        f"set schedule_epochs in track {track.name!r}"
    )


@dataclass
class BudgetMeter:
    """Tracks the used amounts against the limit; ``stopped_by`` is set once a limit stops training."""

    budget: Budget
    planned_epochs: int
    steps_per_epoch: int
    steps: int = 0
    seconds: float = 0.0
    propagations: float = 0.0
    last_step_seconds: float = 0.0
    last_step_propagations: float = 0.0
    stopped_by: str | None = None
    _kinds: tuple[str, ...] = field(default=("seconds", "propagations"), repr=False)

    def record_step(self, seconds: float, propagations: float) -> None:
        self.steps += 1
        self.seconds += seconds
        self.propagations += propagations
        self.last_step_seconds, self.last_step_propagations = seconds, propagations

    def _used(self, kind: str) -> float:
        return self.seconds if kind == "seconds" else self.propagations

    def _last(self, kind: str) -> float:
        return self.last_step_seconds if kind == "seconds" else self.last_step_propagations

    def exhausted_after_step(self) -> bool:
        """True (and ``stopped_by`` set) when the limit has been reached."""
        kind = self.budget.kind
        if kind in self._kinds and self._used(kind) >= self.budget.value:
            self.stopped_by = kind
        return self.stopped_by is not None

    def exhausted_before_step(self) -> bool:
        """True (and ``stopped_by`` set) when one more step like the last would pass the limit."""
        kind = self.budget.kind
        if kind in self._kinds and self.steps > 0 and self._used(kind) + self._last(kind) > self.budget.value:
            self.stopped_by = kind
        return self.stopped_by is not None

    def schedule_done(self) -> bool:
        """True (``stopped_by = "epochs"``) when the planned epochs are complete."""
        if self.steps >= self.planned_epochs * self.steps_per_epoch:
            self.stopped_by = "epochs"
        return self.stopped_by is not None

    def used(self) -> dict[str, float]:
        epochs = self.steps / self.steps_per_epoch
        return {
            "epochs": int(epochs) if float(epochs).is_integer() else round(epochs, 4),
            "seconds": round(self.seconds, 3),
            "propagations": self.propagations,
        }

    def state_dict(self) -> dict:
        return {"steps": self.steps, "seconds": self.seconds, "propagations": self.propagations,
                "last_step_seconds": self.last_step_seconds,
                "last_step_propagations": self.last_step_propagations, "stopped_by": self.stopped_by}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
