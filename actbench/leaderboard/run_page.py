"""What a run's page shows: its facts, citation, downloads, certification records, verification status,
metrics, plots and the card itself (built from one card and its row of the card index)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from actbench.compare import DASH, TrackInfo, fmt_number
from actbench.config import format_eps
from actbench.leaderboard import downloads, plots
from actbench.leaderboard.status import KINDS, complete_label, complete_shares
from actbench.leaderboard.views import Cell, TableView, file_size, protocol_cell
from actbench.store import HISTORY_FILE, acr_column, attack_column, cert_column

DESCRIPTIONS = {"card.json": "run card (JSON)", "history.csv": "training history, one row per epoch",
                "model.pt": "trained model (actbench checkpoint)"}  # fmt: skip


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or DASH
    if isinstance(value, dict):
        return ", ".join(f"{k} = {_text(v)}" for k, v in value.items()) or DASH
    return DASH if value is None or value == "" else str(value)


def _pairs(section: Any, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    if not isinstance(section, dict):
        return []
    return [(str(k).replace("_", " "), _text(v)) for k, v in section.items() if k not in skip]


def card_sections(card: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The card as titled lists of (label, value); the citation and the certification records are shown
    in their own sections of the page, not here."""
    method, track, budget = card.get("method", {}), card.get("track", {}), card.get("budget", {})
    general = [("run id", _text(card.get("run_id"))), ("status", _text(card.get("status"))),
               ("source", _text(card.get("source", "actbench"))), ("seed", _text(card.get("seed"))),
               ("configuration", _text((card.get("config") or {}).get("hash"))),
               ("created", _text(card.get("created"))), ("updated", _text(card.get("updated")))]  # fmt: skip
    track_pairs = [(k, _text(track.get(k))) for k in ("name", "title", "dataset", "model", "preset") if k in track]
    for k in ("eps", "eps_test", "eps_grid"):
        if k in track:
            values = track[k] if isinstance(track[k], list | tuple) else [track[k]]
            track_pairs.append((k.replace("_", " "), ", ".join(format_eps(float(v)) for v in values)))
    track_pairs += _pairs(track, skip=("name", "title", "dataset", "model", "preset", "eps", "eps_test", "eps_grid",
                                       "quick", "notes"))  # fmt: skip
    budget_pairs = [("limit", _text(budget.get("limit"))), ("used", _text(budget.get("used"))),
                    ("stopped by", _text(budget.get("stopped_by")))]
    sections = [
        ("Run", general),
        ("Method", _pairs(method, skip=("params", "citation")) + [("params", _text(method.get("params", {})))]),
        ("Recipe", _pairs(card.get("recipe"))),
        ("Model", _pairs(card.get("model"))),
        ("Data", _pairs(card.get("data"))),
        ("Budget", budget_pairs),
        ("Model selection", _pairs(card.get("selection"))),
        ("Headline certification", _pairs(card.get("certification"))),
        ("Environment", _pairs(card.get("environment"))),
        ("Track (as run)", track_pairs),
    ]
    return [(title, items) for title, items in sections if items]


def citation_of(card: dict[str, Any], registry: Any) -> dict[str, str] | None:
    """The method's citation ``{authors, title, venue, year, link}``: the card's, else the registry's."""
    for source in ((card.get("method") or {}).get("citation"), registry):
        if isinstance(source, dict) and (source.get("authors") or source.get("link")):
            authors = source.get("authors", "")
            authors = ", ".join(map(str, authors)) if isinstance(authors, list) else str(authors)
            return {"authors": authors, **{k: str(source.get(k) or "") for k in ("title", "venue", "year", "link")}}
    return None


def metrics_views(card: dict[str, Any], info: TrackInfo) -> tuple[TableView | None, TableView | None]:
    """ACR per verifier, and certified accuracy per verifier at each test eps (plus the attack)."""
    metrics = card.get("metrics") or {}
    acr = metrics.get("acr") or {}
    acr_view = None
    if acr:
        acr_view = TableView(headers=[["verifier"], ["ACR"], ["ACR", "% of cap"]], numeric=[False, True, True],
                             name="acr")  # fmt: skip
        for verifier, value in acr.items():
            share = 100 * _num(value) / info.eps if info.eps else float("nan")
            acr_view.rows.append([Cell(str(verifier), numeric=False),
                                  Cell(fmt_number(_num(value), "acr", info.acr_decimals), _num(value)),
                                  Cell(DASH if math.isnan(share) else f"{share:.1f}", share)])  # fmt: skip
    eps_test = [float(e) for e in metrics.get("eps_test", info.eps_test) or []]
    test = metrics.get("certified_accuracy_test") or {}
    cert_view = None
    if eps_test and test:
        cert_view = TableView(headers=[["verifier"]] + [[f"@{format_eps(e)}", "%"] for e in eps_test],
                              numeric=[False] + [True] * len(eps_test), name="certified")  # fmt: skip
        for verifier, values in test.items():
            cert_view.rows.append([Cell(f"certified ({verifier})", numeric=False)]
                                  + [Cell(fmt_number(_num(v), "acc"), _num(v)) for v in values])
        grid = [float(e) for e in metrics.get("eps_grid", []) or []]
        attack = metrics.get("attack_accuracy")
        if isinstance(attack, list):
            row = [Cell("attack (upper bound)", numeric=False)]
            for e in eps_test:
                match = [a for g, a in zip(grid, attack, strict=False) if abs(g - e) <= 1e-9 * max(1, e)]
                value = _num(match[0]) if match else float("nan")
                row.append(Cell(fmt_number(value, "acc"), value))
            cert_view.rows.append(row)
    return acr_view, cert_view


def records_view(card: dict[str, Any], headline_id: str | None, info: TrackInfo) -> TableView:
    """Every certification record of the run: its protocol, whether it is the headline, its numbers."""
    eps_test = list(info.eps_test)
    headers = [["protocol"], ["label"], ["headline"], ["samples"], ["clean", "%"], ["ACR", "best"]]
    headers += [[f"cert. @{format_eps(e)}", "%"] for e in eps_test] + [["certified", "on"]]
    view = TableView(headers=headers, numeric=[False, False, False, True, True, True] + [True] * len(eps_test)
                     + [False], name="records")  # fmt: skip
    for record in card.get("certifications") or []:
        protocol, metrics = record.get("protocol") or {}, record.get("metrics") or {}
        test = (metrics.get("certified_accuracy_test") or {}).get("best") or []
        grid = [float(e) for e in metrics.get("eps_test") or []]
        cells = [protocol_cell(protocol.get("id"), str(protocol.get("label", "")), bool(protocol.get("sound", True)),
                               bool(protocol.get("checked", True))),
                 Cell(str(protocol.get("label", "")), numeric=False, wrap=True),
                 Cell("yes" if protocol.get("id") == headline_id and record.get("track_protocol") else "",
                      numeric=False),
                 Cell(_text(metrics.get("samples")), _num(metrics.get("samples"))),
                 Cell(fmt_number(_num(metrics.get("clean_accuracy")), "acc"), _num(metrics.get("clean_accuracy"))),
                 Cell(fmt_number(_num((metrics.get("acr") or {}).get("best")), "acr", info.acr_decimals),
                      _num((metrics.get("acr") or {}).get("best")))]  # fmt: skip
        for e in eps_test:
            match = [v for g, v in zip(grid, test, strict=False) if abs(g - e) <= 1e-9 * max(1, e)]
            value = _num(match[0]) if match else float("nan")
            cells.append(Cell(fmt_number(value, "acc"), value))
        cells.append(Cell(str(record.get("created") or DASH).replace("T", " ")[:16], numeric=False))
        view.rows.append(cells)
    return view


def status_view(row: pd.Series, card: dict[str, Any], info: TrackInfo) -> TableView | None:
    """Certified / falsified / unknown shares at each test eps from the headline record: the protocol's
    verifiers and attack, and complete verification where the record has counts."""
    headers = [["eps"], ["certified", "%"], ["falsified", "%"], ["unknown", "%"], ["decided by"]]
    view = TableView(headers=headers, numeric=[True, True, True, True, False], name="status")
    verifiers = " → ".join(info.verifiers)
    record = next((r for r in reversed(card.get("certifications") or [])
                   if (r.get("protocol") or {}).get("id") == row["protocol"]), None)  # fmt: skip
    for eps in info.eps_test:
        certified, robust = _num(row.get(cert_column("best", eps))), _num(row.get(attack_column(eps)))
        if bool(row["protocol_checked"]) and not (math.isnan(certified) or math.isnan(robust)):
            shares = [certified, 1 - robust, max(0.0, robust - certified)]
            view.rows.append([Cell(format_eps(eps), eps)] + [Cell(fmt_number(v, "acc"), v) for v in shares]
                             + [Cell(f"{verifiers} + PGD attack", numeric=False)])  # fmt: skip
        complete = complete_shares(record, eps) if record else None
        if complete is not None:
            view.rows.append([Cell(format_eps(eps), eps)]
                             + [Cell(fmt_number(complete[k], "acc"), complete[k]) for k in KINDS]
                             + [Cell(complete_label(record), numeric=False)])  # fmt: skip
    return view if view.rows else None


def _external(card: dict[str, Any], row: pd.Series) -> list[tuple[str, str, str]] | None:
    """A submitted model's file, SHA-256 and claimed numbers next to what actbench measured."""
    section = card.get("external") or card.get("submission")
    if card.get("source") != "external" and not isinstance(section, dict):
        return None
    section = section if isinstance(section, dict) else {}
    out = [("file", _text(section.get("file")), ""), ("SHA-256", _text(section.get("sha256")), "")]
    for key, value in (section.get("claimed") or section.get("claims") or {}).items():
        measured = row.get(key, float("nan"))
        if key.startswith("certified_accuracy@"):
            measured = row.get(cert_column("best", float(key.split("@", 1)[1])), float("nan"))
        kind = "acc" if "accuracy" in key else "acr"
        out.append((f"claimed {key}", fmt_number(_num(value), kind, 4),
                    f"measured here: {fmt_number(_num(measured), kind, 4)}"))
    return out


def run_context(frame: pd.DataFrame, row: pd.Series, card: dict[str, Any], info: TrackInfo,
                colors: dict[str, str], assets: Path, radii: pd.DataFrame | None,
                registry_citation: Any) -> dict[str, Any]:
    """Everything ``run.html`` renders for one run; writes its plots and downloads into ``assets``."""
    run_dir = Path(row["path"])
    name = assets.name
    published = downloads.publish_run_files(run_dir, card, assets)
    files = []
    for path in published:
        what = DESCRIPTIONS.get(path.name, "")
        if path.suffix == ".parquet":
            what = "per-sample radii" + ("" if path.name == "radii.parquet" else f", protocol {path.stem[6:]}")
        elif path.suffix == ".onnx":
            what = "trained model (ONNX export)"
        files.append({"name": path.name, "href": f"{name}/{path.name}", "size": file_size(path), "what": what})
    if radii is None and row.get("radii_file"):
        try:
            radii = pd.read_parquet(run_dir / str(row["radii_file"]))
        except Exception:  # noqa: BLE001 - a missing or corrupt file only costs a plot
            radii = None
    radii_svg = history_svg = None
    if radii is not None and "radius_best" in radii:
        plots.radius_histogram(radii, info.eps, info.eps_test, assets / "radii.svg",
                               colors.get(row["method"], plots.PALETTE[0]))
        radii_svg = f"{name}/radii.svg"
    history_path = run_dir / str((card.get("files") or {}).get("history", HISTORY_FILE))
    try:
        history = pd.read_csv(history_path)
    except Exception:  # noqa: BLE001 - a missing or corrupt file only costs a plot
        history = None
    if history is not None and len(history):
        plots.history_plot(history, assets / "history.svg")
        history_svg = f"{name}/history.svg"
    acr_view, cert_view = metrics_views(card, info)
    key = row["key_param"]
    key_text = DASH if not isinstance(key, str) or pd.isna(row["key_value"]) else f"{float(row['key_value']):g}"
    return {
        "row": row, "card": card, "info": info, "key": key_text, "sections": card_sections(card),
        "acr": acr_view, "cert": cert_view, "radii_svg": radii_svg, "history_svg": history_svg,
        "color": colors.get(row["method"]), "raw": json.dumps(card, indent=2), "files": files,
        "citation": citation_of(card, registry_citation), "records": records_view(card, row["protocol"], info),
        "status": status_view(row, card, info), "tune": card.get("tune") if isinstance(card.get("tune"), dict)
        else None, "external": _external(card, row), "protocol_warnings": [
            w for w, ok in (("not sound: float32 bounds", row["protocol_sound"]),
                            ("not checked: no attack", row["protocol_checked"])) if not ok],
        "clean": fmt_number(row["clean_accuracy"], "acc"),
        "acr_best": fmt_number(row[acr_column("best")], "acr", info.acr_decimals),
        "cert_headline": fmt_number(row.get(cert_column("best", info.headline)), "acc"),
        "headline": format_eps(info.headline), "samples": _text(row.get("samples")),
    }  # fmt: skip
