"""The complete-verification table of ``actbench compare``: per configuration (seed means), what branch
and bound decided on the protocol's fixed subset of test samples at the headline eps.

The cascade's certified accuracy on the subset is a lower bound on the true robust accuracy and the
complete phase raises it (``verified_by_search``); every falsified sample carries a counterexample, so
``upper_accuracy`` (clean-correct minus falsified) is an upper bound. ``unknown`` is what neither decided
within the time limit: the gap between the two bounds, as a share of the subset.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from actbench.store import complete_column

SHARES = ("certified_accuracy", "upper_accuracy")  # fractions of the subset, shown in %
COUNTS = ("verified_by_search", "falsified_by_search", "unknown", "searched")


def complete_eps(runs: pd.DataFrame) -> float | None:
    """The eps of the complete phase in ``runs`` (the largest recorded), None when no run has one."""
    if "complete_eps" not in runs:
        return None
    values = [e for t in runs["complete_eps"].dropna() for e in t if isinstance(e, float) and math.isfinite(e)]
    return max(values) if values else None


def complete_table(runs: pd.DataFrame, configs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration of ``configs`` (a :func:`compare.runs_table`, its ``runs`` column listing
    run ids) whose runs in ``runs`` (one row per run) have a complete phase; seed means (std for shares)."""
    eps = complete_eps(runs)
    if eps is None:
        return pd.DataFrame()
    rows: list[dict[str, Any]] = []
    for _, config in configs.iterrows():
        group = runs[runs["run_id"].isin(str(config["runs"]).split(","))]
        searched = complete_column("searched", eps)
        if group.empty or searched not in group or group[searched].isna().all():
            continue
        row: dict[str, Any] = {"method": config["method"], "config_label": config["config_label"],
                               "budget": config["budget"], "n": len(group), "eps": eps,
                               "samples": pd.to_numeric(group["complete_samples"]).mean(),
                               "verifier": group["complete_verifier"].dropna().iloc[0],
                               "timeout": pd.to_numeric(group["complete_timeout"]).mean()}
        cascade = pd.to_numeric(group[complete_column("certified_by_cascade", eps)]) / group["complete_samples"]
        row["cascade_accuracy_mean"], row["cascade_accuracy_std"] = cascade.mean(), _std(cascade)
        for name in SHARES:
            values = pd.to_numeric(group[complete_column(name, eps)])
            row[f"{name}_mean"], row[f"{name}_std"] = values.mean(), _std(values)
        for name in (*COUNTS, "median_seconds", "seconds"):
            row[name] = pd.to_numeric(group[complete_column(name, eps)]).mean()
        row["unknown_share"] = row["unknown"] / row["samples"] if row["samples"] else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _std(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if values.notna().sum() > 1 else float("nan")


def display_complete(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the complete-verification table."""
    from actbench.compare import fmt_count, fmt_mean_std  # compare imports this module

    headers = ["method", "configuration", "n", "budget", "cert cascade %", "cert complete %", "upper %",
               "unknown", "verified by search", "falsified by search", "searched", "median s", "total s"]
    rows = []
    for _, r in table.iterrows():
        rows.append([str(r["method"]), str(r["config_label"]), str(r["n"]), str(r["budget"]),
                     fmt_mean_std(r["cascade_accuracy_mean"], r["cascade_accuracy_std"], "acc"),
                     fmt_mean_std(r["certified_accuracy_mean"], r["certified_accuracy_std"], "acc"),
                     fmt_mean_std(r["upper_accuracy_mean"], r["upper_accuracy_std"], "acc"),
                     _count(r["unknown"]), _count(r["verified_by_search"]), _count(r["falsified_by_search"]),
                     _count(r["searched"]), f"{r['median_seconds']:.2f}", fmt_count(r["seconds"])])
    return headers, rows


def _count(value: float) -> str:
    return "—" if not math.isfinite(value) else (f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}")


def complete_note(table: pd.DataFrame) -> str:
    """The caption: subset, verifier, time limit, eps, and what the columns mean."""
    r = table.iloc[0]
    return (f"complete verification ({r['verifier']}, {r['timeout']:g} s per sample) at eps {r['eps']:g} on the "
            f"first {r['samples']:.0f} test samples, seed means; cert cascade = certified by the incomplete "
            "cascade on those samples, cert complete = cascade + proven by search (a lower bound on robust "
            "accuracy), upper = clean-correct minus falsified by a checked counterexample (an upper bound); "
            "unknown = samples neither decided (counts per run)")
