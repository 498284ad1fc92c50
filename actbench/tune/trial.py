"""One trial of a tune: an ordinary run, scored on validation before the test split is ever read.

A trial is an ``actbench run`` of the sampled hyper-parameters (same run id, card and resume rules), in
two phases:

1. **search phase**, with the test split sealed (:mod:`actbench.splitguard`):
   :func:`actbench.runner.execute_run` without certification (train, select on validation), then the
   card's ``tune`` section, and the trial's score from the card's ``selection.validation`` (a view of the
   card without any certification record);
2. **certification**: :func:`actbench.runner.certify_track`, the call ``execute_run`` ends with, certifies
   the test split once with the track's protocol (a failure marks the card failed, as ``run`` does); its
   numbers go into the card and never into the study.

:func:`run_trial` is an executor task (picklable, module-level): locally, in worker processes or as a
Ray task. It never raises for a failed run; the failure comes back in its result.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actbench.errors import InvalidConfig
from actbench.runner import RunRequest, certify_track, execute_run, resolve_device, resolve_run
from actbench.splitguard import sealed
from actbench.store import HISTORY_FILE, read_card, write_card
from actbench.sweep import RunResult, run_dir_of
from actbench.tune.plan import OBJECTIVES

TEST_KEYS = ("metrics", "certification", "certifications")  # card keys produced by certifying the test split
HISTORY_COLUMNS = {"accuracy": "val_acc", "certified_accuracy": "val_ibp_cert_acc", "acr": "val_ibp_acr"}


@dataclass
class TrialRequest(RunRequest):
    """A run request that is a trial: ``tune`` is the card's ``tune`` section (study, trial, trials,
    objectives, sampler, storage, space)."""

    tune: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialResult(RunResult):
    """A run result with the trial's objective values (validation only; None when it failed)."""

    values: tuple[float, ...] | None = None


def search_view(card: dict[str, Any]) -> dict[str, Any]:
    """The card as the search may see it: without anything certification of the test split wrote."""
    return {key: value for key, value in card.items() if key not in TEST_KEYS}


def _validation_from_history(run_dir: Path, epoch: Any) -> dict[str, float] | None:
    """The selected epoch's validation metrics from ``history.csv`` (cards written before
    ``selection.validation`` existed)."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file() or epoch is None:
        return None
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if str(row.get("epoch")) == str(epoch):
                try:
                    return {key: float(row[column]) for key, column in HISTORY_COLUMNS.items()}
                except (KeyError, ValueError):
                    return None
    return None


def objective_values(card: dict[str, Any], objectives: str, run_dir: Path | None = None) -> tuple[float, float]:
    """The trial's objectives from a card's model selection: validation clean accuracy and validation
    certified accuracy (or ACR / eps) of the selected epoch, at the track's eps.

    Refuses a card that still carries test-split records: pass :func:`search_view` of it.
    """
    if any(key in card for key in TEST_KEYS):
        raise InvalidConfig("objective_values reads validation only: pass search_view(card)")
    selection = card.get("selection") or {}
    validation = selection.get("validation")
    if validation is None and run_dir is not None:
        validation = _validation_from_history(run_dir, selection.get("epoch"))
    if not validation:
        raise InvalidConfig(f"run {card.get('run_id')}: its card records no validation metrics of the selected "
                            "epoch, so the trial cannot be scored")
    first, second = OBJECTIVES[objectives]
    eps = float(card["track"]["eps"])
    values = (float(validation[first]), float(validation[second]) / (eps if second == "acr" else 1.0))
    if not all(math.isfinite(v) for v in values):
        raise InvalidConfig(f"run {card.get('run_id')}: validation objectives {values} are not finite")
    return values


ALSO_KEYS = ("study", "trial", "trials", "objectives", "sampler", "params", "values")


def record_trial(run_dir: Path, tune: dict[str, Any], values: tuple[float, ...]) -> dict[str, Any]:
    """Write the ``tune`` section (with the trial's validation ``values``) into the run's card.

    A configuration that another trial (of this study or another) already produced keeps that first
    record as its ``tune`` section; each further (study, trial) that used the run is listed in
    ``tune.also``, so every study's fronts can be rebuilt from the cards.
    """
    card = read_card(run_dir)
    entry = {**tune, "values": list(values)}
    first = card.get("tune")
    if not isinstance(first, dict):
        card["tune"] = entry
    else:
        seen = [first, *first.get("also", [])]
        if any((r.get("study"), r.get("trial")) == (entry["study"], entry["trial"]) for r in seen):
            return card
        first.setdefault("also", []).append({key: entry.get(key) for key in ALSO_KEYS})
    write_card(run_dir, card)
    return card


def _certify(request: TrialRequest, run_dir: Path) -> None:
    """The run's ordinary certification (track protocol); a failure is recorded in the card, as by ``run``."""
    track, _ = resolve_run(request)
    try:
        certify_track(run_dir, track, request, resolve_device(request.device))
    except BaseException as exc:
        card = read_card(run_dir)
        interrupted = isinstance(exc, KeyboardInterrupt)
        card["status"] = "interrupted" if interrupted else "failed"
        if not interrupted:
            card["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        write_card(run_dir, card)
        raise


def run_trial(request: TrialRequest, threads: int | None = None) -> TrialResult:
    """Run one trial (see the module docstring) and report its outcome instead of raising.

    ``KeyboardInterrupt`` still propagates: the trial stays running in the study and resumes next time.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    request = dataclasses.replace(request, progress=False)
    start = time.monotonic()
    try:
        with sealed("test"):  # the search phase: train, select, score; the test split cannot be read
            trained = execute_run(dataclasses.replace(request, certify=False))
            values = objective_values(search_view(read_card(trained.run_dir)), request.tune["objectives"],
                                      trained.run_dir)  # fmt: skip
            card = record_trial(trained.run_dir, request.tune, values)
        if card.get("status") != "complete":
            _certify(request, trained.run_dir)
    except Exception as exc:  # noqa: BLE001 - a failed trial is reported to the study, never fatal to the tune
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return TrialResult(request, run_dir_of(request), "failed", 1, time.monotonic() - start, message)
    status = "skipped" if trained.skipped else "complete"
    return TrialResult(request, trained.run_dir, status, 1, time.monotonic() - start, values=values)

