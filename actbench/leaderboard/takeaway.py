"""Clean-accuracy thresholds chosen from a track's data, and the one-sentence takeaway they give.

Fixed thresholds (50 … 90 %) are blind to the track: when every robust configuration sits between 75 and
83 % clean accuracy they give identical columns. Here the thresholds span the clean accuracies of the
configurations that certify anything at the headline eps (configuration means at the main budget), so each
column asks a different question; the takeaway reads the best certified accuracy at the strictest and the
loosest of them from :func:`actbench.compare.threshold_table`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from actbench.compare import TrackInfo, fmt_number, main_budget, runs_table, threshold_table
from actbench.config import format_eps
from actbench.store import cert_column

LEVELS = 4


def auto_thresholds(frame: pd.DataFrame, info: TrackInfo, levels: int = LEVELS) -> tuple[float, ...]:
    """Up to ``levels`` clean-accuracy thresholds, evenly spread over the clean accuracies of the
    configurations that certify something at the headline eps, rounded down to whole percents (half
    percents when the range is narrower than ``levels`` percent); () when the track has no configuration."""
    table = runs_table(frame, info.name, protocol=info.protocol)
    if table.empty:
        return ()
    table = table[table["budget"].astype(str) == str(main_budget(table, info.name))]
    cert = pd.to_numeric(table.get(f"{cert_column('best', info.headline)}_mean"), errors="coerce")
    clean = pd.to_numeric(table["clean_accuracy_mean"], errors="coerce")
    robust = clean[cert.fillna(0) > 0].dropna()
    values = robust if len(robust) else clean.dropna()
    if values.empty:
        return ()
    lo, hi = 100 * float(values.min()), 100 * float(values.max())
    step = 0.5 if hi - lo < levels else 1.0
    points = np.linspace(lo, hi, levels) if hi > lo else np.array([lo])
    rounded = sorted({math.floor(p / step + 1e-9) * step / 100 for p in points})
    return tuple(round(t, 4) for t in rounded)


def _who(row: pd.Series, configs: pd.DataFrame) -> str:
    match = configs[(configs["method"] == row["method"]) & (configs["config_label"] == row["best_cert_config"])]
    seeds = int(match["n"].iloc[0]) if len(match) else 0
    return f"{row['method']} ({row['best_cert_config']}, {seeds} seed{'s' if seeds != 1 else ''})"


def takeaway(frame: pd.DataFrame, info: TrackInfo, thresholds: tuple[float, ...]) -> str:
    """``At clean accuracy ≥ 82 %, the best certified accuracy at 0.1 is 58.7 % by adaptive (kappa=0.5,
    2 seeds); at ≥ 75 % it is 64.6 %, by ibp (...)`` — '' when no configuration qualifies."""
    if not thresholds:
        return ""
    table = threshold_table(frame, info.name, thresholds, protocol=info.protocol)
    configs = runs_table(frame, info.name, protocol=info.protocol)
    table = table[pd.to_numeric(table["best_cert"], errors="coerce").notna()]
    if table.empty:
        return ""
    eps = format_eps(info.headline)
    best = table.loc[table.groupby("threshold")["best_cert"].idxmax()].sort_values("threshold")
    top, low = best.iloc[-1], best.iloc[0]
    if not low["best_cert"] > 0:
        acr = configs.sort_values("acr_best_mean", ascending=False, kind="mergesort").iloc[0]
        return (f"No configuration certifies any test sample at eps {eps} yet; the highest mean ACR is "
                f"{fmt_number(acr['acr_best_mean'], 'acr', info.acr_decimals)}, by {acr['method']} "
                f"({acr['config_label']}, {int(acr['n'])} seed{'s' if acr['n'] != 1 else ''}).")
    text = (f"At clean accuracy ≥ {100 * top['threshold']:g} %, the best certified accuracy at eps {eps} is "
            f"{fmt_number(top['best_cert'], 'acc')} %, by {_who(top, configs)}")
    if low["threshold"] < top["threshold"]:
        gain = "it rises to" if low["best_cert"] > top["best_cert"] + 1e-12 else "it stays at"
        by = "the same configuration" if (low["method"], low["best_cert_config"]) == (
            top["method"], top["best_cert_config"]) else _who(low, configs)
        text += f"; at ≥ {100 * low['threshold']:g} % {gain} {fmt_number(low['best_cert'], 'acc')} %, by {by}"
    return text + " (configuration means over seeds)."
