"""Leaderboard tables from the card index: configurations, robustness at accuracy levels, Pareto fronts,
hypervolumes — under one certification protocol at a time.

Everything here is a pure function of the DataFrame built by :func:`actbench.store.load_cards`, so the
CLI (``actbench compare``) and the static site show the same numbers. The rules that keep a table from
misleading:

- **One protocol.** A table holds runs certified under one protocol (``certify.protocol``): the track's
  by default (:func:`default_protocol`), another with ``protocol=``. A float32 or attack-off protocol is
  labelled not sound / not checked wherever it is shown.
- **Configurations, not runs.** Rows are configurations (``store.configuration_of``: everything but the
  seed); only seeds of one configuration are averaged (mean ± sample std, n). The label of a row names
  every parameter that differs between the configurations of its method.
- **No best-of-N on test.** Threshold tables and Pareto fronts are built from configurations' seed
  means, never from single runs: picking the best of N runs on the test split rewards whoever ran more
  draws. Each method's number of configurations (its tuning budget) is shown, with a note when the
  methods' budgets differ, and each method gets one trade-off score: the hypervolume of its front
  (clean accuracy × certified accuracy at the headline eps, and clean accuracy × ACR/eps; reference
  point (0, 0); both in [0, 1]).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from actbench.compare_complete import complete_note, complete_table, display_complete
from actbench.config import Budget, format_eps
from actbench.errors import CardError, InvalidConfig, NoResults, UnknownName
from actbench.store import CardIndex, acr_column, attack_column, cert_column, load_cards

DEFAULT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
FORMATS = ("table", "csv", "markdown", "json")
DASH = "—"
CONFIG_FIELDS = ("train_subset",)  # run-level settings named in labels (preset, budget, recipe have columns)


@dataclass(frozen=True)
class TrackInfo:
    """What the tables of one track need to know: eps cap, headline eps values, verifiers seen, protocol."""

    name: str
    title: str
    eps: float
    eps_test: tuple[float, ...]
    headline: float
    verifiers: tuple[str, ...]
    protocol: str | None = None
    protocol_label: str = ""
    protocol_sound: bool = True
    protocol_checked: bool = True

    @property
    def acr_decimals(self) -> int:
        """Decimals that show ACR (pixel units) with about three significant digits."""
        if not self.eps or not math.isfinite(self.eps) or self.eps <= 0:
            return 4
        return max(3, math.ceil(-math.log10(self.eps)) + 2)

    @property
    def protocol_warnings(self) -> list[str]:
        out = []
        if not self.protocol_sound:
            out.append("NOT SOUND: float32 bounds; these are not certificates")
        if not self.protocol_checked:
            out.append("NOT CHECKED: certified without the attack (no upper bound, no soundness guard)")
        return out


# --- rows under one protocol -----------------------------------------------------------------------------


def registered_protocol(track: str) -> str | None:
    """The id of the protocol the registered track prescribes today (None for an unregistered track)."""
    from actbench.certify.protocol import track_protocol
    from actbench.config import list_tracks, load_track

    if track not in list_tracks():
        return None
    return track_protocol(load_track(track)).id


def protocol_counts(frame: pd.DataFrame, track: str) -> pd.DataFrame:
    """Protocols with runs on ``track``: id, label, sound, checked, runs, headline_runs (newest first)."""
    rows = frame[(frame["track"] == track) & frame["protocol"].notna()
                 & frame["status"].isin(["complete", "trained"])]  # fmt: skip
    if rows.empty:
        return pd.DataFrame(columns=["protocol", "label", "sound", "checked", "runs", "headline_runs"])
    out = []
    for pid, group in rows.groupby("protocol", sort=False):
        out.append({"protocol": pid, "label": group["protocol_label"].iloc[-1],
                    "sound": bool(group["protocol_sound"].iloc[-1]),
                    "checked": bool(group["protocol_checked"].iloc[-1]),
                    "runs": int(group["path"].nunique()), "headline_runs": int(group["headline"].astype(bool).sum()),
                    "updated": group["updated"].max()})  # fmt: skip
    table = pd.DataFrame(out).sort_values(["headline_runs", "runs", "updated"], ascending=False, kind="mergesort")
    return table.drop(columns="updated").reset_index(drop=True)


def default_protocol(frame: pd.DataFrame, track: str) -> str | None:
    """The protocol a table of ``track`` uses unless told otherwise: the registered track's protocol when
    some run has it, else the protocol most runs were headlined under (None when nothing is certified)."""
    counts = protocol_counts(frame, track)
    if counts.empty:
        return None
    registered = registered_protocol(track)
    if registered is not None and registered in set(counts["protocol"]):
        return registered
    headlined = counts[counts["headline_runs"] > 0]
    return str((headlined if not headlined.empty else counts)["protocol"].iloc[0])


def complete_runs(frame: pd.DataFrame, track: str | None = None, protocol: str | None = None) -> pd.DataFrame:
    """One row per run certified under one protocol per track: ``protocol``, else each track's default.

    Complete runs count; with an explicit non-headline protocol, trained runs certified under it count too.
    """
    parts = []
    tracks = [track] if track is not None else sorted(set(frame["track"].dropna()))
    for name in tracks:
        pid = protocol if protocol is not None else default_protocol(frame, name)
        if pid is None:
            continue
        rows = frame[(frame["track"] == name) & (frame["protocol"] == pid)
                     & frame["status"].isin(["complete", "trained"])]  # fmt: skip
        parts.append(rows.drop_duplicates("path", keep="last"))
    if not parts:
        return frame.iloc[0:0].reset_index(drop=True)
    return pd.concat(parts).reset_index(drop=True)


def filter_budget(frame: pd.DataFrame, budget: str | None) -> pd.DataFrame:
    """Only the runs whose budget limit is ``budget`` (``epochs=6``); the frame itself when None."""
    if budget is None:
        return frame
    return frame[frame["budget"] == str(Budget.parse(budget))].reset_index(drop=True)


def track_info(frame: pd.DataFrame, track: str, protocol: str | None = None) -> TrackInfo:
    """Track settings read from its runs under ``protocol`` (default: the track's default protocol)."""
    pid = protocol if protocol is not None else default_protocol(frame, track)
    rows = complete_runs(frame, track, pid) if pid is not None else frame.iloc[0:0]
    if rows.empty:
        rows = frame[frame["track"] == track]
    if rows.empty:
        return TrackInfo(track, track, float("nan"), (), float("nan"), (), pid)
    newest = rows.sort_values("updated", na_position="first").iloc[-1]
    verifiers: dict[str, None] = {}
    for values in rows["verifiers"]:
        if isinstance(values, tuple | list):
            verifiers.update(dict.fromkeys(values))
    return TrackInfo(
        name=track,
        title=str(newest["track_title"]),
        eps=float(newest["eps"]),
        eps_test=tuple(newest["eps_test"]),
        headline=float(newest["headline_eps"]),
        verifiers=tuple(verifiers),
        protocol=pid,
        protocol_label=str(newest["protocol_label"] or "") if pid is not None else "",
        protocol_sound=bool(newest["protocol_sound"]) if pid is not None else True,
        protocol_checked=bool(newest["protocol_checked"]) if pid is not None else True,
    )


def check_verifier(frame: pd.DataFrame, verifier: str) -> str:
    """Return ``verifier`` if some card reports it (or it is ``best``), else raise :class:`UnknownName`."""
    known: dict[str, None] = {"best": None}
    for values in frame["verifiers"]:
        if isinstance(values, tuple | list):
            known.update(dict.fromkeys(values))
    if verifier not in known:
        raise UnknownName("verifier", verifier, list(known))
    return verifier


def parse_thresholds(value: str | Sequence[float] | None) -> tuple[float, ...]:
    """Clean-accuracy thresholds as fractions in [0, 1]: ``"0.6,0.7"`` or a sequence; None = defaults."""
    if value is None:
        return DEFAULT_THRESHOLDS
    parts: Sequence[Any] = value.split(",") if isinstance(value, str) else value
    out = []
    for part in parts:
        if isinstance(part, str) and not part.strip():
            continue
        try:
            tau = float(part)
        except (TypeError, ValueError) as exc:
            raise InvalidConfig(f"threshold {part!r} is not a number; use e.g. 0.6,0.7,0.8") from exc
        if not (math.isfinite(tau) and 0.0 <= tau <= 1.0):
            hint = f" (did you mean {tau / 100:g}?)" if 1 < tau <= 100 else ""
            raise InvalidConfig(f"threshold {part!r} must be a clean accuracy in [0, 1]{hint}")
        out.append(tau)
    if not out:
        raise InvalidConfig("no thresholds given; use e.g. --thresholds 0.6,0.7,0.8")
    return tuple(sorted(set(out)))


# --- configurations --------------------------------------------------------------------------------------


def _metric_columns(info: TrackInfo, verifier: str) -> list[tuple[str, str]]:
    """(column, kind) of the per-run metrics the runs table aggregates; kind is 'acc' or 'acr'."""
    verifiers = list(dict.fromkeys([verifier, "ibp"]))
    columns = [("clean_accuracy", "acc")]
    columns += [(acr_column(v), "acr") for v in verifiers]
    for eps in info.eps_test:
        columns += [(cert_column(v, eps), "acc") for v in verifiers]
    columns += [(attack_column(eps), "acc") for eps in info.eps_test]
    return columns


def _value_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"{value:g}"
    return str(value)


def _distinct(values: pd.Series) -> int:
    """Number of distinct values, missing ones (None/NaN) counted as one value of their own."""
    return len({_value_text(v) for v in values})


def _setting_text(name: str, value: Any) -> str:
    """A run-level setting in a configuration label: ``epochs=6``, ``preset quick``, ``subset 500``."""
    if name == "budget":
        return str(value)
    if name == "train_subset":
        return "full training split" if _value_text(value) == "none" else f"subset {_value_text(value)}"
    return f"{name} {_value_text(value)}"


def config_labels(runs: pd.DataFrame) -> dict[str, str]:
    """Per configuration hash: ``"kappa=0.5, lam=0.4"``, every parameter (and run-level setting: preset,
    budget, recipe, training subset) that differs between the configurations of its method; the key
    parameter when nothing differs; "defaults" for a method without parameters."""
    labels: dict[str, str] = {}
    for _, group in runs.groupby("method", sort=False):
        configs = group.drop_duplicates("config")
        params = [p if isinstance(p, dict) else {} for p in configs["params"]]
        keys = sorted({k for p in params for k in p})
        differing = [k for k in keys if len({json.dumps(p.get(k), default=str) for p in params}) > 1]
        settings = [f for f in CONFIG_FIELDS if _distinct(configs[f]) > 1]
        for (_, row), p in zip(configs.iterrows(), params, strict=True):
            parts = [f"{k}={_value_text(p.get(k))}" for k in differing]
            parts += [_setting_text(f, row[f]) for f in settings]
            if not parts and isinstance(row["key_param"], str) and row["key_param"] in p:
                parts = [f"{row['key_param']}={_value_text(p[row['key_param']])}"]
            labels[row["config"]] = ", ".join(parts) or "defaults"
    return labels


def runs_table(frame: pd.DataFrame, track: str, verifier: str = "best", protocol: str | None = None) -> pd.DataFrame:
    """One row per configuration under one protocol: mean and std over its seeds, n, budget used;
    ranked by ACR. Runs of different configurations (any parameter, budget, preset, subset or recipe)
    are never averaged together.

    Columns: rank, method, title, config, config_label, key_param, key_value, preset, budget, recipe,
    train_subset, n, seeds, runs (run ids), ``<metric>_mean`` and ``<metric>_std`` for clean accuracy, ACR
    (``verifier`` and IBP), certified accuracy at each test eps (same verifiers), attack accuracy at each
    test eps, and epochs / seconds / propagations (means). Std is the sample std (NaN for one seed).
    """
    info = track_info(frame, track, protocol)
    runs = complete_runs(frame, track, info.protocol)
    metrics = [c for c, _ in _metric_columns(info, verifier)]
    budget = ["epochs", "seconds", "propagations"]
    out_columns = ["rank", "method", "title", "config", "config_label", "key_param", "key_value", "preset", "budget",
                   "recipe", "train_subset", "n", "seeds", "runs"]  # fmt: skip
    out_columns += [f"{c}_{s}" for c in metrics for s in ("mean", "std")] + budget
    if runs.empty:
        return pd.DataFrame(columns=out_columns)
    for column in metrics:
        if column not in runs.columns:
            runs[column] = float("nan")
    labels = config_labels(runs)
    rows = []
    for config, group in runs.groupby("config", sort=False):
        first = group.iloc[-1]
        row: dict[str, Any] = {
            "method": first["method"],
            "title": first["title"],
            "config": config,
            "config_label": labels[config],
            "key_param": group["key_param"].dropna().iloc[-1] if group["key_param"].notna().any() else None,
            "key_value": first["key_value"],
            "preset": first["preset"],
            "budget": first["budget"],
            "recipe": first["recipe"],
            "train_subset": first["train_subset"],
            "n": len(group),
            "seeds": ",".join(str(s) for s in sorted(group["seed"])),
            "runs": ",".join(sorted(group["run_id"])),
        }
        for column in metrics:
            values = pd.to_numeric(group[column], errors="coerce")
            row[f"{column}_mean"] = values.mean()
            row[f"{column}_std"] = values.std(ddof=1) if values.notna().sum() > 1 else float("nan")
        for column in budget:
            row[column] = pd.to_numeric(group[column], errors="coerce").mean()
        rows.append(row)
    table = pd.DataFrame(rows)
    acr = f"{acr_column(verifier)}_mean"
    table = table.sort_values([acr, "clean_accuracy_mean", "method", "config_label"],
                              ascending=[False, False, True, True], na_position="last",
                              kind="mergesort").reset_index(drop=True)  # fmt: skip
    table.insert(0, "rank", range(1, len(table) + 1))
    return table[out_columns]


def main_budget(configs: pd.DataFrame, track: str) -> str | None:
    """The budget trade-off tables use when configurations were given different budgets: the registered
    track's budget when some configuration has it, else the most common one (None for an empty table)."""
    if configs.empty:
        return None
    present = list(configs["budget"].astype(str))
    from actbench.config import list_tracks, load_track

    if track in list_tracks():
        registered = str(load_track(track).budget)
        if registered in present:
            return registered
    return max(dict.fromkeys(present), key=present.count)


def _at_main_budget(configs: pd.DataFrame, track: str) -> pd.DataFrame:
    """The configurations given the main budget: fronts never mix budgets (that would pick the best)."""
    budget = main_budget(configs, track)
    return configs if budget is None else configs[configs["budget"].astype(str) == budget].reset_index(drop=True)


def tuning_budgets(configs: pd.DataFrame) -> dict[str, int]:
    """Configurations per method (its tuning budget) in a runs table."""
    return {str(m): int(n) for m, n in configs.groupby("method", sort=True)["config"].nunique().items()}


def tradeoff_budgets(configs: pd.DataFrame) -> dict[str, int]:
    """Configurations per method among the methods with a trade-off parameter (``key_param``): the tuning
    budgets that must be equal. Reference methods without one (standard, PGD-AT) have one configuration."""
    if configs.empty or "key_param" not in configs:
        return {}
    return tuning_budgets(configs[configs["key_param"].notna()])


def budget_note(budgets: dict[str, int]) -> str:
    """A warning when methods were given different numbers of configurations, else ''."""
    if len(set(budgets.values())) <= 1:
        return ""
    counts = ", ".join(f"{m} {n}" for m, n in sorted(budgets.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"unequal tuning budgets (configurations per method: {counts}): a method given more configurations "
            "has more chances to reach any point of the plane; compare fronts and hypervolumes with that in mind")


def threshold_table(frame: pd.DataFrame, track: str, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                    verifier: str = "best", protocol: str | None = None) -> pd.DataFrame:
    """For each threshold and method: the best seed-mean ACR and the best seed-mean certified accuracy at
    the track's headline eps among the method's configurations whose mean clean accuracy is >= threshold
    (NaN when none qualifies), with that configuration's std and label. Only configurations given the
    main budget (:func:`main_budget`) take part.

    Columns: threshold, method, title, configs (the method's configurations), qualifying, best_acr,
    best_acr_std, best_acr_config, best_cert, best_cert_std, best_cert_config, eps.
    """
    info = track_info(frame, track, protocol)
    configs = _at_main_budget(runs_table(frame, track, verifier, info.protocol), track)
    columns = ["threshold", "method", "title", "configs", "qualifying", "best_acr", "best_acr_std", "best_acr_config",
               "best_cert", "best_cert_std", "best_cert_config", "eps"]  # fmt: skip
    if configs.empty:
        return pd.DataFrame(columns=columns)
    acr, cert = f"{acr_column(verifier)}", cert_column(verifier, info.headline)
    if f"{cert}_mean" not in configs.columns:
        configs[f"{cert}_mean"] = float("nan")
        configs[f"{cert}_std"] = float("nan")
    titles = configs.groupby("method")["title"].last()
    budgets = tuning_budgets(configs)
    rows = []
    for tau in thresholds:
        for method in sorted(titles.index):
            mine = configs[(configs["method"] == method) & (configs["clean_accuracy_mean"] >= tau - 1e-12)]
            row = {"threshold": tau, "method": method, "title": titles[method], "configs": budgets[method],
                   "qualifying": len(mine), "best_acr": float("nan"), "best_acr_std": float("nan"),
                   "best_acr_config": "", "best_cert": float("nan"), "best_cert_std": float("nan"),
                   "best_cert_config": "", "eps": info.headline}  # fmt: skip
            for key, column in (("best_acr", acr), ("best_cert", cert)):
                values = pd.to_numeric(mine[f"{column}_mean"], errors="coerce")
                if values.notna().any():
                    best = values.idxmax()
                    row[key] = float(values[best])
                    row[f"{key}_std"] = float(mine.loc[best, f"{column}_std"])
                    row[f"{key}_config"] = str(mine.loc[best, "config_label"])
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def pareto_mask(xs: Sequence[float], ys: Sequence[float]) -> list[bool]:
    """True for points no other point dominates (at least as good in both, strictly better in one).

    Points with a NaN coordinate are never on the front.
    """
    points = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
    mask = []
    for i, (x, y) in enumerate(points):
        if math.isnan(x) or math.isnan(y):
            mask.append(False)
            continue
        dominated = any(
            j != i and a >= x and b >= y and (a > x or b > y)
            for j, (a, b) in enumerate(points)
            if not (math.isnan(a) or math.isnan(b))
        )
        mask.append(not dominated)
    return mask


def hypervolume(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Area dominated by the points (both coordinates maximised) above the reference point (0, 0): the area
    of the union of the rectangles ``[0, x] × [0, y]``. Points with a NaN or negative coordinate add
    nothing; no point gives 0."""
    points = sorted(((float(x), float(y)) for x, y in zip(xs, ys, strict=True)
                     if not (math.isnan(x) or math.isnan(y)) and x > 0 and y > 0), reverse=True)  # fmt: skip
    area, top = 0.0, 0.0
    for x, y in points:  # x descending: each point adds the strip above the best y so far
        if y > top:
            area += x * (y - top)
            top = y
    return area


def pareto_front(frame: pd.DataFrame, track: str, verifier: str = "best", protocol: str | None = None) -> pd.DataFrame:
    """Every configuration of the track given the main budget (seed means) with its place on its method's
    fronts.

    ``on_front``: on the clean-accuracy × ACR front (the ACERT paper's view); ``on_front_cert``: on the
    clean-accuracy × certified-accuracy-at-the-headline-eps front (CTBench's view). Columns: method, title,
    config, config_label, n, clean_accuracy, clean_accuracy_std, acr, acr_std, cert, cert_std, on_front,
    on_front_cert; sorted by method then clean accuracy.
    """
    info = track_info(frame, track, protocol)
    configs = _at_main_budget(runs_table(frame, track, verifier, info.protocol), track)
    columns = ["method", "title", "config", "config_label", "n", "clean_accuracy", "clean_accuracy_std", "acr",
               "acr_std", "cert", "cert_std", "on_front", "on_front_cert"]  # fmt: skip
    if configs.empty:
        return pd.DataFrame(columns=columns)
    acr, cert = acr_column(verifier), cert_column(verifier, info.headline)
    out = configs.assign(
        clean_accuracy=configs["clean_accuracy_mean"], acr=configs[f"{acr}_mean"], acr_std=configs[f"{acr}_std"],
        cert=configs.get(f"{cert}_mean", float("nan")), cert_std=configs.get(f"{cert}_std", float("nan")),
    )  # fmt: skip
    parts = []
    for _, group in out.groupby("method", sort=True):
        group = group.assign(on_front=pareto_mask(group["clean_accuracy"], group["acr"]),
                             on_front_cert=pareto_mask(group["clean_accuracy"], group["cert"]))  # fmt: skip
        parts.append(group.sort_values(["clean_accuracy", "acr"]))
    return pd.concat(parts)[columns].reset_index(drop=True)


def hypervolume_table(frame: pd.DataFrame, track: str, verifier: str = "best",
                      protocol: str | None = None) -> pd.DataFrame:
    """Per method: its configurations (tuning budget), seeds per configuration, and the hypervolume of its
    front of seed means: clean × certified accuracy at the headline eps (``hv_cert``) and clean × ACR/eps
    (``hv_acr``), reference point (0, 0), both in [0, 1]; sorted by ``hv_cert``."""
    info = track_info(frame, track, protocol)
    front = pareto_front(frame, track, verifier, info.protocol)
    columns = ["method", "title", "configs", "seeds", "hv_cert", "hv_acr"]
    if front.empty:
        return pd.DataFrame(columns=columns)
    eps = info.eps if info.eps and math.isfinite(info.eps) and info.eps > 0 else float("nan")
    rows = []
    for method, group in front.groupby("method", sort=True):
        seeds = sorted(set(group["n"]))
        rows.append({"method": method, "title": group["title"].iloc[-1], "configs": len(group),
                     "seeds": "–".join(str(s) for s in (seeds[0], seeds[-1])) if len(seeds) > 1 else str(seeds[0]),
                     "hv_cert": hypervolume(group["clean_accuracy"], group["cert"]),
                     "hv_acr": hypervolume(group["clean_accuracy"], group["acr"] / eps)})  # fmt: skip
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["hv_cert", "hv_acr", "method"], ascending=[False, False, True],
                             kind="mergesort").reset_index(drop=True)


# --- formatting -----------------------------------------------------------------------------------------


def fmt_number(value: Any, kind: str, decimals: int = 4) -> str:
    """One cell: accuracy as a percentage with one decimal, ACR with ``decimals`` decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if kind == "acc":
        return f"{100 * value:.1f}"
    if kind == "acr":
        return f"{value:.{decimals}f}"
    return f"{value:g}"


def fmt_mean_std(mean: Any, std: Any, kind: str, decimals: int = 4) -> str:
    """``mean ± std`` (std dropped for a single seed)."""
    text = fmt_number(mean, kind, decimals)
    if text == DASH or std is None or (isinstance(std, float) and math.isnan(std)):
        return text
    return f"{text} ± {fmt_number(std, kind, decimals)}"


def fmt_count(value: Any) -> str:
    """Budget used: integers as is, large counts in engineering-ish notation, seconds with one decimal."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if abs(value) >= 1e5:
        return f"{value:.2e}"
    if float(value) == int(value):
        return str(int(value))
    return f"{value:.1f}"


def metric_label(column: str) -> str:
    """Short two-line header of a metric column (``cert_best@0.1`` -> ``cert best`` / ``@0.1 %``)."""
    if column == "clean_accuracy":
        return "clean\n%"
    if column.startswith("acr_"):
        return f"ACR\n{column[4:]}"
    if column.startswith("cert_"):
        verifier, eps = column[5:].split("@", 1)
        return f"cert {verifier}\n@{eps} %"
    if column.startswith("attack@"):
        return f"attack\n@{column[7:]} %"
    return column


def display_runs(table: pd.DataFrame, info: TrackInfo, verifier: str = "best") -> tuple[list[str], list[list[str]]]:
    """Headers and string cells of the configurations table as people read it."""
    metrics = _metric_columns(info, verifier)
    metrics = [(c, k) for c, k in metrics if f"{c}_mean" in table and table[f"{c}_mean"].notna().any()]
    shown = [f for f in ("preset", "budget", "recipe") if _distinct(table[f]) > 1]
    headers = ["#", "method", "configuration", "n", *shown]
    headers += [metric_label(c) for c, _ in metrics] + ["epochs", "seconds", "propa-\ngations"]
    rows = []
    for _, r in table.iterrows():
        cells = [str(r["rank"]), str(r["method"]), str(r["config_label"]), str(r["n"])]
        cells += [str(r[f]) for f in shown]
        cells += [fmt_mean_std(r[f"{c}_mean"], r[f"{c}_std"], k, info.acr_decimals) for c, k in metrics]
        cells += [fmt_count(r["epochs"]), fmt_count(r["seconds"]), fmt_count(r["propagations"])]
        rows.append(cells)
    return headers, rows


def display_thresholds(table: pd.DataFrame, info: TrackInfo) -> tuple[list[str], list[list[str]]]:
    """Threshold table pivoted for reading: one row per method, ACR and certified accuracy per tau."""
    thresholds = list(dict.fromkeys(table["threshold"]))
    headers = ["method", "configs"]
    for tau in thresholds:
        headers += [f"ACR\nclean ≥ {100 * tau:g}%", f"cert @{format_eps(info.headline)} %\nclean ≥ {100 * tau:g}%"]
    rows = []
    for method in dict.fromkeys(table["method"]):
        mine = table[table["method"] == method]
        cells = [str(method), str(int(mine["configs"].iloc[0]))]
        for tau in thresholds:
            r = mine[mine["threshold"] == tau].iloc[0]
            cells += [fmt_mean_std(r["best_acr"], r["best_acr_std"], "acr", info.acr_decimals),
                      fmt_mean_std(r["best_cert"], r["best_cert_std"], "acc")]
        rows.append(cells)
    return headers, rows


def display_hypervolumes(table: pd.DataFrame, info: TrackInfo) -> tuple[list[str], list[list[str]]]:
    """One row per method: configurations, seeds, the two hypervolumes."""
    headers = ["method", "configs", "seeds", f"HV clean × cert @{format_eps(info.headline)}", "HV clean × ACR/eps"]
    rows = [[str(r["method"]), str(r["configs"]), str(r["seeds"]), f"{r['hv_cert']:.4f}", f"{r['hv_acr']:.4f}"]
            for _, r in table.iterrows()]  # fmt: skip
    return headers, rows


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _rich(title: str, headers: list[str], rows: list[list[str]], caption: str = "") -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption or None, box=box.SIMPLE_HEAD, header_style="bold",
                  title_justify="left", caption_justify="left")
    for header in headers:
        table.add_column(header, justify="left" if header == "method" else "right")
    for row in rows:
        table.add_row(*row)
    # render at the table's natural width (never squeezed): a wide table is better scrolled than folded
    console = Console(file=io.StringIO(), width=1000, force_terminal=False, color_system=None)
    console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def _front_lines(front: pd.DataFrame, info: TrackInfo, column: str = "on_front") -> list[str]:
    lines = []
    for method, group in front[front[column].astype(bool)].groupby("method", sort=True):
        points = ", ".join(
            f"{r['config_label']} ({fmt_mean_std(r['clean_accuracy'], r['clean_accuracy_std'], 'acc')} %, "
            + (f"ACR {fmt_mean_std(r['acr'], r['acr_std'], 'acr', info.acr_decimals)}" if column == "on_front"
               else f"cert {fmt_mean_std(r['cert'], r['cert_std'], 'acc')} %") + ")"
            for _, r in group.iterrows()
        )  # fmt: skip
        lines.append(f"{method}: {points}")
    return lines


def _json_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(table.to_json(orient="records"))


def protocol_lines(frame: pd.DataFrame, info: TrackInfo) -> list[str]:
    """Which protocol the tables use, its warnings, and the other protocols that have runs."""
    lines = [f"protocol {info.protocol}: {info.protocol_label}"] if info.protocol else []
    lines += [f"WARNING: {w}" for w in info.protocol_warnings]
    others = protocol_counts(frame, info.name)
    others = others[others["protocol"] != info.protocol]
    if not others.empty:
        listed = "; ".join(f"{r['protocol']} ({r['runs']} run{'s' if r['runs'] != 1 else ''}: {r['label']})"
                           for _, r in others.iterrows())  # fmt: skip
        lines.append(f"other protocols on this track (--protocol ID): {listed}")
    return lines


def tuned_rows(index: CardIndex, track: str, protocol: str | None) -> list[dict[str, Any]]:
    """The tuned fronts (``actbench tune``) of the runs in ``index.frame``: per study and method, its trial
    budget, configurations, validation-selected front and hypervolumes on validation and test under
    ``protocol`` (:mod:`actbench.tune.fronts`)."""
    from actbench.tune.fronts import tuned_fronts

    paths = set(index.frame["path"])
    return tuned_fronts(((p, c) for p, c in index.cards.items() if p in paths and "tune" in c), track, protocol)


def _tuned_text(rows: list[dict[str, Any]], fmt: str) -> str:
    """The tuned-fronts section of the compare output ('' when no run of the track came from a tune)."""
    from actbench.tune.fronts import budget_note as tune_note
    from actbench.tune.fronts import display_rows, front_lines

    if not rows:
        return ""
    headers, body = display_rows(rows)
    note = ("fronts selected on the validation objectives the search optimised; HV val / HV test: hypervolume "
            "of that front on validation / on the test split, reference point (0, 0); trials = the budget "
            "every method of a study was given" + (f"; {tune_note(rows)}" if tune_note(rows) else ""))
    if fmt == "markdown":
        return "\n".join(["", "### Tuned fronts (actbench tune)", "", note, "", _markdown(headers, body), "",
                          *[f"- {line}" for line in front_lines(rows)], ""])  # fmt: skip
    return "\n" + _rich("Tuned fronts (actbench tune)", headers, body, note) + "".join(
        f"  {line}\n" for line in front_lines(rows))


def render_track(index: CardIndex, track: str, thresholds: Sequence[float], verifier: str, fmt: str,
                 protocol: str | None = None) -> str:
    """The compare output of one track in format ``fmt``."""
    frame = index.frame
    info = track_info(frame, track, protocol)
    runs = runs_table(frame, track, verifier, info.protocol)
    taus = threshold_table(frame, track, thresholds, verifier, info.protocol)
    front = pareto_front(frame, track, verifier, info.protocol)
    volumes = hypervolume_table(frame, track, verifier, info.protocol)
    complete = complete_table(complete_runs(frame, track, info.protocol), runs) if not runs.empty else pd.DataFrame()
    at_budget = _at_main_budget(runs, track)
    budgets = tuning_budgets(at_budget) if not at_budget.empty else {}
    note = budget_note(tradeoff_budgets(at_budget))
    if not runs.empty and _distinct(runs["budget"]) > 1:
        note = (f"trade-off tables below use the configurations given budget {main_budget(runs, track)} (fronts "
                "never mix budgets; --budget chooses another)" + (f"; {note}" if note else ""))
    if fmt == "json":
        return json.dumps(
            {"track": track, "title": info.title, "eps": info.eps, "eps_test": list(info.eps_test),
             "headline_eps": info.headline, "verifier": verifier,
             "protocol": {"id": info.protocol, "label": info.protocol_label, "sound": info.protocol_sound,
                          "checked": info.protocol_checked},
             "tuning_budgets": budgets, "tuning_budget_note": note, "runs": _json_records(runs),
             "thresholds": _json_records(taus), "pareto": _json_records(front),
             "hypervolume": _json_records(volumes), "complete": _json_records(complete),
             "tuned": tuned_rows(index, track, info.protocol)},
            indent=2,
        )  # fmt: skip
    if fmt == "csv":
        return runs.to_csv(index=False)
    heading = f"{info.title} — eps {format_eps(info.eps)}" if math.isfinite(info.eps) else track
    if runs.empty:
        return f"{heading}: no complete runs yet.\n"
    headers, rows = display_runs(runs, info, verifier)
    t_headers, t_rows = display_thresholds(taus, info)
    h_headers, h_rows = display_hypervolumes(volumes, info)
    context = protocol_lines(frame, info) + ([f"note: {note}"] if note else [])
    caption = (f"one row per configuration: mean ± std over its seeds (n); ranked by ACR ({verifier}); accuracies "
               f"in %, ACR in pixel units (cap {format_eps(info.eps)})")
    t_note = (f"best seed-mean ACR ({verifier}) and certified accuracy at {format_eps(info.headline)} among each "
              f"method's configurations with mean clean accuracy ≥ tau; configs = configurations the method was "
              f"given; {DASH} = none qualifies")
    h_note = ("area under each method's front of configuration means, reference point (0, 0); 1 is a model "
              "certified on every sample at full clean accuracy")
    if fmt == "markdown":
        parts = [f"## {heading}", "", *[f"- {line}" for line in context], "", caption, "",
                 _markdown(headers, rows), "", "### Robustness at a level of clean accuracy", "", t_note, "",
                 _markdown(t_headers, t_rows), "", "### Trade-off scores (hypervolume)", "", h_note, "",
                 _markdown(h_headers, h_rows), "", "### Pareto fronts (configuration means)", "",
                 "clean accuracy vs ACR:", ""]  # fmt: skip
        parts += [f"- {line}" for line in _front_lines(front, info)]
        parts += ["", f"clean accuracy vs certified accuracy at {format_eps(info.headline)}:", ""]
        parts += [f"- {line}" for line in _front_lines(front, info, "on_front_cert")]
        if not complete.empty:
            c_headers, c_rows = display_complete(complete)
            parts += ["", "### Complete verification", "", complete_note(complete), "", _markdown(c_headers, c_rows)]
        return "\n".join(parts) + "\n" + _tuned_text(tuned_rows(index, track, info.protocol), fmt)
    text = "".join(f"{line}\n" for line in context)
    text += _rich(heading, headers, rows, caption)
    text += "\n" + _rich("Robustness at a level of clean accuracy", t_headers, t_rows, t_note)
    text += "\n" + _rich("Trade-off scores (hypervolume)", h_headers, h_rows, h_note)
    text += "\nPareto fronts, clean accuracy vs ACR (configuration means):\n"
    text += "".join(f"  {line}\n" for line in _front_lines(front, info))
    text += f"Pareto fronts, clean accuracy vs certified accuracy at {format_eps(info.headline)}:\n"
    text += "".join(f"  {line}\n" for line in _front_lines(front, info, "on_front_cert"))
    if not complete.empty:
        c_headers, c_rows = display_complete(complete)
        text += "\n" + _rich("Complete verification", c_headers, c_rows, complete_note(complete))
    return text + _tuned_text(tuned_rows(index, track, info.protocol), fmt)


def load_results(results_dir: Path | str, skip_invalid: bool = False) -> CardIndex:
    """The card index of a results folder, refusing what would make a silent, misleading table.

    Raises :class:`NoResults` when the folder is missing or holds no card, and :class:`CardError` when a
    card is unreadable, unless ``skip_invalid`` (then the skipped cards stay listed in ``warnings``).
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise NoResults(f"results folder {results_dir} does not exist; run `actbench run ...` first or pass "
                        "--results DIR")
    index = load_cards(results_dir)
    if index.warnings and not skip_invalid:
        listed = "; ".join(index.warnings[:3]) + (f"; and {len(index.warnings) - 3} more" if len(index.warnings) > 3
                                                  else "")  # fmt: skip
        raise CardError(f"{len(index.warnings)} unreadable card(s) in {results_dir}: {listed}. Fix or remove them, "
                        "or pass --skip-invalid to go on without them")
    if index.frame.empty:
        raise NoResults(f"no run cards in {results_dir} (looked for {results_dir}/<track>/<run-id>/card.json)")
    return index


def compare_command(results_dir: Path | str, track: str | None = None,
                    thresholds: str | Sequence[float] | None = None, verifier: str = "best",
                    fmt: str = "table", budget: str | None = None, protocol: str | None = None,
                    skip_invalid: bool = False) -> str:
    """Text of ``actbench compare``: tables for one track (or every track with runs when ``track`` is None).

    ``budget`` (``epochs=6``) keeps only the runs given that budget limit; ``protocol`` chooses the
    certification protocol (default: each track's, see :func:`default_protocol`).

    Raises :class:`NoResults` for a missing or empty results folder, no complete run, or a budget or
    protocol no run has; :class:`CardError` for an unreadable card (unless ``skip_invalid``);
    :class:`UnknownName` for an unknown track, verifier or format and :class:`InvalidConfig` for bad
    thresholds. Skipped cards are listed as lines starting with ``warning:`` (not in csv/json).
    """
    if fmt not in FORMATS:
        raise UnknownName("format", fmt, FORMATS)
    taus = parse_thresholds(thresholds)
    if budget is not None:
        budget = str(Budget.parse(budget))
    index = load_results(results_dir, skip_invalid)
    if track is not None:
        from actbench.config import list_tracks

        known = sorted(set(index.tracks()) | set(list_tracks()))
        if track not in known:
            raise UnknownName("track", track, known)
    check_verifier(index.frame, verifier)
    scope = index.frame if track is None else index.frame[index.frame["track"] == track]
    if protocol is not None:
        have = sorted(set(scope["protocol"].dropna()))
        if protocol not in have:
            raise NoResults(f"no run{'' if track is None else f' of {track}'} was certified under protocol "
                            f"{protocol!r}; protocols here: {', '.join(have) or 'none'}")
    if budget is not None:
        filtered = filter_budget(index.frame, budget)
        if complete_runs(filtered, track, protocol).empty:
            present = sorted(set(complete_runs(index.frame, track, protocol)["budget"]))
            raise NoResults(f"runs exist but none was given budget {budget}; budgets here: "
                            f"{', '.join(present) or 'none'}")
        index = dataclasses.replace(index, frame=filtered)
    with_runs = sorted(set(complete_runs(index.frame, None, protocol)["track"]))
    if track is not None and track not in with_runs:
        raise NoResults(f"no complete runs of track {track} in {results_dir}"
                        + (f" under protocol {protocol}" if protocol else ""))
    if not with_runs:
        raise NoResults(f"no complete runs in {results_dir} yet (cards there: {len(index.cards)}, none complete)")
    tracks = with_runs if track is None else [track]
    if fmt == "json":
        body = {t: json.loads(render_track(index, t, taus, verifier, fmt, protocol)) for t in tracks}
        return json.dumps(body if track is None else body[track], indent=2) + "\n"
    if fmt == "csv":
        frames = [runs_table(index.frame, t, verifier, protocol).assign(track=t) for t in tracks]
        merged = pd.concat(frames)
        return merged[["track", *[c for c in merged.columns if c != "track"]]].to_csv(index=False)
    warnings = "".join(f"warning: {w}\n" for w in index.warnings)
    return warnings + "\n".join(render_track(index, t, taus, verifier, fmt, protocol) for t in tracks)
