"""Run cards: the single source of truth for compare and the site.

A run lives in ``results/<track>/<run-id>/`` with ``card.json`` (this module's schema),
``history.csv`` (one row per epoch), ``radii.parquet`` (per-sample certification records) and
``model.pt`` (git-ignored). Every write is atomic: a temp file in the same folder, then a rename,
so a crash never leaves a half-written card.

Card schema (version ``SCHEMA_VERSION``), keys in order of importance::

    schema      int, SCHEMA_VERSION
    run_id      str, unique within the track folder
    status      "training" | "trained" | "complete" | "failed"
    created, updated   ISO-8601 UTC timestamps
    command     the exact command line that reproduces the run
    track       Track.to_dict() of the track as run (after --preset / --epochs), plus "preset": "full"|"quick"
    method      {"name", "title", "objective", "params": {...}, "spec": path of the TOML}
    model       {"name", "parameters"}
    seed        int
    data        {"dataset", "train_size", "val_size", "test_size", "train_subset"}
    budget      {"limit": {"kind", "value"}, "used": {"epochs", "seconds", "propagations"}, "stopped_by"}
    selection   {"rule", "epoch", "value"}
    metrics     {"clean_accuracy", "samples", "eps_grid": [...],
                 "acr": {verifier|"best": float},
                 "certified_accuracy": {verifier|"best": [one value per eps_grid entry]},
                 "attack_accuracy": [one value per eps_grid entry] | None,
                 "eps_test": [...], "certified_accuracy_test": {verifier|"best": [per eps_test]}}
    certification {"verifiers", "dtype", "samples", "eps_max", "seconds": {verifier: s}, "attack": {...},
                   "unknown": int}
    environment {"actbench", "torch", "python", "device", "threads", "git_commit"}
    files       {"history": "history.csv", "radii": "radii.parquet", "model": "model.pt"}
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actbench.errors import CardError

SCHEMA_VERSION = 1
CARD_FILE = "card.json"
HISTORY_FILE = "history.csv"
RADII_FILE = "radii.parquet"
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
STATUSES = ("training", "trained", "complete", "failed")
REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "schema": int,
    "run_id": str,
    "status": str,
    "track": dict,
    "method": dict,
    "model": dict,
    "seed": int,
    "budget": dict,
    "environment": dict,
}


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temp file over ``path`` (same folder, so atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def validate_card(card: Any, where: str = "card") -> dict[str, Any]:
    """Check the schema version and required keys; raise :class:`CardError` naming what is wrong."""
    if not isinstance(card, dict):
        raise CardError(f"{where}: a card must be a JSON object")
    if card.get("schema") != SCHEMA_VERSION:
        raise CardError(f"{where}: schema {card.get('schema')!r} is not the supported version {SCHEMA_VERSION}")
    for key, kind in REQUIRED_KEYS.items():
        if key not in card:
            raise CardError(f"{where}: missing key {key!r}")
        if not isinstance(card[key], kind):
            raise CardError(f"{where}: key {key!r} should be {getattr(kind, '__name__', kind)}")
    if card["status"] not in STATUSES:
        raise CardError(f"{where}: status {card['status']!r} is not one of {STATUSES}")
    if card["status"] == "complete":
        metrics = card.get("metrics")
        if not isinstance(metrics, dict) or "clean_accuracy" not in metrics:
            raise CardError(f"{where}: a complete card needs metrics.clean_accuracy")
    return card


def write_card(run_dir: Path, card: dict[str, Any]) -> Path:
    """Validate and atomically write ``card.json`` into ``run_dir``; returns its path."""
    card = dict(card)
    card["updated"] = utc_now()
    card.setdefault("created", card["updated"])
    validate_card(card, str(run_dir))
    path = Path(run_dir) / CARD_FILE
    atomic_write_text(path, json.dumps(card, indent=2, sort_keys=False) + "\n")
    return path


def read_card(path: Path) -> dict[str, Any]:
    """Read and validate a card (``path`` is the card file or its run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILE
    if not path.is_file():
        raise CardError(f"no run card at {path}")
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardError(f"{path}: not a readable JSON card ({exc})") from exc
    return validate_card(card, str(path))
