"""Run cards: the single source of truth for compare and the site.

A run lives in ``results/<track>/<run-id>/`` with ``card.json`` (this module's schema),
``history.csv`` (one row per epoch), ``radii.parquet`` (per-sample certification records) and
``model.pt`` (git-ignored). Every write is atomic: a temp file in the same folder, then a rename,
so a crash never leaves a half-written card.

Card schema (version ``SCHEMA_VERSION`` = 2), keys in order of importance::

    schema      int, SCHEMA_VERSION (schema-1 cards are migrated on read: ``migrate_card``)
    run_id      str, unique within the track folder
    status      "training" | "trained" | "complete" | "failed" | "interrupted"
    created, updated   ISO-8601 UTC timestamps
    command     the exact command line that reproduces the run
    source      "actbench" (trained here) or "external" (a submitted model, see actbench.interop)
    config      {"hash"}: the configuration identity, everything that is not the seed (``configuration_of``)
    track       Track.to_dict() of the track as run (after recipe / --preset / --epochs), plus "preset"
    method      {"name", "title", "objective", "params": {...}, "spec", "key_param", "selection"}
    recipe      {"name": "shared"|"published"|..., "source", "track": settings the recipe changed}
    model       {"name", "parameters"}
    seed        int
    data        {"dataset", "train_size", "val_size", "test_size", "train_subset"}
    budget      {"limit": {"kind", "value"}, "used": {"epochs", "seconds", "propagations"}, "stopped_by"}
    selection   {"rule", "epoch", "value"}
    certifications  [one record per protocol the run was certified under:
                     {"protocol": Protocol.record() (id, label, sound, checked, fields),
                      "track_protocol": bool (the track's protocol when certified), "metrics": {...},
                      "settings": {...}, "radii": file name, "created"}]
    metrics     the headline: the metrics of the latest track-protocol record
                {"clean_accuracy", "samples", "eps_grid": [...],
                 "acr": {verifier|"best": float},
                 "certified_accuracy": {verifier|"best": [one value per eps_grid entry]},
                 "attack_accuracy": [one value per eps_grid entry] | None,
                 "eps_test": [...], "certified_accuracy_test": {verifier|"best": [per eps_test]}}
    certification the headline record's settings {"verifiers", "dtype", "samples", "eps_max",
                  "seconds": {verifier: s}, "attack": {...}, "unknown": int, "protocol": id,
                  "device": {"type", ...; on cuda the GPU's "name", "memory_gib", ...}}
    environment {"actbench", "torch", "python", "device", "device_info": {"type", ...; on cuda "name",
                 "capability", "memory_gib", "cuda"; in a Ray sweep "ray_gpu_ids", "cuda_visible_devices"},
                 "threads", "git_commit"}
    files       {"history": "history.csv", "radii": "radii.parquet", "model": "model.pt"}
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actbench.config import Budget
from actbench.errors import CardError, InvalidConfig

SCHEMA_VERSION = 2
SUPPORTED_SCHEMAS = (1, 2)
CARD_FILE = "card.json"
HISTORY_FILE = "history.csv"
RADII_FILE = "radii.parquet"
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
STATUSES = ("training", "trained", "complete", "failed", "interrupted")
# Track settings that are part of a certification protocol (or only describe the track), not of the
# training configuration: runs that differ only in these are seeds of one configuration.
NON_CONFIG_TRACK_KEYS = ("title", "notes", "quick", "preset", "certify_verifiers", "certify_samples", "attack",
                         "eps_grid", "eps_test", "certify_complete")
REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "schema": int,
    "run_id": str,
    "status": str,
    "track": dict,
    "method": dict,
    "model": dict,
    "seed": int,
    "budget": dict,
    "environment": dict,
}


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _umask() -> int:
    """The process umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temp file over ``path`` (same folder, so atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared and served as files
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def configuration_of(card: dict[str, Any]) -> dict[str, Any]:
    """The configuration of a run: everything that is not the seed (nor a certification setting).

    Method, objective and fully resolved parameters, the recipe, the preset and every training setting
    of the track as run (budget, schedules, training subset, selection rule, ...). ``hash`` identifies
    it: only runs with the same hash are averaged as seeds.
    """
    method = card.get("method") or {}
    track = card.get("track") or {}
    fields = {
        "method": method.get("name"),
        "objective": method.get("objective"),
        "params": method.get("params") or {},
        "recipe": (card.get("recipe") or {}).get("name", "shared"),
        "preset": track.get("preset", "full"),
        "track": {k: v for k, v in sorted(track.items()) if k not in NON_CONFIG_TRACK_KEYS},
        "budget": (card.get("budget") or {}).get("limit"),
        "source": card.get("source", "actbench"),
    }
    if fields["source"] == "external":  # a submitted model: its file is its configuration
        fields["model_sha256"] = (card.get("external") or {}).get("sha256")
    text = json.dumps(fields, sort_keys=True, default=str)
    return {"hash": hashlib.sha1(text.encode()).hexdigest()[:10], **fields}


def _was_track_protocol(settings: dict[str, Any], track: dict[str, Any]) -> bool:
    """Whether a schema-1 certification used its track's settings (verifiers, samples, float64, attack)."""
    wanted = track.get("certify_samples")
    return (settings.get("dtype", "float64") == "float64" and settings.get("attack") is not None
            and list(settings.get("verifiers") or []) == list(track.get("certify_verifiers") or [])
            and (wanted in (None, 0) or settings.get("samples") == wanted))  # fmt: skip


def migrate_card(card: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 card in schema 2 (in memory; the file is rewritten only when the card is next written).

    The one certification of a schema-1 card becomes its first certification record, under the protocol
    its settings describe; it is the headline when those settings were the track's.
    """
    if card.get("schema") != 1:
        return card
    from actbench.certify.protocol import from_settings

    card = dict(card)
    card["schema"] = SCHEMA_VERSION
    card.setdefault("source", "actbench")
    card.setdefault("recipe", {"name": "shared", "source": "", "track": {}})
    records = []
    if isinstance(card.get("metrics"), dict) and isinstance(card.get("certification"), dict):
        settings = dict(card["certification"])
        protocol = from_settings(settings, card["metrics"])
        settings["protocol"] = protocol.id
        card["certification"] = settings
        records.append({"protocol": protocol.record(),
                        "track_protocol": _was_track_protocol(settings, card.get("track") or {}),
                        "metrics": card["metrics"], "settings": settings,
                        "radii": (card.get("files") or {}).get("radii", RADII_FILE),
                        "created": card.get("updated", card.get("created")), "migrated_from_schema": 1})  # fmt: skip
    card["certifications"] = records
    card["config"] = {"hash": configuration_of(card)["hash"]}
    return card


def validate_card(card: Any, where: str = "card") -> dict[str, Any]:
    """Check the schema version and required keys (migrating schema 1); raise :class:`CardError`."""
    if not isinstance(card, dict):
        raise CardError(f"{where}: a card must be a JSON object")
    if card.get("schema") not in SUPPORTED_SCHEMAS:
        raise CardError(f"{where}: schema {card.get('schema')!r} is not a supported version "
                        f"({', '.join(map(str, SUPPORTED_SCHEMAS))})")
    card = migrate_card(card)
    for key, kind in REQUIRED_KEYS.items():
        if key not in card:
            raise CardError(f"{where}: missing key {key!r}")
        if not isinstance(card[key], kind):
            raise CardError(f"{where}: key {key!r} should be {getattr(kind, '__name__', kind)}")
    if card["status"] not in STATUSES:
        raise CardError(f"{where}: status {card['status']!r} is not one of {STATUSES}")
    if card["status"] == "complete":
        metrics = card.get("metrics")
        if not isinstance(metrics, dict) or "clean_accuracy" not in metrics:
            raise CardError(f"{where}: a complete card needs metrics.clean_accuracy")
    records = card.get("certifications", [])
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("protocol"), dict)
                                                and isinstance(r.get("metrics"), dict) for r in records):
        raise CardError(f"{where}: certifications must be a list of {{protocol, metrics, ...}} records")
    return card


def write_card(run_dir: Path, card: dict[str, Any]) -> Path:
    """Validate and atomically write ``card.json`` into ``run_dir``; returns its path."""
    card = dict(card)
    card["updated"] = utc_now()
    card.setdefault("created", card["updated"])
    card.setdefault("certifications", [])
    card["config"] = {"hash": configuration_of(card)["hash"]}
    card = validate_card(card, str(run_dir))
    path = Path(run_dir) / CARD_FILE
    atomic_write_text(path, json.dumps(card, indent=2, sort_keys=False) + "\n")
    return path


def read_card(path: Path) -> dict[str, Any]:
    """Read and validate a card (``path`` is the card file or its run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILE
    if not path.is_file():
        raise CardError(f"no run card at {path}")
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardError(f"{path}: not a readable JSON card ({exc})") from exc
    return validate_card(card, str(path))


# --- Index of run cards (used by compare and the leaderboard site) -------------------------------------

import math  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    import pandas as pd

BASE_COLUMNS = (
    "track", "track_title", "run_id", "method", "title", "key_param", "key_value", "seed", "status",
    "preset", "model", "eps", "eps_test", "headline_eps", "verifiers", "clean_accuracy", "samples",
    "epochs", "seconds", "propagations", "budget_kind", "budget_limit", "budget", "stopped_by", "created",
    "updated", "command", "path", "config", "params", "recipe", "train_subset", "selection_rule", "source",
    "protocol", "protocol_label", "protocol_sound", "protocol_checked", "headline", "certified_runs", "radii_file",
)


def acr_column(verifier: str) -> str:
    """DataFrame column of the ACR of one verifier (``"best"`` for the best over verifiers)."""
    return f"acr_{verifier}"


def cert_column(verifier: str, eps: float) -> str:
    """DataFrame column of the certified accuracy of one verifier at ``eps``."""
    from actbench.config import format_eps

    return f"cert_{verifier}@{format_eps(eps)}"


def attack_column(eps: float) -> str:
    """DataFrame column of the accuracy under attack at ``eps``."""
    from actbench.config import format_eps

    return f"attack@{format_eps(eps)}"


def headline_eps(eps: float, eps_test: list[float] | tuple[float, ...]) -> float:
    """The single eps a threshold table reports: the largest test eps within the cap (else the cap)."""
    inside = [e for e in eps_test if e <= eps * (1 + 1e-9)]
    return max(inside) if inside else eps


def _number(value: Any) -> float:
    """A finite-or-NaN float from a card value (None and non-numbers become NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("nan")
    return float(value)


def _value_at(grid: list[float], values: Any, eps: float) -> float:
    """The entry of ``values`` whose grid eps equals ``eps`` (relative tolerance), else NaN."""
    if not isinstance(values, list):
        return float("nan")
    for g, v in zip(grid, values, strict=False):
        if isinstance(g, int | float) and abs(g - eps) <= 1e-9 * max(1.0, abs(eps)):
            return _number(v)
    return float("nan")


def _check_metrics(card: dict[str, Any], where: str) -> None:
    """Deeper checks a *complete* card must pass before compare or the site trusts its numbers."""
    track, metrics = card["track"], card["metrics"]
    for key in ("name", "eps"):
        if key not in track:
            raise CardError(f"{where}: track is missing {key!r}")
    if not isinstance(metrics.get("acr"), dict) or "best" not in metrics["acr"]:
        raise CardError(f"{where}: a complete card needs metrics.acr with a 'best' entry")
    if math.isnan(_number(metrics["clean_accuracy"])):
        raise CardError(f"{where}: metrics.clean_accuracy is not a number")
    eps_test = metrics.get("eps_test", track.get("eps_test", []))
    if not isinstance(eps_test, list | tuple):
        raise CardError(f"{where}: eps_test should be a list")
    test = metrics.get("certified_accuracy_test")
    if test is not None:
        if not isinstance(test, dict):
            raise CardError(f"{where}: metrics.certified_accuracy_test should be an object")
        for verifier, values in test.items():
            if not isinstance(values, list) or len(values) != len(eps_test):
                raise CardError(f"{where}: certified_accuracy_test[{verifier!r}] needs one value per eps")
    grid = metrics.get("eps_grid", [])
    for verifier, values in (metrics.get("certified_accuracy") or {}).items():
        if not isinstance(values, list) or len(values) != len(grid):
            raise CardError(f"{where}: certified_accuracy[{verifier!r}] needs one value per eps_grid entry")


def budget_label(kind: Any, value: Any) -> str:
    """``epochs=6`` / ``propagations=1.44e+06``: the budget limit a run was given ("?" when unknown)."""
    try:
        return str(Budget(str(kind), float(value)))
    except (InvalidConfig, TypeError, ValueError):
        return "?"


def card_rows(card: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    """One DataFrame row per certification record of a validated card (the headline record flagged);
    a card without records (not certified yet) gives one row with NaN metrics."""
    records = card.get("certifications") or []
    if not records:
        return [card_row(card, run_dir)]
    headline = headline_record(card)
    return [card_row(card, run_dir, record, record is headline) for record in records]


def headline_record(card: dict[str, Any]) -> dict[str, Any] | None:
    """The latest certification record made under the track's protocol (None when there is none)."""
    chosen = None
    for record in card.get("certifications") or []:
        if record.get("track_protocol"):
            chosen = record
    return chosen


def card_row(card: dict[str, Any], run_dir: Path, record: dict[str, Any] | None = None,
             is_headline: bool = True) -> dict[str, Any]:
    """Flatten one validated card into a DataFrame row: its ``record``'s metrics (default: the headline
    metrics; NaN when the run is not certified), plus the configuration and protocol it belongs to."""
    track = card["track"]
    method = card["method"]
    if record is None:
        metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
        protocol = (headline_record(card) or {}).get("protocol") or {}
    else:
        metrics, protocol = record.get("metrics") or {}, record.get("protocol") or {}
    config = configuration_of(card)
    used = card["budget"].get("used") or {}
    limit = card["budget"].get("limit") or {}
    eps = _number(track.get("eps"))
    eps_test = [float(e) for e in metrics.get("eps_test", track.get("eps_test", [])) or []]
    headline = headline_eps(eps, eps_test) if not math.isnan(eps) else float("nan")
    key_param = method.get("key_param") or None
    params = method.get("params") or {}
    acr = metrics.get("acr") or {}
    verifiers = tuple(v for v in acr if v != "best")
    row: dict[str, Any] = {
        "track": str(track.get("name", run_dir.parent.name)),
        "track_title": str(track.get("title", track.get("name", run_dir.parent.name))),
        "run_id": card["run_id"],
        "method": str(method.get("name", "?")),
        "title": str(method.get("title", method.get("name", "?"))),
        "key_param": key_param,
        "key_value": _number(params.get(key_param)) if key_param else float("nan"),
        "seed": card["seed"],
        "status": card["status"],
        "preset": str(track.get("preset", "full")),
        "model": str(card["model"].get("name", track.get("model", "?"))),
        "eps": eps,
        "eps_test": tuple(eps_test),
        "headline_eps": headline,
        "verifiers": verifiers,
        "clean_accuracy": _number(metrics.get("clean_accuracy")),
        "samples": _number(metrics.get("samples")),
        "epochs": _number(used.get("epochs")),
        "seconds": _number(used.get("seconds")),
        "propagations": _number(used.get("propagations")),
        "budget_kind": limit.get("kind"),
        "budget_limit": _number(limit.get("value")),
        "budget": budget_label(limit.get("kind"), limit.get("value")),
        "stopped_by": card["budget"].get("stopped_by"),
        "created": card.get("created"),
        "updated": card.get("updated", card.get("created")),
        "command": card.get("command", ""),
        "path": str(run_dir),
        "config": config["hash"],
        "params": dict(params),
        "recipe": config["recipe"],
        "train_subset": track.get("train_subset"),
        "selection_rule": track.get("selection"),
        "source": card.get("source", "actbench"),
        "protocol": protocol.get("id"),
        "protocol_label": protocol.get("label", ""),
        "protocol_sound": bool(protocol.get("sound", True)),
        "protocol_checked": bool(protocol.get("checked", True)),
        "headline": bool(is_headline),
        "certified_runs": len(card.get("certifications") or []),
        "radii_file": (record or headline_record(card) or {}).get("radii") or (card.get("files") or {}).get("radii"),
    }
    for verifier in (*verifiers, "best"):
        row[acr_column(verifier)] = _number(acr.get(verifier))
    grid = [float(e) for e in metrics.get("eps_grid", []) or []]
    test = metrics.get("certified_accuracy_test") or {}
    full = metrics.get("certified_accuracy") or {}
    for verifier in (*verifiers, "best"):
        for eps_value in dict.fromkeys([*eps_test, headline]):
            value = _value_at(eps_test, test.get(verifier), eps_value)
            if math.isnan(value):
                value = _value_at(grid, full.get(verifier), eps_value)
            row[cert_column(verifier, eps_value)] = value
    attack = metrics.get("attack_accuracy")
    for eps_value in dict.fromkeys([*eps_test, headline]):
        row[attack_column(eps_value)] = _value_at(grid, attack, eps_value)
    row.update(complete_fields(metrics.get("complete")))
    return row


COMPLETE_FIELDS = ("certified_accuracy", "upper_accuracy", "certified_by_cascade", "verified_by_search",
                   "falsified_by_search", "unknown", "searched", "seconds", "median_seconds")


def complete_column(name: str, eps: float) -> str:
    """DataFrame column of one complete-verification count or share at ``eps`` (``name`` in COMPLETE_FIELDS)."""
    from actbench.config import format_eps

    return f"complete_{name}@{format_eps(eps)}"


def complete_fields(summary: Any) -> dict[str, Any]:
    """Row fields of a record's complete-verification summary (``metrics.complete``; none when absent):
    the subset size, its verifier and per eps the counts and shares of :data:`COMPLETE_FIELDS`."""
    if not isinstance(summary, dict) or not isinstance(summary.get("per_eps"), list):
        return {}
    row: dict[str, Any] = {"complete_samples": _number(summary.get("samples")),
                           "complete_verifier": summary.get("verifier"),
                           "complete_timeout": _number(summary.get("timeout")),
                           "complete_eps": tuple(_number(e.get("eps")) for e in summary["per_eps"])}
    for entry in summary["per_eps"]:
        for name in COMPLETE_FIELDS:
            row[complete_column(name, _number(entry.get("eps")))] = _number(entry.get(name))
    return row


@dataclass
class CardIndex:
    """Every readable card under a results folder: one row per (run, certification record), flagged
    ``headline`` for the record under the track's protocol; the cards; and what was skipped."""

    frame: pd.DataFrame
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # run folder -> card
    warnings: list[str] = field(default_factory=list)

    def complete(self, track: str | None = None) -> pd.DataFrame:
        """Headline rows of runs with status ``complete`` (one per run), optionally of one track."""
        rows = self.frame[(self.frame["status"] == "complete") & (self.frame["headline"].astype(bool))]
        if track is not None:
            rows = rows[rows["track"] == track]
        return rows.reset_index(drop=True)

    def tracks(self) -> list[str]:
        """Track names that have at least one card (any status)."""
        return sorted(set(self.frame["track"]))


def load_cards(results_dir: Path) -> CardIndex:
    """Read and validate every ``results/*/*/card.json``; bad cards are skipped with a warning naming them.

    Never raises for a bad card: compare and the site must keep working when one run is half-written,
    corrupt or from another schema version.
    """
    import pandas as pd

    results_dir = Path(results_dir)
    rows: list[dict[str, Any]] = []
    cards: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for path in sorted(results_dir.glob(f"*/*/{CARD_FILE}")):
        try:
            card = read_card(path)
            if card["status"] == "complete":
                _check_metrics(card, str(path))
            new_rows = card_rows(card, path.parent)
        except CardError as exc:
            warnings.append(f"skipped {path}: {exc}")
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            warnings.append(f"skipped {path}: malformed card ({type(exc).__name__}: {exc})")
            continue
        rows.extend(new_rows)
        cards[str(path.parent)] = card
    frame = pd.DataFrame(rows)
    for column in BASE_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype=object)
    return CardIndex(frame=frame, cards=cards, warnings=warnings)
