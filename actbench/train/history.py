"""``history.csv``: one row per epoch, rewritten atomically after every epoch."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from actbench.store import HISTORY_FILE, atomic_write

COLUMNS = (
    "epoch", "eps_t", "lr", "loss", "robust_loss", "clean_loss", "reg_loss", "train_acc",
    "val_acc", "val_ibp_cert_acc", "val_ibp_acr", "val_acceps", "seconds", "propagations",
)  # fmt: skip


def columns(history: list[dict[str, Any]]) -> list[str]:
    """The fixed columns, then any method statistics (e.g. ``adaptive_radius``) in first-seen order."""
    extra: list[str] = []
    for row in history:
        extra += [k for k in row if k not in COLUMNS and k not in extra]
    return [*COLUMNS, *extra]


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> Path:
    """Write ``run_dir/history.csv`` atomically; cells that do not apply to the method stay empty."""
    path = Path(run_dir) / HISTORY_FILE
    header = columns(history)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for row in history:
                writer.writerow([_cell(row.get(col)) for col in header])

    atomic_write(path, write)
    return path
