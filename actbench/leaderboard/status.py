"""Verification status at the headline eps: the share of test samples certified, falsified and unknown.

Two sources, never mixed in one number:

- **The protocol's own verdicts** (always, when the protocol ran the attack): certified = certified
  accuracy; falsified = 1 − attack accuracy (misclassified, or an adversarial example found within eps);
  unknown = the rest (neither the verifiers nor the attack decided).
- **Complete verification** (when a certification record carries counts): the counts as recorded, under
  the record's ``complete`` entry (in the record, its ``metrics`` or its ``settings``), in any of these
  shapes, counts or shares::

      {"verifier": "bab", "timeout": 60, "eps": [0.1], "certified": [812], "falsified": [150], "unknown": [38]}
      {"verifier": "bab", "timeout": 60, "eps": {"0.1": {"certified": 812, "falsified": 150, "unknown": 38}}}
      {"verifier": "bab", "timeout": 60, "results": [{"eps": 0.1, "certified": 812, ...}]}

Both are averaged over the seeds of a configuration (configuration means, as everywhere on the site).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from actbench.compare import TrackInfo, config_labels
from actbench.store import attack_column, cert_column

KINDS = ("certified", "falsified", "unknown")
COLUMNS = ["method", "config", "config_label", "n", *KINDS, "source", "complete"]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _shares(entry: Any) -> dict[str, float] | None:
    """``{certified, falsified, unknown}`` as shares of their total, or None when malformed or empty."""
    if not isinstance(entry, dict):
        return None
    try:
        counts = {k: float(entry.get(k, 0) or 0) for k in KINDS}
    except (TypeError, ValueError):
        return None
    total = sum(counts.values())
    if not math.isfinite(total) or total <= 0 or any(v < 0 for v in counts.values()):
        return None
    return {k: v / total for k, v in counts.items()}


def complete_entry(record: dict[str, Any]) -> dict[str, Any] | None:
    """The complete-verification entry of a certification record (None when it has none)."""
    for holder in (record, record.get("metrics") or {}, record.get("settings") or {}):
        entry = holder.get("complete") if isinstance(holder, dict) else None
        if isinstance(entry, dict) and any(k in entry for k in ("eps", "results")):
            return entry
    return None


def complete_shares(record: dict[str, Any], eps: float) -> dict[str, float] | None:
    """Shares certified / falsified / unknown at ``eps`` from a record's complete-verification counts."""
    entry = complete_entry(record)
    if entry is None:
        return None
    grid = entry.get("eps")
    if isinstance(grid, list) and all(k in entry for k in KINDS):
        for i, e in enumerate(grid):
            if isinstance(e, int | float) and _close(float(e), eps):
                try:
                    return _shares({k: entry[k][i] for k in KINDS})
                except (IndexError, KeyError, TypeError):
                    return None
        return None
    if isinstance(grid, dict):
        for key, value in grid.items():
            try:
                if _close(float(key), eps):
                    return _shares(value)
            except ValueError:
                continue
        return None
    for item in entry.get("results") or []:
        if isinstance(item, dict) and isinstance(item.get("eps"), int | float) and _close(float(item["eps"]), eps):
            return _shares(item)
    return None


def complete_label(record: dict[str, Any]) -> str:
    """``complete: bab, 60 s per sample`` for the source column."""
    entry = complete_entry(record) or {}
    timeout = entry.get("timeout")
    return f"complete: {entry.get('verifier', 'verifier not recorded')}" + (
        f", {timeout:g} s per sample" if isinstance(timeout, int | float) else "")


def _record(card: dict[str, Any], protocol: str) -> dict[str, Any] | None:
    chosen = None
    for record in card.get("certifications") or []:
        if (record.get("protocol") or {}).get("id") == protocol:
            chosen = record
    return chosen


def status_table(runs: pd.DataFrame, info: TrackInfo, cards: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per configuration of ``runs`` (one protocol): status shares at the headline eps, seed means.

    One row per configuration from the protocol's verifiers and attack (when it ran the attack), and one
    more per configuration whose records carry complete-verification counts at that eps.
    """
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS)
    cert, attack = cert_column("best", info.headline), attack_column(info.headline)
    labels = config_labels(runs)
    verifiers = " → ".join(info.verifiers) or "the protocol's verifiers"
    rows = []
    for config, group in runs.groupby("config", sort=False):
        base = {"method": group["method"].iloc[-1], "config": config, "config_label": labels[config]}
        certified = pd.to_numeric(group.get(cert), errors="coerce")
        robust = pd.to_numeric(group.get(attack), errors="coerce")
        if info.protocol_checked and certified.notna().all() and robust.notna().all() and len(group):
            c, a = float(certified.mean()), float(robust.mean())
            rows.append({**base, "n": len(group), "certified": c, "falsified": 1 - a, "unknown": max(0.0, a - c),
                         "source": f"{verifiers} + PGD attack", "complete": False})  # fmt: skip
        shares, label = [], ""
        for path in group["path"]:
            record = _record(cards.get(str(path), {}), str(info.protocol))
            found = complete_shares(record, info.headline) if record else None
            if found is not None:
                shares.append(found)
                label = complete_label(record)
        if shares:
            rows.append({**base, "n": len(shares), **{k: sum(s[k] for s in shares) / len(shares) for k in KINDS},
                         "source": label, "complete": True})  # fmt: skip
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["complete", "certified"], ascending=[True, False], kind="mergesort").reset_index(
        drop=True)
