"""Tuned trade-off fronts: selected on validation, reported on validation and on test.

A method's tuned front is the set of its trials' configurations that no other of its configurations
dominates on the *validation* objectives (what the search optimised). Its hypervolume is reported
twice, both with reference point (0, 0) and in [0, 1]: on validation (``hv_val``), and on test
(``hv_test``: the same configurations' test clean accuracy × test certified accuracy at the headline eps,
or × ACR/eps, under the track's certification protocol). The test number is read after the search is
over and never picks among configurations, so it is not a best-of-N on the test set.

Everything here is computed from run cards (their ``tune`` section), so ``actbench tune`` and
``actbench compare`` show the same fronts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actbench.compare import hypervolume, pareto_mask
from actbench.store import acr_column, card_row, cert_column
from actbench.tune.trial import objective_values, search_view


@dataclass(frozen=True)
class Point:
    """One configuration a trial produced: its validation objectives and (once certified) its test ones."""

    method: str
    trial: int
    run_id: str
    label: str
    val: tuple[float, float]
    test: tuple[float, float] | None
    protocol: str | None = None


def params_label(params: dict[str, Any]) -> str:
    """``kappa=0.412, lr=0.0012``: the sampled values, short."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def point_on_test(card: dict[str, Any], objectives: str,
                  run_dir: Path | str = ".") -> tuple[tuple[float, float] | None, str | None]:
    """A complete card's test point (clean accuracy, certified accuracy at the headline eps or ACR/eps, best
    verifier) under its headline protocol, and that protocol's id; ``(None, None)`` when not certified."""
    if card.get("status") != "complete" or not isinstance(card.get("metrics"), dict):
        return None, None
    row = card_row(card, Path(run_dir))
    if objectives.endswith("acr"):
        second = row[acr_column("best")] / row["eps"] if row["eps"] else float("nan")
    else:
        second = row.get(cert_column("best", row["headline_eps"]), float("nan"))
    point = (float(row["clean_accuracy"]), float(second))
    return (point if all(math.isfinite(v) for v in point) else None), row["protocol"]


def tune_records(card: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (study, trial) record of a card: its ``tune`` section and the ones in ``tune.also``."""
    tune = card.get("tune")
    if not isinstance(tune, dict):
        return []
    return [{k: v for k, v in tune.items() if k != "also"}, *[r for r in tune.get("also", []) if isinstance(r, dict)]]


def card_point(card: dict[str, Any], run_dir: Path | str = ".", record: dict[str, Any] | None = None) -> Point | None:
    """The point of a card for one of its tune records (default: its ``tune`` section; None without one),
    on that record's objectives."""
    records = tune_records(card)
    if record is None and not records:
        return None
    record = record or records[0]
    objectives = record.get("objectives") or "clean,certified"
    values = record.get("values")
    val = tuple(values) if values else objective_values(search_view(card), objectives, Path(run_dir))
    test, protocol = point_on_test(card, objectives, run_dir)
    return Point(card["method"]["name"], int(record.get("trial", -1)), card["run_id"],
                 params_label(record.get("params") or {}), (float(val[0]), float(val[1])), test, protocol)  # fmt: skip


def summarise(points: Iterable[Point]) -> dict[str, Any]:
    """A method's tuned front: its distinct configurations, those on the validation front, and the
    validation and test hypervolumes of that front (``hv_test`` is None until every front member is
    certified)."""
    distinct: dict[str, Point] = {}
    for point in sorted(points, key=lambda p: p.trial):
        distinct.setdefault(point.run_id, point)
    chosen = list(distinct.values())
    mask = pareto_mask([p.val[0] for p in chosen], [p.val[1] for p in chosen])
    front = sorted((p for p, on in zip(chosen, mask, strict=True) if on), key=lambda p: p.val[0])
    tested = [p.test for p in front if p.test is not None]
    return {
        "configs": len(chosen),
        "front": [{"trial": p.trial, "run_id": p.run_id, "params": p.label, "val": list(p.val),
                   "test": list(p.test) if p.test else None} for p in front],  # fmt: skip
        "hv_val": hypervolume([p.val[0] for p in front], [p.val[1] for p in front]),
        "hv_test": hypervolume([t[0] for t in tested], [t[1] for t in tested]) if len(tested) == len(front) else None,
    }


def tuned_fronts(cards: Iterable[tuple[str, dict[str, Any]]], track: str,
                 protocol: str | None = None) -> list[dict[str, Any]]:
    """Per (study, method) of ``track``: budget (trials per method, as recorded), configurations, front and
    hypervolumes, from the cards (``(run folder, card)`` pairs). Test points count only under ``protocol``
    (default: any), so a table never mixes protocols."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for run_dir, card in cards:
        if (card.get("track") or {}).get("name") != track:
            continue
        for record in tune_records(card):
            point = card_point(card, run_dir, record)
            if point is None:
                continue
            if protocol is not None and point.protocol not in (None, protocol):
                point = dataclasses.replace(point, test=None)
            key = (str(record.get("study")), point.method)
            group = groups.setdefault(key, {"study": key[0], "method": key[1], "budget": 0, "points": [],
                                            "objectives": record.get("objectives"),
                                            "sampler": record.get("sampler")})  # fmt: skip
            group["budget"] = max(group["budget"], int(record.get("trials") or 0))
            group["points"].append(point)
    out = []
    for (_, _), group in sorted(groups.items()):
        points = group.pop("points")
        out.append({**group, **summarise(points)})
    return out


def budget_note(rows: list[dict[str, Any]]) -> str:
    """A warning when the methods of one study were given different numbers of trials, else ''."""
    notes = []
    for study in sorted({r["study"] for r in rows}):
        budgets = {r["method"]: r["budget"] for r in rows if r["study"] == study}
        if len(set(budgets.values())) > 1:
            listed = ", ".join(f"{m} {n}" for m, n in sorted(budgets.items()))
            notes.append(f"study {study} gave its methods unequal trial budgets ({listed})")
    return "; ".join(notes)


def display_rows(rows: list[dict[str, Any]], wide: bool = True) -> tuple[list[str], list[list[str]]]:
    """Headers and text rows of a tuned-fronts table: trials as ``finished/budget`` when the rows know how
    many finished (the tune's own report), ``failed`` likewise; ``wide`` adds study, objectives, sampler."""
    known = any("finished" in r for r in rows)
    headers = ["method", *(["study"] if wide else []), "trials" if known else "trials (budget)", "configs",
               *(["failed"] if known else []), "front", "HV val", "HV test",
               *(["objectives", "sampler"] if wide else [])]  # fmt: skip

    def hv(value: Any) -> str:
        return "—" if value is None else f"{value:.4f}"

    body = []
    for r in rows:
        sampler = r.get("sampler") or {}
        trials = f"{r['finished']}/{r['budget']}" if known else str(r["budget"])
        body.append([r["method"], *([r["study"]] if wide else []), trials, str(r["configs"]),
                     *([str(r.get("failed", 0))] if known else []), str(len(r["front"])), hv(r["hv_val"]),
                     hv(r["hv_test"]),
                     *([str(r.get("objectives") or ""),
                        str(sampler.get("name", "")) if isinstance(sampler, dict) else str(sampler)] if wide else [])])
    return headers, body


def front_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per method: its front's configurations with validation and test points in %."""
    lines = []
    for r in rows:
        parts = []
        for p in r["front"]:
            test = "not certified" if p["test"] is None else f"test {100 * p['test'][0]:.1f}/{100 * p['test'][1]:.1f}"
            parts.append(f"{p['params'] or p['run_id']} (val {100 * p['val'][0]:.1f}/{100 * p['val'][1]:.1f}, {test})")
        lines.append(f"{r['method']} ({r['study']}): " + ("; ".join(parts) or "no configurations yet"))
    return lines
