"""Leaderboard tables from the card index: runs table, accuracy-threshold table, Pareto fronts.

Everything here is a pure function of the DataFrame built by :func:`actbench.store.load_cards`, so the
CLI (``actbench compare``) and the static site show the same numbers. Only runs with status
``complete`` count. Following ACERT's framing, the threshold table reports the best robustness a method
reaches *at a level of clean accuracy*: for each threshold tau, the best ACR and best certified accuracy
among the method's runs whose clean accuracy is at least tau.
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

from actbench.config import Budget, format_eps
from actbench.errors import InvalidConfig, UnknownName
from actbench.store import CardIndex, acr_column, attack_column, cert_column, load_cards

DEFAULT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
FORMATS = ("table", "csv", "markdown", "json")
DASH = "—"


@dataclass(frozen=True)
class TrackInfo:
    """What the tables of one track need to know: eps cap, headline eps values, verifiers seen."""

    name: str
    title: str
    eps: float
    eps_test: tuple[float, ...]
    headline: float
    verifiers: tuple[str, ...]

    @property
    def acr_decimals(self) -> int:
        """Decimals that show ACR (pixel units) with about three significant digits."""
        if not self.eps or not math.isfinite(self.eps) or self.eps <= 0:
            return 4
        return max(3, math.ceil(-math.log10(self.eps)) + 2)


def complete_runs(frame: pd.DataFrame, track: str | None = None) -> pd.DataFrame:
    """Runs with status ``complete`` (optionally of one track), the only ones tables count."""
    rows = frame[frame["status"] == "complete"]
    if track is not None:
        rows = rows[rows["track"] == track]
    return rows.reset_index(drop=True)


def filter_budget(frame: pd.DataFrame, budget: str | None) -> pd.DataFrame:
    """Only the runs whose budget limit is ``budget`` (``epochs=6``); the frame itself when None."""
    if budget is None:
        return frame
    return frame[frame["budget"] == str(Budget.parse(budget))].reset_index(drop=True)


def track_info(frame: pd.DataFrame, track: str) -> TrackInfo:
    """Track settings read from its complete runs (the newest card wins if they disagree)."""
    rows = complete_runs(frame, track)
    if rows.empty:
        rows = frame[frame["track"] == track]
    if rows.empty:
        return TrackInfo(track, track, float("nan"), (), float("nan"), ())
    newest = rows.sort_values("updated", na_position="first").iloc[-1]
    verifiers: dict[str, None] = {}
    for values in rows["verifiers"]:
        verifiers.update(dict.fromkeys(values))
    return TrackInfo(
        name=track,
        title=str(newest["track_title"]),
        eps=float(newest["eps"]),
        eps_test=tuple(newest["eps_test"]),
        headline=float(newest["headline_eps"]),
        verifiers=tuple(verifiers),
    )


def check_verifier(frame: pd.DataFrame, verifier: str) -> str:
    """Return ``verifier`` if some card reports it (or it is ``best``), else raise :class:`UnknownName`."""
    known: dict[str, None] = {"best": None}
    for values in frame["verifiers"]:
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


def _metric_columns(info: TrackInfo, verifier: str) -> list[tuple[str, str]]:
    """(column, kind) of the per-run metrics the runs table aggregates; kind is 'acc' or 'acr'."""
    verifiers = list(dict.fromkeys([verifier, "ibp"]))
    columns = [("clean_accuracy", "acc")]
    columns += [(acr_column(v), "acr") for v in verifiers]
    for eps in info.eps_test:
        columns += [(cert_column(v, eps), "acc") for v in verifiers]
    columns += [(attack_column(eps), "acc") for eps in info.eps_test]
    return columns


def runs_table(frame: pd.DataFrame, track: str, verifier: str = "best") -> pd.DataFrame:
    """One row per (method, key value, preset, budget limit): mean and std over seeds, n, budget used;
    ranked by ACR. Runs given different budgets are never averaged together.

    Columns: rank, method, title, key_param, key_value, preset, budget, n, seeds, ``<metric>_mean`` and
    ``<metric>_std`` for clean accuracy, ACR (``verifier`` and IBP), certified accuracy at each test eps
    (same verifiers), attack accuracy at each test eps, and epochs / seconds / propagations (means).
    Std is the sample std (NaN for a single seed).
    """
    info = track_info(frame, track)
    runs = complete_runs(frame, track)
    metrics = [c for c, _ in _metric_columns(info, verifier)]
    budget = ["epochs", "seconds", "propagations"]
    out_columns = ["rank", "method", "title", "key_param", "key_value", "preset", "budget", "n", "seeds"]
    out_columns += [f"{c}_{s}" for c in metrics for s in ("mean", "std")] + budget
    if runs.empty:
        return pd.DataFrame(columns=out_columns)
    for column in metrics:
        if column not in runs.columns:
            runs[column] = float("nan")
    keys = ["method", "key_value", "preset", "budget"]
    rows = []
    for (method, key_value, preset, budget_limit), group in runs.groupby(keys, dropna=False, sort=True):
        row: dict[str, Any] = {
            "method": method,
            "title": group["title"].iloc[-1],
            "key_param": group["key_param"].dropna().iloc[-1] if group["key_param"].notna().any() else None,
            "key_value": key_value,
            "preset": preset,
            "budget": budget_limit,
            "n": len(group),
            "seeds": ",".join(str(s) for s in sorted(group["seed"])),
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
    table = table.sort_values([acr, "clean_accuracy_mean", "method"], ascending=[False, False, True],
                              na_position="last", kind="mergesort").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table[out_columns]


def threshold_table(frame: pd.DataFrame, track: str, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                    verifier: str = "best") -> pd.DataFrame:
    """For each threshold and method: best ACR and best certified accuracy at the track's headline eps
    among the method's runs with clean accuracy >= threshold (NaN and empty run ids when none qualifies).

    Columns: threshold, method, title, runs (how many qualify), best_acr, best_acr_run,
    best_cert, best_cert_run, eps.
    """
    info = track_info(frame, track)
    runs = complete_runs(frame, track)
    columns = ["threshold", "method", "title", "runs", "best_acr", "best_acr_run", "best_cert",
               "best_cert_run", "eps"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    acr, cert = acr_column(verifier), cert_column(verifier, info.headline)
    if cert not in runs.columns:
        runs[cert] = float("nan")
    titles = runs.groupby("method")["title"].last()
    rows = []
    for tau in thresholds:
        for method in sorted(titles.index):
            mine = runs[(runs["method"] == method) & (runs["clean_accuracy"] >= tau - 1e-12)]
            row = {"threshold": tau, "method": method, "title": titles[method], "runs": len(mine),
                   "best_acr": float("nan"), "best_acr_run": "", "best_cert": float("nan"),
                   "best_cert_run": "", "eps": info.headline}
            for value_key, run_key, column in (("best_acr", "best_acr_run", acr), ("best_cert", "best_cert_run", cert)):
                values = pd.to_numeric(mine[column], errors="coerce")
                if values.notna().any():
                    best = values.idxmax()
                    row[value_key] = float(values[best])
                    row[run_key] = str(mine.loc[best, "run_id"])
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


def pareto_front(frame: pd.DataFrame, track: str, verifier: str = "best") -> pd.DataFrame:
    """Every complete run of the track with ``on_front``: on its method's clean-accuracy-vs-ACR front.

    Columns: method, title, run_id, seed, key_param, key_value, clean_accuracy, acr, on_front;
    sorted by method then clean accuracy.
    """
    runs = complete_runs(frame, track)
    columns = ["method", "title", "run_id", "seed", "key_param", "key_value", "clean_accuracy", "acr",
               "on_front"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    runs = runs.assign(acr=pd.to_numeric(runs[acr_column(verifier)], errors="coerce"))
    parts = []
    for _, group in runs.groupby("method", sort=True):
        group = group.assign(on_front=pareto_mask(group["clean_accuracy"], group["acr"]))
        parts.append(group.sort_values(["clean_accuracy", "acr"]))
    return pd.concat(parts)[columns].reset_index(drop=True)


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
    """Headers and string cells of the runs table as people read it."""
    metrics = _metric_columns(info, verifier)
    metrics = [(c, k) for c, k in metrics if f"{c}_mean" in table and table[f"{c}_mean"].notna().any()]
    key_names = sorted({str(k) for k in table["key_param"].dropna()})
    show_preset = table["preset"].nunique() > 1
    show_budget = table["budget"].nunique() > 1
    headers = ["#", "method", "/".join(key_names) or "key", "n"]
    headers += ["preset"] if show_preset else []
    headers += ["budget"] if show_budget else []
    headers += [metric_label(c) for c, _ in metrics] + ["epochs", "seconds", "propa-\ngations"]
    rows = []
    for _, r in table.iterrows():
        key = DASH if r["key_param"] is None or pd.isna(r["key_value"]) else f"{r['key_value']:g}"
        cells = [str(r["rank"]), str(r["method"]), key, str(r["n"])]
        cells += [str(r["preset"])] if show_preset else []
        cells += [str(r["budget"])] if show_budget else []
        cells += [fmt_mean_std(r[f"{c}_mean"], r[f"{c}_std"], k, info.acr_decimals) for c, k in metrics]
        cells += [fmt_count(r["epochs"]), fmt_count(r["seconds"]), fmt_count(r["propagations"])]
        rows.append(cells)
    return headers, rows


def display_thresholds(table: pd.DataFrame, info: TrackInfo) -> tuple[list[str], list[list[str]]]:
    """Threshold table pivoted for reading: one row per method, ACR and certified accuracy per tau."""
    thresholds = list(dict.fromkeys(table["threshold"]))
    headers = ["method"]
    for tau in thresholds:
        headers += [f"ACR\nclean ≥ {100 * tau:g}%", f"cert @{format_eps(info.headline)} %\nclean ≥ {100 * tau:g}%"]
    rows = []
    for method in dict.fromkeys(table["method"]):
        cells = [str(method)]
        for tau in thresholds:
            r = table[(table["method"] == method) & (table["threshold"] == tau)].iloc[0]
            cells += [fmt_number(r["best_acr"], "acr", info.acr_decimals), fmt_number(r["best_cert"], "acc")]
        rows.append(cells)
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


def _front_lines(front: pd.DataFrame, info: TrackInfo) -> list[str]:
    lines = []
    for method, group in front[front["on_front"]].groupby("method", sort=True):
        points = ", ".join(
            f"{r['run_id']} ({fmt_number(r['clean_accuracy'], 'acc')}%, ACR "
            f"{fmt_number(r['acr'], 'acr', info.acr_decimals)})" for _, r in group.iterrows()
        )
        lines.append(f"{method}: {points}")
    return lines


def _json_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    records = json.loads(table.to_json(orient="records"))
    return records


def render_track(index: CardIndex, track: str, thresholds: Sequence[float], verifier: str, fmt: str) -> str:
    """The compare output of one track in format ``fmt``."""
    frame = index.frame
    info = track_info(frame, track)
    runs = runs_table(frame, track, verifier)
    taus = threshold_table(frame, track, thresholds, verifier)
    front = pareto_front(frame, track, verifier)
    if fmt == "json":
        return json.dumps(
            {"track": track, "title": info.title, "eps": info.eps, "eps_test": list(info.eps_test),
             "headline_eps": info.headline, "verifier": verifier, "runs": _json_records(runs),
             "thresholds": _json_records(taus), "pareto": _json_records(front)},
            indent=2,
        )
    if fmt == "csv":
        return runs.to_csv(index=False)
    heading = f"{info.title} — eps {format_eps(info.eps)}" if math.isfinite(info.eps) else track
    if runs.empty:
        return f"{heading}: no complete runs yet.\n"
    headers, rows = display_runs(runs, info, verifier)
    t_headers, t_rows = display_thresholds(taus, info)
    note = (f"mean ± std over seeds; ranked by ACR ({verifier}); accuracies in %, ACR in pixel units "
            f"(cap {format_eps(info.eps)})")
    t_note = (f"best ACR ({verifier}) and certified accuracy at {format_eps(info.headline)} among runs "
              f"with clean accuracy ≥ tau; {DASH} = no run qualifies")
    front_lines = _front_lines(front, info)
    if fmt == "markdown":
        parts = [f"## {heading}", "", note, "", _markdown(headers, rows), "", "### Robustness at a level of "
                 "clean accuracy", "", t_note, "", _markdown(t_headers, t_rows), "",
                 "### Pareto fronts (clean accuracy vs ACR)", ""]
        parts += [f"- {line}" for line in front_lines]
        return "\n".join(parts) + "\n"
    text = _rich(heading, headers, rows, note)
    text += "\n" + _rich("Robustness at a level of clean accuracy", t_headers, t_rows, t_note)
    text += "\nPareto fronts (clean accuracy vs ACR):\n" + "".join(f"  {line}\n" for line in front_lines)
    return text


def compare_command(results_dir: Path | str, track: str | None = None,
                    thresholds: str | Sequence[float] | None = None, verifier: str = "best",
                    fmt: str = "table", budget: str | None = None) -> str:
    """Text of ``actbench compare``: tables for one track (or every track with runs when ``track`` is None).

    ``budget`` (``epochs=6``) keeps only the runs given that budget limit, for a table at one budget.

    Raises :class:`UnknownName` for an unknown track, verifier or format and :class:`InvalidConfig` for
    bad thresholds. Skipped cards are reported as lines starting with ``warning:`` (not in csv/json,
    where they would break parsing: use :func:`actbench.store.load_cards` to get them).
    """
    if fmt not in FORMATS:
        raise UnknownName("format", fmt, FORMATS)
    taus = parse_thresholds(thresholds)
    index = load_cards(Path(results_dir))
    if budget is not None:
        index = dataclasses.replace(index, frame=filter_budget(index.frame, budget))
    with_runs = sorted(set(complete_runs(index.frame)["track"]))
    if track is None:
        tracks = with_runs
    else:
        from actbench.config import list_tracks

        known = sorted(set(index.tracks()) | set(list_tracks()))
        if track not in known:
            raise UnknownName("track", track, known)
        tracks = [track]
    check_verifier(index.frame, verifier)
    if fmt == "json":
        body = {t: json.loads(render_track(index, t, taus, verifier, fmt)) for t in tracks}
        return json.dumps(body if track is None else body[track], indent=2) + "\n"
    if fmt == "csv":
        parts = [render_track(index, t, taus, verifier, fmt) for t in tracks]
        if not parts:
            return runs_table(index.frame, "", verifier).to_csv(index=False)
        if len(parts) > 1:  # one header, with the track as first column
            frames = [runs_table(index.frame, t, verifier).assign(track=t) for t in tracks]
            merged = pd.concat(frames)
            return merged[["track", *[c for c in merged.columns if c != "track"]]].to_csv(index=False)
        return parts[0]
    warnings = "".join(f"warning: {w}\n" for w in index.warnings)
    if not tracks:
        return warnings + f"no complete runs in {results_dir} yet.\n"
    return warnings + "\n".join(render_track(index, t, taus, verifier, fmt) for t in tracks)
