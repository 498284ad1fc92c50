"""A per-epoch rich progress bar with ETA (a no-op when disabled)."""

from __future__ import annotations

from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class EpochProgress:
    """One bar per epoch showing steps, elapsed time, ETA, the running loss and eps_t."""

    def __init__(self, enabled: bool, steps_per_epoch: int, epochs: int):
        self.enabled, self.steps_per_epoch, self.epochs = enabled, steps_per_epoch, epochs
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  eps {task.fields[eps]:.4g}"),
            )  # fmt: skip
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start_epoch(self, epoch: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(
                "train", total=self.steps_per_epoch, epoch=epoch + 1, epochs=self.epochs, loss=float("nan"), eps=0.0
            )

    def advance(self, eps: float, steps: int = 1, loss: float = float("nan")) -> None:
        """``steps`` more steps done; ``loss`` is the last one's (read from the device with them)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=steps, loss=loss, eps=eps)
