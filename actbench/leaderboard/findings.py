"""What a track's data says about the headline method, in sentences computed from the cards.

A benchmark that states only the claims it was handed is worthless, so every sentence here is derived
from the tables ``actbench compare`` prints (configuration means over seeds, at the main budget): the
hypervolume ranking in both views, the best certified accuracy at each clean-accuracy level, the
equal-compute comparison (the headline method given the propagations of the IBP runs) and what complete
verification decided. A difference smaller than the two configurations' seed spreads (std added) is
called a tie, never a win. The README's results section and the site's track page quote these sentences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from actbench.compare import (
    TrackInfo,
    complete_runs,
    fmt_number,
    hypervolume_table,
    main_budget,
    runs_table,
    threshold_table,
)
from actbench.compare_complete import complete_table
from actbench.config import format_eps
from actbench.store import acr_column, cert_column

HEADLINE = "adaptive"  # ACERT
EQUAL_COMPUTE_PEER = "ibp"  # fast-IBP: the cheapest certified-training method, whose cost ACERT is given


def _spread(*stds: float) -> float:
    return sum(s for s in stds if isinstance(s, float) and math.isfinite(s))


def _versus(mine: float, mine_std: float, other: float, other_std: float, name: str) -> str:
    """'3.1 points above NAME', 'tied with NAME (0.4 points apart, within the seeds' spread)' or '2.0 points
    below NAME', for accuracies in [0, 1]; a difference within the two seed stds added is a tie."""
    diff = mine - other
    size = f"{100 * abs(diff):.1f} points"
    if abs(diff) <= _spread(mine_std, other_std) or abs(diff) < 1e-12:
        return f"tied with {name} ({size} apart, within the seeds' spread)"
    return f"{size} {'above' if diff > 0 else 'below'} {name}"


def hypervolume_findings(frame: pd.DataFrame, info: TrackInfo) -> list[str]:
    """The headline method's hypervolume rank in both views, and the best other method."""
    table = hypervolume_table(frame, info.name, protocol=info.protocol)
    if table.empty or HEADLINE not in set(table["method"]) or len(table) < 2:
        return []  # a ranking needs another method
    out = []
    for column, view in (("hv_cert", f"clean × certified accuracy at {format_eps(info.headline)}"),
                         ("hv_acr", "clean × ACR/eps")):
        ranked = table.sort_values(column, ascending=False, kind="mergesort").reset_index(drop=True)
        rank = int(ranked.index[ranked["method"] == HEADLINE][0]) + 1
        mine = float(ranked.loc[rank - 1, column])
        others = ranked[ranked["method"] != HEADLINE]
        best = others.iloc[0]
        ahead = ranked.iloc[:rank - 1]
        behind = ", ".join(f"{m} ({v:.4f})" for m, v in zip(ahead["method"], ahead[column], strict=True))
        if abs(mine - float(best[column])) < 5e-5 and rank <= 2:  # equal at the printed precision: a tie
            out.append(f"Hypervolume ({view}): {HEADLINE} ties with {best['method']} at {mine:.4f}.")
            continue
        relation = (f"ahead of the next, {best['method']} ({best[column]:.4f}), by {mine - best[column]:.4f}"
                    if rank == 1 else f"behind {behind}")
        out.append(f"Hypervolume ({view}): {HEADLINE} ranks {rank} of {len(ranked)} with {mine:.4f}, {relation}.")
    return out


def threshold_findings(frame: pd.DataFrame, info: TrackInfo, thresholds: Sequence[float]) -> list[str]:
    """At each clean-accuracy level: the best certified accuracy and where the headline method stands."""
    table = threshold_table(frame, info.name, thresholds, protocol=info.protocol)
    if table.empty:
        return []
    eps = format_eps(info.headline)
    out = []
    for tau, group in table.groupby("threshold", sort=True):
        group = group[pd.to_numeric(group["best_cert"], errors="coerce").notna()]
        level = f"At clean accuracy ≥ {100 * tau:g} %"
        if group.empty:
            out.append(f"{level} no configuration of any method qualifies.")
            continue
        best = group.loc[group["best_cert"].idxmax()]
        mine = group[group["method"] == HEADLINE]
        if not best["best_cert"] > 0:
            who = ", ".join(sorted(group["method"]))
            out.append(f"{level} no qualifying configuration certifies anything at eps {eps} (qualifying: {who}).")
        elif best["method"] == HEADLINE:
            others = group[group["method"] != HEADLINE]
            text = (f"{level} {HEADLINE} certifies the most at eps {eps}: {fmt_number(best['best_cert'], 'acc')} % "
                    f"({best['best_cert_config']})")
            if not others.empty:
                second = others.loc[others["best_cert"].idxmax()]
                name = f"{second['method']} ({fmt_number(second['best_cert'], 'acc')} %)"
                text += ", " + _versus(best["best_cert"], best["best_cert_std"], second["best_cert"],
                                       second["best_cert_std"], name)
            out.append(text + ".")
        elif mine.empty:
            out.append(f"{level} {HEADLINE} has no qualifying configuration; {best['method']} certifies "
                       f"{fmt_number(best['best_cert'], 'acc')} % at eps {eps} ({best['best_cert_config']}).")
        else:
            m = mine.iloc[0]
            words = _versus(m["best_cert"], m["best_cert_std"], best["best_cert"], best["best_cert_std"], "it")
            out.append(f"{level} {best['method']} certifies the most at eps {eps}: "
                       f"{fmt_number(best['best_cert'], 'acc')} % ({best['best_cert_config']}); {HEADLINE}'s best, "
                       f"{fmt_number(m['best_cert'], 'acc')} % ({m['best_cert_config']}), is {words}.")
    return out


def equal_compute_findings(configs: pd.DataFrame, info: TrackInfo) -> list[str]:
    """The headline method at a propagation budget against the IBP configuration of the same label whose
    runs spent about that many propagations (within 5 %); ``configs`` is the track's runs table."""
    if configs.empty:
        return []
    main = main_budget(configs, info.name)
    limited = configs[(configs["method"] == HEADLINE) & (configs["budget"].astype(str) != str(main))
                      & configs["budget"].astype(str).str.startswith("propagations=")]
    acr, cert = f"{acr_column('best')}_mean", f"{cert_column('best', info.headline)}_mean"
    out = []
    for _, r in limited.iterrows():
        peers = configs[(configs["method"] == EQUAL_COMPUTE_PEER) & (configs["config_label"] == r["config_label"])]
        peers = peers[(peers["propagations"] - r["propagations"]).abs() <= 0.05 * r["propagations"]]
        if peers.empty:
            continue
        p = peers.iloc[0]
        out.append(
            f"At equal compute ({r['propagations']:.3g} propagations, {r['config_label']}, "
            f"{r['n']} and {p['n']} seeds): {HEADLINE} reaches {fmt_number(r['clean_accuracy_mean'], 'acc')} % clean, "
            f"{fmt_number(r[cert], 'acc')} % certified at {format_eps(info.headline)} and ACR "
            f"{fmt_number(r[acr], 'acr', info.acr_decimals)} in {r['epochs']:.1f} epochs; {EQUAL_COMPUTE_PEER} "
            f"{fmt_number(p['clean_accuracy_mean'], 'acc')} %, {fmt_number(p[cert], 'acc')} % and "
            f"{fmt_number(p[acr], 'acr', info.acr_decimals)} in {p['epochs']:.0f}: certified accuracy "
            + _versus(r[cert], r[cert.replace("_mean", "_std")], p[cert], p[cert.replace("_mean", "_std")],
                      f"{EQUAL_COMPUTE_PEER}'s")
            + ".")
    return out


def complete_findings(frame: pd.DataFrame, configs: pd.DataFrame, info: TrackInfo) -> list[str]:
    """What complete verification decided: the largest unknown share and how much of the gap it closed."""
    table = complete_table(complete_runs(frame, info.name, info.protocol), configs) if not configs.empty else None
    if table is None or table.empty:
        return []
    gap_before = (table["upper_accuracy_mean"] - table["cascade_accuracy_mean"]).clip(lower=0)
    gap_after = (table["upper_accuracy_mean"] - table["certified_accuracy_mean"]).clip(lower=0)
    worst = table.loc[table["unknown_share"].idxmax()]
    r = table.iloc[0]
    return [
        f"Complete verification ({r['verifier']}, {r['timeout']:g} s per sample, first {r['samples']:.0f} test "
        f"samples at eps {r['eps']:g}) leaves at most {100 * worst['unknown_share']:.1f} % unknown "
        f"({worst['method']}, {worst['config_label']}); between the certified and the falsified bound it "
        f"closes the mean gap from {100 * gap_before.mean():.1f} to {100 * gap_after.mean():.1f} points "
        f"(largest remaining: {100 * gap_after.max():.1f}, {table.loc[gap_after.idxmax(), 'method']} "
        f"{table.loc[gap_after.idxmax(), 'config_label']})."
    ]


def findings(frame: pd.DataFrame, info: TrackInfo, thresholds: Sequence[float]) -> list[str]:
    """Every sentence, in reading order ([] when the headline method has no runs on the track)."""
    if not (frame["method"] == HEADLINE).any():
        return []
    configs = runs_table(frame, info.name, protocol=info.protocol)
    return [*hypervolume_findings(frame, info), *threshold_findings(frame, info, thresholds),
            *equal_compute_findings(configs, info), *complete_findings(frame, configs, info)]
