"""Every committed run card is re-checked from its published model, as RobustBench re-checks its entries.

For each complete card under ``results/`` that ships its ``model.pt``, a fixed random sample of its test
samples (the same on every machine: seeded by the run id) is certified again from the model under the
card's headline protocol (its verifiers, eps grid, tolerance and dtype; the attack is not needed to
recompute radii), and must give the card's verdicts: the same predictions, every verifier's radius within
the search tolerance, and the same certified / not certified verdict at every test eps.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from actbench.certify.engine import certify
from actbench.data import Split, is_available, load_splits
from actbench.models import load_model
from actbench.store import headline_record, read_card

ROOT = Path(__file__).resolve().parents[1]
SAMPLES_PER_CARD = 8


def _published() -> list[Path]:
    runs = []
    for path in sorted((ROOT / "results").glob("*/*/card.json")):
        card = json.loads(path.read_text())
        if card.get("status") == "complete" and (path.parent / "model.pt").is_file():
            runs.append(path.parent)
    return runs


@functools.lru_cache(maxsize=4)
def _test_split(dataset: str, val_size: int) -> Split:
    """The test split, read once for all the cards of a dataset."""
    return load_splits(dataset, None, val_size=val_size, augment=False).test


def _sample(run_id: str, n: int, k: int) -> np.ndarray:
    seed = int(hashlib.sha1(run_id.encode()).hexdigest()[:8], 16)
    return np.sort(np.random.default_rng(seed).choice(n, size=min(k, n), replace=False))


@pytest.mark.parametrize("run_dir", _published() or [None], ids=lambda p: p.name if p else "none")
def test_committed_card_is_reproduced_by_its_model(run_dir: Path | None) -> None:
    if run_dir is None:
        pytest.skip("no committed run ships its model.pt yet")
    card = read_card(run_dir)
    track = card["track"]
    if not is_available(track["dataset"]):
        pytest.skip(f"the {track['dataset']} files are not on this machine")
    record = headline_record(card)
    assert record is not None, f"{run_dir}: a complete card without a track-protocol record"
    protocol, metrics = record["protocol"], record["metrics"]
    radii = pd.read_parquet(run_dir / record["radii"])
    picked = _sample(card["run_id"], len(radii), SAMPLES_PER_CARD)
    test = _test_split(track["dataset"], int(track.get("val_size", 5000)))
    index = torch.as_tensor(radii["index"].to_numpy()[picked])
    subset = Split(test.images[index], test.labels[index])
    model, _ = load_model(run_dir / "model.pt")
    torch.set_num_threads(1)
    report = certify(model, subset, float(track["eps"]), metrics["eps_grid"], verifiers=protocol["verifiers"],
                     attack=False, dtype=protocol["dtype"], rtol=float(protocol["rtol"]), progress=False,
                     eps_test=metrics.get("eps_test", []))  # fmt: skip
    again, stored = report.records, radii.iloc[picked].reset_index(drop=True)
    assert (again["prediction"].to_numpy() == stored["prediction"].to_numpy()).all()
    assert (again["correct"].to_numpy() == stored["correct"].to_numpy()).all()
    tolerance = float(protocol["rtol"]) * float(track["eps"]) * 2 + 1e-9
    for verifier in protocol["verifiers"]:
        column = f"radius_{verifier}"
        a, b = again[column].to_numpy(float), stored[column].to_numpy(float)
        both = ~(np.isnan(a) | np.isnan(b))
        assert np.allclose(a[both], b[both], atol=tolerance, rtol=0), (verifier, a, b)
    for eps in [*metrics.get("eps_test", []), *metrics["eps_grid"]]:
        verdict_again = again["correct"].to_numpy() & (again["radius_best"].to_numpy(float) >= eps)
        verdict_card = stored["correct"].to_numpy() & (stored["radius_best"].to_numpy(float) >= eps)
        assert (verdict_again == verdict_card).all(), (eps, again["radius_best"], stored["radius_best"])


def _complete_pick(run_id: str, radii: pd.DataFrame, column: str) -> list[int]:
    """Rows of ``radii`` to search again: one sample proven by search and one falsified, seeded by the run id."""
    rng = np.random.default_rng(int(hashlib.sha1(run_id.encode()).hexdigest()[8:16], 16))
    rows = []
    for status in ("verified", "falsified"):
        candidates = np.flatnonzero(radii[column].to_numpy(str) == status)
        if len(candidates):
            rows.append(int(rng.choice(candidates)))
    return rows


@pytest.mark.parametrize("run_dir", _published() or [None], ids=lambda p: p.name if p else "none")
def test_committed_complete_verdicts_are_reproduced(run_dir: Path | None) -> None:
    """A sample the card says branch and bound proved, and one it says was falsified, decided again from the
    model: the opposite verdict would be a soundness bug (a time-out on a slower machine is allowed)."""
    from actbench.complete import use_clock, verify_box

    if run_dir is None:
        pytest.skip("no committed run ships its model.pt yet")
    card = read_card(run_dir)
    record = headline_record(card)
    complete = (record or {}).get("protocol", {}).get("complete")
    if not complete:
        pytest.skip("the card's protocol has no complete verification")
    if not is_available(card["track"]["dataset"]):
        pytest.skip(f"the {card['track']['dataset']} files are not on this machine")
    radii = pd.read_parquet(run_dir / record["radii"])
    test = _test_split(card["track"]["dataset"], int(card["track"].get("val_size", 5000)))
    model, _ = load_model(run_dir / "model.pt")
    torch.set_num_threads(1)
    checked = 0
    for eps in complete["eps"]:
        column = f"complete_{float(eps):g}"
        for row in _complete_pick(card["run_id"], radii, column):
            i = int(radii["index"].iloc[row])
            x, _ = test.tensors(torch.tensor([i]), dtype=torch.float64)  # as certification loads it
            lower, upper = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
            with use_clock(complete.get("clock", "process")):
                v = verify_box(model.double(), lower, upper, int(test.labels[i]), complete["verifier"],
                               timeout=float(complete["timeout"]))
            stated = radii[column].iloc[row]
            opposite = "falsified" if stated == "verified" else "verified"
            assert v.status != opposite, f"sample {i} at eps {eps}: card says {stated}, search now says {v.status}"
            assert v.status in (stated, "unknown")
            checked += 1
    if not checked:
        pytest.skip("no sample of this run was decided by search or falsified within the complete subset")
