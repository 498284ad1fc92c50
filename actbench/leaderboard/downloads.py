"""The site's downloads: per track its tables as CSV and JSON, per run the files of its run folder.

Track tables are written from the same DataFrames the pages show (``actbench.compare``), every row with
the protocol that produced it. Run files are hard-linked into the site when the file system allows it
(no extra space, and git stores identical content once), else copied.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from actbench.store import CARD_FILE, HISTORY_FILE, MODEL_FILE, atomic_write_text

RUN_FILES = (CARD_FILE, HISTORY_FILE, MODEL_FILE)
LOCAL_COLUMNS = ("path", "command")  # machine-specific or long; the run page shows the command


def _cell(value: Any) -> Any:
    """A value a CSV cell can hold: lists and dicts as JSON text."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(list(value) if isinstance(value, tuple) else value, default=str)
    return value


def write_table(frame: pd.DataFrame, folder: Path, stem: str) -> list[tuple[str, str]]:
    """``stem.csv`` and ``stem.json`` (a list of row objects, NaN as null) in ``folder``; returns
    ``[(format, file name)]``."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = frame.reset_index(drop=True)
    atomic_write_text(folder / f"{stem}.csv", frame.map(_cell).to_csv(index=False))
    records = json.loads(frame.to_json(orient="records", default_handler=str))
    atomic_write_text(folder / f"{stem}.json", json.dumps(records, indent=1) + "\n")
    return [("CSV", f"{stem}.csv"), ("JSON", f"{stem}.json")]


def runs_frame(frame: pd.DataFrame, track: str) -> pd.DataFrame:
    """Every certification record of the track's runs (all protocols), one row each, without local paths."""
    rows = frame[frame["track"] == track].copy()
    rows.insert(2, "run_folder", [Path(p).name for p in rows["path"]])
    return rows.drop(columns=[c for c in LOCAL_COLUMNS if c in rows]).dropna(axis=1, how="all")


def _publish(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def run_files(run_dir: Path, card: dict[str, Any]) -> list[Path]:
    """The files of a run folder the site offers: card, history, every radii file, the model, its ONNX."""
    files = dict(card.get("files") or {})
    names = [*RUN_FILES, files.get("history", HISTORY_FILE), files.get("model", MODEL_FILE)]
    names += sorted(p.name for p in run_dir.glob("radii*.parquet"))
    names += sorted(p.name for p in run_dir.glob("*.onnx"))
    return [run_dir / n for n in dict.fromkeys(names) if (run_dir / n).is_file()]


def publish_run_files(run_dir: Path, card: dict[str, Any], target: Path) -> list[Path]:
    """Link (or copy) the run's files into ``target``; returns the published paths."""
    out = []
    for source in run_files(run_dir, card):
        _publish(source, target / source.name)
        out.append(target / source.name)
    return out
