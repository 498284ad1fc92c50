"""Tables of the leaderboard site as rows of cells, ready for the ``table`` template macro.

A :class:`TableView` says what the browser table does (``DataTables`` in ``static/tables.js``): ``full``
tables get search, per-column filters, column visibility and CSV export, ``plain`` tables only sorting.
Every number comes from :mod:`actbench.compare` (configuration means under one protocol) or from the card
index, so the site shows what ``actbench compare`` prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from actbench.compare import (
    DASH,
    TrackInfo,
    complete_runs,
    config_labels,
    fmt_count,
    fmt_number,
    hypervolume_table,
    runs_table,
    threshold_table,
)
from actbench.compare_complete import complete_note, complete_table, display_complete
from actbench.config import format_eps
from actbench.leaderboard.literature import NOTICE, LiteraturePoint
from actbench.store import acr_column, attack_column, cert_column


@dataclass
class Cell:
    """One table cell: the text shown, the value sorting uses, an optional link, colour swatch and sub-line."""

    text: str
    value: float | str | None = None
    href: str | None = None
    numeric: bool = True
    color: str | None = None
    sub: str = ""  # secondary text in small type (the ± std of a mean)
    title: str = ""  # tooltip (a protocol's label behind its id)
    badge: str = ""  # a short warning tag shown after the text ("not sound")
    wrap: bool = False  # may break after "=" or "-" (budget labels, run ids) instead of widening its column

    @property
    def sort_value(self) -> str:
        """What ``data-order`` holds: numbers in full precision, '' for a missing value."""
        value = self.text if self.value is None and not self.numeric else self.value
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return f"{value:.12g}" if isinstance(value, int | float) else str(value)

    @property
    def search_value(self) -> str:
        """What ``data-search`` holds: the text a column filter matches exactly (no ± line, no badge)."""
        return self.text


@dataclass
class TableView:
    """A table for the ``table`` macro: header lines, rows of cells, and how the browser should treat it."""

    headers: list[list[str]]
    rows: list[list[Cell]] = field(default_factory=list)
    numeric: list[bool] = field(default_factory=list)
    caption: str = ""
    name: str = "table"  # CSS class and the CSV export's file name
    kind: str = "plain"  # "full": search, filters, column visibility, CSV; "plain": sorting only
    hidden: list[int] = field(default_factory=list)  # columns hidden until shown with the Columns button
    filters: list[int] = field(default_factory=list)  # columns with a drop-down filter (exact match)

    def column(self, header: str) -> int:
        """Index of the column whose header lines join to ``header`` (``"clean %"``)."""
        return [" ".join(h) for h in self.headers].index(header)

    def add_filters(self, *headers: str, always: tuple[str, ...] = ("method",)) -> None:
        """Give a drop-down filter to each named column that has more than one value (``always``: any)."""
        for header in headers:
            index = self.column(header)
            values = {row[index].search_value for row in self.rows}
            if len(values) > 1 or (header in always and values):
                self.filters.append(index)


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def mean_cell(mean: Any, std: Any, kind: str, decimals: int) -> Cell:
    """A seed mean with its std in small type underneath (no std line for one seed)."""
    text = fmt_number(mean, kind, decimals)
    sub = "" if text == DASH or pd.isna(std) else f"± {fmt_number(std, kind, decimals)}"
    return Cell(text, _num(mean), sub=sub)


def method_cell(method: str, colors: dict[str, str], root: str, external: bool = False) -> Cell:
    """The method's name with its colour, linking to its entry on the methods page."""
    return Cell(str(method), str(method), href=f"{root}methods.html#method-{method}", numeric=False,
                color=colors.get(method), badge="external" if external else "")  # fmt: skip


def protocol_cell(pid: Any, label: str, sound: bool = True, checked: bool = True) -> Cell:
    """A protocol id with its label as tooltip and a badge when it is not sound or not checked."""
    badges = [b for b, ok in (("not sound", sound), ("not checked", checked)) if not ok]
    return Cell(str(pid or DASH), str(pid or ""), numeric=False, title=label, badge=", ".join(badges))


def _samples_text(values: pd.Series) -> str:
    counts = sorted({int(v) for v in pd.to_numeric(values, errors="coerce").dropna()})
    return ", ".join(str(c) for c in counts) or DASH


def _tuning_text(tunes: list[dict[str, Any]]) -> str:
    """``study s1 (40 trials)`` from the ``tune`` sections of a configuration's cards ('' when none)."""
    studies = {}
    for tune in tunes:
        if isinstance(tune, dict) and tune.get("study"):
            studies[str(tune["study"])] = tune.get("trials")
    return "; ".join(f"study {s}" + (f" ({t} trials)" if t else "") for s, t in studies.items())


def configs_view(frame: pd.DataFrame, runs: pd.DataFrame, info: TrackInfo, colors: dict[str, str],
                 tunes: dict[str, list[dict[str, Any]]], root: str = "../") -> TableView:
    """One row per configuration under ``info.protocol`` (mean ± std over its seeds), ranked by ACR; the
    IBP-only columns start hidden (the Columns button shows them)."""
    table = runs_table(frame, info.name, protocol=info.protocol)
    d = info.acr_decimals
    metrics: list[tuple[str, str, list[str], bool]] = [
        ("clean_accuracy", "acc", ["clean"], False), (acr_column("best"), "acr", ["ACR", "best"], False),
        (acr_column("ibp"), "acr", ["ACR", "IBP"], True)]  # fmt: skip
    for eps in info.eps_test:
        metrics.append((cert_column("best", eps), "acc", ["cert.", f"@{format_eps(eps)}"], False))
        metrics.append((cert_column("ibp", eps), "acc", ["IBP cert.", f"@{format_eps(eps)}"], True))
    for eps in info.eps_test:
        metrics.append((attack_column(eps), "acc", ["attack", f"@{format_eps(eps)}"], False))
    metrics = [m for m in metrics if f"{m[0]}_mean" in table and table[f"{m[0]}_mean"].notna().any()]
    show_recipe = table["recipe"].astype(str).nunique() > 1
    show_tuning = any(tunes.get(c) for c in table["config"])
    headers = [["#"], ["method"], ["configuration"], ["n"], ["preset"], ["budget"]]
    headers += [["recipe"]] if show_recipe else []
    headers += [["samples"], ["protocol"]] + ([["tuning"]] if show_tuning else [])
    text_columns = len(headers)
    headers += [m[2] for m in metrics] + [["epochs"], ["seconds"], ["propa-", "gations"]]  # accuracies in %
    numeric = [True, False, False, True] + [False] * (text_columns - 4) + [True] * (len(metrics) + 3)
    numeric[headers.index(["samples"])] = True
    view = TableView(headers=headers, numeric=numeric, name="configs", kind="full",
                     hidden=[text_columns + i for i, m in enumerate(metrics) if m[3]])  # fmt: skip
    samples = runs.groupby("config")["samples"].agg(_samples_text) if len(runs) else pd.Series(dtype=str)
    external = set(runs.loc[runs["source"] == "external", "config"]) if len(runs) else set()
    for _, r in table.iterrows():
        cells = [Cell(str(r["rank"]), int(r["rank"])), method_cell(r["method"], colors, root, r["config"] in external),
                 Cell(str(r["config_label"]), numeric=False), Cell(str(r["n"]), int(r["n"])),
                 Cell(str(r["preset"]), numeric=False), Cell(str(r["budget"]), numeric=False, wrap=True)]  # fmt: skip
        if show_recipe:
            cells.append(Cell(str(r["recipe"]), numeric=False))
        count = samples.get(r["config"], DASH)
        cells += [Cell(count, _num(count.split(",")[0]) if count != DASH else None),
                  protocol_cell(info.protocol, info.protocol_label, info.protocol_sound, info.protocol_checked)]
        if show_tuning:
            cells.append(Cell(_tuning_text(tunes.get(r["config"], [])) or DASH, numeric=False, wrap=True))
        for column, kind, _, _ in metrics:
            cells.append(mean_cell(r[f"{column}_mean"], r[f"{column}_std"], kind, d))
        cells += [Cell(fmt_count(r[c]), _num(r[c])) for c in ("epochs", "seconds", "propagations")]
        view.rows.append(cells)
    view.add_filters("method", "preset", "budget")
    return view


def runs_view(runs: pd.DataFrame, front: pd.DataFrame, info: TrackInfo, colors: dict[str, str],
              run_href: dict[str, str], root: str = "../") -> TableView:
    """One row per run certified under ``info.protocol``, linking to its page; says whether its
    configuration is on its method's front in each view."""
    fronts = {}
    for column in ("on_front", "on_front_cert"):
        fronts[column] = set(front.loc[front[column].astype(bool), "config"]) if len(front) else set()
    labels = config_labels(runs) if len(runs) else {}
    d = info.acr_decimals
    cert, attack = cert_column("best", info.headline), attack_column(info.headline)
    h = format_eps(info.headline)
    headers = [["run"], ["method"], ["configuration"], ["seed"], ["preset"], ["budget"], ["samples"], ["protocol"],
               ["clean"], ["ACR", "best"], ["ACR", "IBP"], ["cert.", f"@{h}"], ["attack", f"@{h}"], ["on its", "front"],
               ["epochs"], ["seconds"], ["updated"]]  # fmt: skip
    numeric = [False, False, False, True, False, False, True, False] + [True] * 5 + [False, True, True, False]
    view = TableView(headers=headers, numeric=numeric, name="runs", kind="full", hidden=[10, 16])
    for _, r in runs.sort_values(acr_column("best"), ascending=False, kind="mergesort").iterrows():
        marks = [v for c, v in (("on_front", "ACR"), ("on_front_cert", "cert.")) if r["config"] in fronts[c]]
        view.rows.append([
            Cell(str(r["run_id"]), href=run_href.get(str(r["path"])), numeric=False, wrap=True),
            method_cell(r["method"], colors, root, r.get("source") == "external"),
            Cell(labels.get(r["config"], DASH), numeric=False), Cell(str(r["seed"]), int(r["seed"])),
            Cell(str(r["preset"]), numeric=False), Cell(str(r["budget"]), numeric=False, wrap=True),
            Cell(fmt_count(r["samples"]), _num(r["samples"])),
            protocol_cell(r["protocol"], str(r["protocol_label"]), bool(r["protocol_sound"]),
                          bool(r["protocol_checked"])),
            Cell(fmt_number(r["clean_accuracy"], "acc"), _num(r["clean_accuracy"])),
            Cell(fmt_number(r[acr_column("best")], "acr", d), _num(r[acr_column("best")])),
            Cell(fmt_number(r.get(acr_column("ibp")), "acr", d), _num(r.get(acr_column("ibp")))),
            Cell(fmt_number(r.get(cert), "acc"), _num(r.get(cert))),
            Cell(fmt_number(r.get(attack), "acc"), _num(r.get(attack))),
            Cell(", ".join(marks) or DASH, numeric=False),
            Cell(fmt_count(r["epochs"]), _num(r["epochs"])), Cell(fmt_count(r["seconds"]), _num(r["seconds"])),
            Cell(str(r["updated"] or "").replace("T", " ")[:16] or DASH, str(r["updated"] or ""), numeric=False),
        ])  # fmt: skip
    view.add_filters("method", "preset", "budget", "protocol")
    return view


def records_view(frame: pd.DataFrame, track: str, default: str | None, colors: dict[str, str],
                 run_href: dict[str, str], headline: float, root: str = "../") -> TableView:
    """Every certification record of the track's runs, all protocols: which protocol, whether it is the
    run's headline, and its numbers (each row under its own protocol; never ranked)."""
    rows = frame[(frame["track"] == track) & frame["protocol"].notna()
                 & frame["status"].isin(["complete", "trained"])]  # fmt: skip
    cert = cert_column("best", headline)
    h = format_eps(headline)
    headers = [["run"], ["method"], ["protocol"], ["protocol", "label"], ["tables'", "protocol"], ["headline"],
               ["samples"], ["clean"], ["ACR", "best"], ["cert.", f"@{h}"]]  # fmt: skip
    view = TableView(headers=headers, numeric=[False] * 6 + [True] * 4, name="records", kind="full")
    for _, r in rows.iterrows():
        view.rows.append([
            Cell(str(r["run_id"]), href=run_href.get(str(r["path"])), numeric=False, wrap=True),
            method_cell(r["method"], colors, root),
            protocol_cell(r["protocol"], str(r["protocol_label"]), bool(r["protocol_sound"]),
                          bool(r["protocol_checked"])),
            Cell(str(r["protocol_label"]), numeric=False, wrap=True),
            Cell("yes" if r["protocol"] == default else "", numeric=False),
            Cell("yes" if bool(r["headline"]) else "", numeric=False),
            Cell(fmt_count(r["samples"]), _num(r["samples"])),
            Cell(fmt_number(r["clean_accuracy"], "acc"), _num(r["clean_accuracy"])),
            Cell(fmt_number(r.get(acr_column("best")), "acr", 4), _num(r.get(acr_column("best")))),
            Cell(fmt_number(r.get(cert), "acc"), _num(r.get(cert))),
        ])  # fmt: skip
    view.add_filters("method", "protocol")
    return view


def thresholds_views(frame: pd.DataFrame, info: TrackInfo, colors: dict[str, str], thresholds: tuple[float, ...],
                     root: str = "../") -> tuple[TableView, TableView]:
    """Best seed-mean ACR, and best seed-mean certified accuracy at the headline eps, per method (rows) and
    clean-accuracy level (columns), over the method's configurations; the configuration is in the cell."""
    table = threshold_table(frame, info.name, thresholds, protocol=info.protocol)
    headers = [["method"], ["configs"]] + [["clean", f"≥ {100 * tau:g}%"] for tau in thresholds]
    numeric = [False, True] + [True] * len(thresholds)
    views = (TableView(headers=headers, numeric=numeric, caption="best ACR", name="thresholds-acr"),
             TableView(headers=headers, numeric=numeric, name="thresholds-cert",
                       caption=f"best certified accuracy @{format_eps(info.headline)} (%)"))  # fmt: skip
    for method in dict.fromkeys(table["method"]):
        mine = table[table["method"] == method]
        rows: tuple[list[Cell], list[Cell]] = ([], [])
        configs = int(mine["configs"].iloc[0])
        for row in rows:
            row += [method_cell(method, colors, root), Cell(str(configs), configs)]
        for tau in thresholds:
            r = mine[mine["threshold"] == tau].iloc[0]
            best = ((r["best_acr"], r["best_acr_std"], r["best_acr_config"], "acr"),
                    (r["best_cert"], r["best_cert_std"], r["best_cert_config"], "acc"))
            for row, (value, std, config, kind) in zip(rows, best, strict=True):
                cell = mean_cell(value, std, kind, info.acr_decimals)
                cell.sub = " ".join(part for part in (cell.sub, f"({config})" if config else "") if part)
                row.append(cell)
        for view, row in zip(views, rows, strict=True):
            view.rows.append(row)
    return views


def hypervolume_view(frame: pd.DataFrame, info: TrackInfo, colors: dict[str, str],
                     tuning: dict[str, str], root: str = "../") -> TableView:
    """Per method: configurations, seeds and the two hypervolumes of its front of configuration means."""
    table = hypervolume_table(frame, info.name, protocol=info.protocol)
    h = format_eps(info.headline)
    headers = [["method"], ["configs"], ["seeds"], ["HV clean ×", f"cert @{h}"], ["HV clean ×", "ACR/eps"]]
    headers += [["tuning"]] if tuning else []
    view = TableView(headers=headers, numeric=[False, True, False, True, True, False][:len(headers)],
                     name="hypervolume")  # fmt: skip
    for _, r in table.iterrows():
        row = [method_cell(r["method"], colors, root), Cell(str(r["configs"]), int(r["configs"])),
               Cell(str(r["seeds"]), numeric=False), Cell(f"{r['hv_cert']:.4f}", float(r["hv_cert"])),
               Cell(f"{r['hv_acr']:.4f}", float(r["hv_acr"]))]  # fmt: skip
        if tuning:
            row.append(Cell(tuning.get(str(r["method"]), DASH), numeric=False))
        view.rows.append(row)
    return view


def complete_view(frame: pd.DataFrame, info: TrackInfo, colors: dict[str, str], root: str = "../") -> TableView | None:
    """Per configuration: what complete verification decided on the protocol's subset (None without one)."""
    configs = runs_table(frame, info.name, protocol=info.protocol)
    table = complete_table(complete_runs(frame, info.name, info.protocol), configs) if len(configs) else None
    if table is None or table.empty:
        return None
    headers, rows = display_complete(table)
    view = TableView(headers=[[h] for h in headers], numeric=[False, False] + [True] * (len(headers) - 2),
                     name="complete", caption=complete_note(table))
    for cells, (_, r) in zip(rows, table.iterrows(), strict=True):
        view.rows.append([method_cell(r["method"], colors, root), Cell(cells[1], numeric=False)]
                         + [Cell(c, c) for c in cells[2:]])
    return view


def literature_view(points: list[LiteraturePoint], root: str = "../") -> TableView:
    """The track's published reference points, each with its paper, source, verifier and time limit."""
    headers = [["method"], ["eps"], ["clean", "%"], ["certified", "%"], ["verifier"], ["time limit"], ["model"],
               ["paper"], ["where the number", "was read"]]  # fmt: skip
    view = TableView(headers=headers, numeric=[False, True, True, True] + [False] * 5, name="literature",
                     caption=f"{NOTICE}: never ranked with actbench's runs")  # fmt: skip
    for p in points:
        view.rows.append([
            Cell(p.method, href=f"{root}methods.html#method-{p.method_name}" if p.method_name else None,
                 numeric=False),
            Cell(format_eps(p.eps), p.eps),
            Cell(fmt_number(p.clean_accuracy, "acc") if p.clean_accuracy is not None else "not stated",
                 p.clean_accuracy),
            Cell(fmt_number(p.certified_accuracy, "acc"), p.certified_accuracy),
            Cell(p.verifier, numeric=False), Cell(p.time_limit, numeric=False),
            Cell(p.model or DASH, numeric=False),
            Cell(p.paper, href=p.paper_link or None, numeric=False),
            Cell(p.source, href=p.link, numeric=False),
        ])  # fmt: skip
    return view


def status_view(status: pd.DataFrame, colors: dict[str, str], root: str = "../") -> TableView:
    """Per configuration: the shares of test samples certified, falsified and unknown at the headline eps,
    and what decided them (the protocol's verifiers and attack, or a complete verifier)."""
    headers = [["method"], ["configuration"], ["n"], ["certified", "%"], ["falsified", "%"], ["unknown", "%"],
               ["decided by"]]  # fmt: skip
    view = TableView(headers=headers, numeric=[False, False, True, True, True, True, False], name="status")
    for _, r in status.iterrows():
        view.rows.append([method_cell(r["method"], colors, root), Cell(str(r["config_label"]), numeric=False),
                          Cell(str(r["n"]), int(r["n"])),
                          *[Cell(fmt_number(r[k], "acc"), _num(r[k])) for k in ("certified", "falsified", "unknown")],
                          Cell(str(r["source"]), numeric=False, wrap=True)])  # fmt: skip
    return view


def file_size(path: Path) -> str:
    """``12 KB``, ``3.4 MB``: the size of a download next to its link."""
    size = path.stat().st_size
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
