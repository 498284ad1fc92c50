"""Published reference points of a track: numbers from papers, shown beside actbench's runs, never ranked.

Each registered track may have ``actbench/tracks/literature/<track>.toml``: a list of ``[[point]]`` tables,
each one published number with where it was read and how it was certified::

    [[point]]
    method = "fast IBP (Shi et al. 2021)"   # a label; ``method_name`` links an actbench method when it is one
    method_name = "ibp"
    paper = "Shi et al., Fast Certified Robust Training with Short Warmup, NeurIPS 2021"
    paper_link = "https://arxiv.org/abs/2103.17268"
    link = "https://github.com/shizhouxing/Fast-Certified-Robust-Training"   # where the number was read
    source = "README of the authors' code: 'we achieved 65.03% verified error on CIFAR-10 (eps=8/255)'"
    eps = "8/255"
    certified_accuracy = 0.3497             # fractions in [0, 1], like run cards
    verifier = "IBP"
    time_limit = "none: one bound pass per sample"
    model = "not stated in the source"      # optional, like clean_accuracy and acr: only what the source states

The site shows them in their own table and as hollow markers marked "published, not re-run here"; they
never enter a ranking, a front or a hypervolume (different models, schedules and verifiers). A file that
is malformed raises :class:`InvalidConfig` naming the file and the point, so a typo cannot slip a number in.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actbench.config import TRACKS_DIR, parse_eps
from actbench.errors import InvalidConfig

LITERATURE_DIR = TRACKS_DIR / "literature"
REQUIRED = ("method", "paper", "link", "source", "eps", "certified_accuracy", "verifier", "time_limit")
OPTIONAL = ("method_name", "paper_link", "clean_accuracy", "acr", "model", "note")
TEXT_KEYS = ("method", "paper", "link", "source", "verifier", "time_limit", "method_name", "paper_link", "model",
             "note")
NOTICE = "published, not re-run here"


@dataclass(frozen=True)
class LiteraturePoint:
    """One published number (accuracies as fractions, eps in pixel units)."""

    method: str
    paper: str
    link: str
    source: str
    eps: float
    certified_accuracy: float
    verifier: str
    time_limit: str
    method_name: str = ""
    paper_link: str = ""
    clean_accuracy: float | None = None
    acr: float | None = None
    model: str = ""
    note: str = ""


def _fraction(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidConfig(f"{where}: {key} must be a number, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        hint = f" (did you mean {value / 100:g}?)" if 1 < value <= 100 else ""
        raise InvalidConfig(f"{where}: {key} must be a fraction in [0, 1]{hint}")
    return float(value)


def parse_point(raw: Any, where: str) -> LiteraturePoint:
    """Validate one ``[[point]]`` table; raise :class:`InvalidConfig` saying what is wrong."""
    if not isinstance(raw, dict):
        raise InvalidConfig(f"{where}: a point must be a table")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise InvalidConfig(f"{where}: missing {', '.join(missing)} (every published number needs its paper, "
                            "source, eps, verifier and time limit)")
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise InvalidConfig(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(REQUIRED + OPTIONAL)}")
    for key in TEXT_KEYS:
        if key in raw and (not isinstance(raw[key], str) or (key in REQUIRED and not raw[key].strip())):
            raise InvalidConfig(f"{where}: {key} must be a non-empty string")
    for key in ("link", "paper_link"):
        if key in raw and not raw[key].startswith(("https://", "http://")):
            raise InvalidConfig(f"{where}: {key} must be a web address (https://...)")
    try:
        eps = parse_eps(raw["eps"])
    except InvalidConfig as exc:
        raise InvalidConfig(f"{where}: {exc}") from exc
    clean = raw.get("clean_accuracy")
    acr = raw.get("acr")
    if acr is not None and (isinstance(acr, bool) or not isinstance(acr, int | float) or not acr >= 0):
        raise InvalidConfig(f"{where}: acr must be a non-negative number in pixel units")
    return LiteraturePoint(
        method=raw["method"].strip(), paper=raw["paper"].strip(), link=raw["link"].strip(),
        source=raw["source"].strip(), eps=eps,
        certified_accuracy=_fraction(raw["certified_accuracy"], "certified_accuracy", where),
        verifier=raw["verifier"].strip(), time_limit=raw["time_limit"].strip(),
        method_name=str(raw.get("method_name", "")).strip(), paper_link=str(raw.get("paper_link", "")).strip(),
        clean_accuracy=None if clean is None else _fraction(clean, "clean_accuracy", where),
        acr=None if acr is None else float(acr), model=str(raw.get("model", "")).strip(),
        note=str(raw.get("note", "")).strip(),
    )  # fmt: skip


def load_literature(track: str, folder: Path | None = None) -> list[LiteraturePoint]:
    """The published points of ``track`` (empty when it has no file), sorted by eps then method."""
    path = Path(folder or LITERATURE_DIR) / f"{track}.toml"
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidConfig(f"{path}: not a readable TOML file ({exc})") from exc
    points = data.get("point", [])
    if not isinstance(points, list) or set(data) - {"point"}:
        raise InvalidConfig(f"{path}: expected only [[point]] tables")
    parsed = [parse_point(raw, f"{path} point {i + 1}") for i, raw in enumerate(points)]
    return sorted(parsed, key=lambda p: (p.eps, p.method))
