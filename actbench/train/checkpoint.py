"""Training checkpoints: written atomically after every epoch to ``run_dir/checkpoint.pt``.

A checkpoint holds everything needed to continue a run as if it had never stopped: model, optimiser
and LR-scheduler state, completed epochs and global step, the data-order and torch RNG states,
history, the selected model so far, the used budget and the objective's own state (ACERT's radius
cache). ``config`` identifies the run; resuming with a different config is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from actbench.errors import CheckpointError
from actbench.store import CHECKPOINT_FILE, atomic_write

FORMAT = "actbench-train-checkpoint-v1"


def checkpoint_path(run_dir: Path | str) -> Path:
    return Path(run_dir) / CHECKPOINT_FILE


def rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """RNG states to restore: the data-order generator, torch's CPU RNG and (on CUDA) the GPU RNG."""
    state = {"data": generator.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator, device: torch.device) -> None:
    generator.set_state(state["data"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(run_dir: Path | str, blob: dict[str, Any]) -> Path:
    """Atomically write ``blob`` (plus the format tag) as the run's checkpoint."""
    path = checkpoint_path(run_dir)
    payload = {"format": FORMAT, **blob}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return path


def load_checkpoint(run_dir: Path | str, config: dict[str, Any]) -> dict[str, Any] | None:
    """The run's checkpoint, or None when there is none. Raises :class:`CheckpointError` when it is
    corrupt or belongs to a different configuration."""
    path = checkpoint_path(run_dir)
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc}); "
                              "delete it to start the run again") from exc  # fmt: skip
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an actbench training checkpoint; delete it to start again")
    saved = blob.get("config", {})
    diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    if diff:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {config.get(k)!r}" for k in diff)
        raise CheckpointError(f"{path} belongs to a different run configuration ({details}); "
                              "use a new run folder or delete the checkpoint")  # fmt: skip
    return blob
