"""Test helpers for compare and the leaderboard site.

``results_root`` returns the committed fixture of real run cards (``tests/fixtures/results/``, made by
short real runs of the pipeline) when it exists. Until then it writes a small *synthetic* results
folder: cards, history.csv and radii.parquet that are internally consistent (every metric in a card is
computed from its own per-sample radii), so the same tests run against either source. Synthetic numbers
are generated in a temporary folder at test time and never committed.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FIXTURE_RESULTS = Path(__file__).parent / "fixtures" / "results"

TRACK = "fashion-mnist"
EPS = 0.1
EPS_TEST = [0.05, 0.1]
EPS_GRID = [round(0.01 * i, 2) for i in range(11)]
VERIFIERS = ("ibp", "crown-ibp")

# (method, title, key_param, key values, clean accuracy level, robustness level)
SYNTHETIC_METHODS: list[tuple[str, str, str | None, list[float], float, float]] = [
    ("standard", "Standard training", None, [0.0], 0.9, 0.02),
    ("ibp", "IBP (Shi et al.)", "kappa", [0.0, 0.5], 0.72, 0.6),
    ("adaptive", "ACERT (adaptive radii)", "kappa", [0.0, 0.25, 0.5], 0.8, 0.55),
    ("sabr", "SABR", "lambda", [0.1, 0.4], 0.82, 0.45),
]
SEEDS = (0, 1)


def results_root(tmp_path: Path) -> Path:
    """The real fixture when committed, else a synthetic results folder written under ``tmp_path``."""
    if any(FIXTURE_RESULTS.glob("*/*/card.json")):
        return FIXTURE_RESULTS
    return write_synthetic_results(tmp_path / "results")


def track_dict(preset: str = "quick") -> dict[str, Any]:
    """A track section shaped like ``Track.to_dict()`` plus the preset."""
    return {
        "name": TRACK,
        "title": "Fashion-MNIST, eps 0.1, CNN3",
        "dataset": TRACK,
        "model": "cnn3",
        "eps": EPS,
        "eps_test": list(EPS_TEST),
        "eps_grid": list(EPS_GRID),
        "budget": {"kind": "epochs", "value": 3},
        "preset": preset,
    }


def _radii(rng: np.random.Generator, n: int, acc: float, robust: float) -> pd.DataFrame:
    """Per-sample records with radius_ibp <= radius_crown-ibp and radii capped at EPS."""
    correct = rng.random(n) < acc
    base = np.clip(rng.beta(2.0, 2.0, n) * EPS * 2 * robust, 0.0, EPS)
    base[rng.random(n) < robust * 0.4] = EPS
    ibp = np.where(correct, base * rng.uniform(0.6, 1.0, n), 0.0)
    crown = np.where(correct, np.maximum(ibp, base), 0.0)
    attack = np.where(correct, np.minimum(crown + rng.uniform(0.0, 0.05, n), np.inf), 0.0)
    attack[attack > EPS] = np.inf
    labels = rng.integers(0, 10, n)
    return pd.DataFrame(
        {
            "index": np.arange(n),
            "label": labels,
            "prediction": np.where(correct, labels, (labels + 1) % 10),
            "correct": correct,
            "radius_ibp": ibp,
            "radius_crown-ibp": crown,
            "radius_crown": np.full(n, np.nan),
            "radius_best": crown,
            "radius_attack": attack,
            "status": np.where(correct, "certified", "misclassified"),
        }
    )


def _certified(radii: pd.DataFrame, column: str, eps: float) -> float:
    return float((radii["correct"] & (radii[column] >= eps - 1e-12) & ((radii[column] > 0) | (eps == 0))).mean())


def _metrics(radii: pd.DataFrame) -> dict[str, Any]:
    """The card's metrics section computed from the per-sample radii."""
    columns = {"ibp": "radius_ibp", "crown-ibp": "radius_crown-ibp", "best": "radius_best"}
    return {
        "clean_accuracy": float(radii["correct"].mean()),
        "samples": len(radii),
        "eps_grid": list(EPS_GRID),
        "acr": {v: float(radii[c].mean()) for v, c in columns.items()},
        "certified_accuracy": {v: [_certified(radii, c, e) for e in EPS_GRID] for v, c in columns.items()},
        "attack_accuracy": [float((radii["correct"] & (radii["radius_attack"] > e)).mean()) for e in EPS_GRID],
        "eps_test": list(EPS_TEST),
        "certified_accuracy_test": {v: [_certified(radii, c, e) for e in EPS_TEST] for v, c in columns.items()},
    }


def _history(rng: np.random.Generator, epochs: int, acc: float) -> pd.DataFrame:
    epoch = np.arange(1, epochs + 1)
    frac = epoch / epochs
    return pd.DataFrame(
        {
            "epoch": epoch,
            "eps_t": EPS * np.minimum(1.0, frac * 1.5),
            "lr": 1e-3 * (1 - 0.5 * frac),
            "loss": 2.0 - frac + rng.uniform(0, 0.05, epochs),
            "robust_loss": 2.2 - frac,
            "clean_loss": 1.5 - frac,
            "reg_loss": 0.1 * (1 - frac),
            "train_acc": acc * (0.7 + 0.3 * frac),
            "val_acc": acc * (0.68 + 0.3 * frac),
            "val_ibp_cert_acc": acc * 0.5 * frac,
            "val_ibp_acr": EPS * 0.3 * frac,
            "seconds": 2.0 * epoch,
            "propagations": 1.2e6 * epoch,
        }
    )


def make_card(
    run_id: str, method: str, title: str, key_param: str | None, key_value: float, seed: int,
    metrics: dict[str, Any] | None, status: str = "complete", epochs: int = 3,
) -> dict[str, Any]:
    """A schema-1 card shaped like the pipeline's."""
    params = {key_param: key_value} if key_param else {}
    card: dict[str, Any] = {
        "schema": 1,
        "run_id": run_id,
        "status": status,
        "created": f"2025-01-0{1 + seed}T10:00:00Z",
        "updated": f"2025-01-0{1 + seed}T10:05:00Z",
        "command": f"actbench run --method {method} --dataset {TRACK} --preset quick --seed {seed}"
        + (f" --{key_param} {key_value:g}" if key_param else ""),
        "track": track_dict(),
        "method": {"name": method, "title": title, "objective": method, "params": params,
                   "spec": f"baselines/{method}.toml", "key_param": key_param},
        "model": {"name": "cnn3", "parameters": 123456},
        "seed": seed,
        "data": {"dataset": TRACK, "train_size": 1000, "val_size": 200, "test_size": 200, "train_subset": 1000},
        "budget": {"limit": {"kind": "epochs", "value": epochs},
                   "used": {"epochs": epochs, "seconds": 6.0 + seed, "propagations": 3.6e6},
                   "stopped_by": "epochs"},
        "selection": {"rule": "val-acceps", "epoch": epochs, "value": 0.5},
        "certification": {"verifiers": list(VERIFIERS), "dtype": "float64", "samples": 200, "eps_max": EPS,
                          "seconds": {"ibp": 0.1, "crown-ibp": 0.5}, "attack": {"steps": 10}, "unknown": 0},
        "environment": {"actbench": "0.1.0", "torch": "2.x", "python": "3.11", "device": "cpu",
                        "threads": 2, "git_commit": "0000000"},
        "files": {"history": "history.csv", "radii": "radii.parquet", "model": "model.pt"},
    }
    if metrics is not None:
        card["metrics"] = metrics
    return card


def write_synthetic_results(root: Path, samples: int = 200) -> Path:
    """Write a small, internally consistent results folder (several methods, key values and seeds)."""
    rng = np.random.default_rng(1234)
    for method, title, key_param, values, acc, robust in SYNTHETIC_METHODS:
        for i, value in enumerate(values):
            for seed in SEEDS:
                # a larger key value trades robustness for clean accuracy, as kappa does
                shift = (i / max(1, len(values) - 1)) if len(values) > 1 else 0.0
                radii = _radii(rng, samples, min(0.97, acc + 0.1 * shift), robust * (1 - 0.5 * shift))
                run_id = f"{method}-{'' if key_param is None else f'{key_param}{value:g}-'}s{seed}"
                run_dir = root / TRACK / run_id
                run_dir.mkdir(parents=True, exist_ok=True)
                card = make_card(run_id, method, title, key_param, value, seed, _metrics(radii))
                (run_dir / "card.json").write_text(json.dumps(card, indent=2))
                radii.to_parquet(run_dir / "radii.parquet", index=False)
                _history(rng, 3, acc).to_csv(run_dir / "history.csv", index=False)
    # a run still training: has a card but must not count in tables
    run_dir = root / TRACK / "ibp-running"
    run_dir.mkdir(parents=True, exist_ok=True)
    card = make_card("ibp-running", "ibp", "IBP (Shi et al.)", "kappa", 0.0, 7, None, status="training")
    (run_dir / "card.json").write_text(json.dumps(card, indent=2))
    return root


def raw_cards(root: Path) -> list[dict[str, Any]]:
    """Every parseable complete card under ``root``, read with plain json (independent of actbench)."""
    cards = []
    for path in sorted(root.glob("*/*/card.json")):
        try:
            card = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(card, dict) and card.get("schema") == 1 and card.get("status") == "complete":
            cards.append(card)
    return cards


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def add_budget_twin(root: Path, kind: str = "propagations", value: float = 1.5e6) -> dict[str, Any]:
    """Copy the first complete run under ``root`` as a run given another budget limit; returns the new card."""
    card_path = next(p for p in sorted(root.glob("*/*/card.json")) if json.loads(p.read_text())["status"] == "complete")
    card = json.loads(card_path.read_text())
    twin = card_path.parent.parent / (card_path.parent.name + f"-{kind}")
    shutil.copytree(card_path.parent, twin)
    card["run_id"] = twin.name
    card["budget"]["limit"] = {"kind": kind, "value": value}
    (twin / "card.json").write_text(json.dumps(card))
    return card
