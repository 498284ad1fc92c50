"""Search spaces: the optional ``[search]`` table of a method spec, which ``actbench tune`` explores.

Each entry is a range of one of the method's declared hyper-parameters, or of a tunable training
setting of the track (``TRACK_SETTINGS``: the learning rate and the eps-ramp length)::

    [search]
    kappa = { low = 0.0, high = 1.0 }              # linear scale
    lam = { low = 0.02, high = 1.0, log = true }   # log scale (low > 0)
    lr = { low = 2e-4, high = 3e-3, log = true }   # a track setting
    ramp_epochs = { low = 1, high = 4 }            # whole numbers for int parameters

Only numeric parameters can be searched. Both ends must be valid values of the parameter (a κ range
must lie in [0, 1]), ``low < high``, and a log scale needs ``low > 0``. Everything is checked when the
spec is loaded, so a bad range fails before any trial starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actbench.errors import InvalidConfig
from actbench.objectives.base import Param

# Training settings of the track a tune may search (applied last, after the recipe and the preset).
TRACK_SETTINGS: dict[str, Param] = {
    "lr": Param(float, 1e-3, "learning rate of the track's schedule", lambda v: v > 0, "> 0"),
    "ramp_epochs": Param(int, 1, "epochs of the eps ramp", lambda v: v >= 0, ">= 0"),
}
RANGE_FIELDS = ("low", "high", "log")


@dataclass(frozen=True)
class SearchRange:
    """One searched parameter: ``[low, high]`` on a linear or log scale; ``kind`` is float or int;
    ``track`` when it is a training setting of the track rather than a method hyper-parameter."""

    name: str
    low: float
    high: float
    log: bool = False
    kind: type = float
    track: bool = False

    def suggest(self, trial: Any) -> float | int:
        """Draw this parameter from an Optuna trial."""
        if self.kind is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def to_dict(self) -> dict[str, Any]:
        """What cards and study records keep of the range."""
        return {"low": self.low, "high": self.high, "log": self.log, "type": self.kind.__name__,
                "target": "track" if self.track else "method"}  # fmt: skip

    def describe(self) -> str:
        """``kappa in [0, 1]`` / ``lam in [0.02, 1] (log)``."""
        return f"{self.name} in [{self.low:g}, {self.high:g}]" + (" (log)" if self.log else "")


def _number(value: Any, kind: type, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidConfig(f"{where} must be a finite number, got {value!r}")
    if kind is int:
        if float(value) != int(value):
            raise InvalidConfig(f"{where} must be a whole number (the parameter is an integer), got {value!r}")
        return int(value)
    return float(value)


def parse_range(name: str, entry: Any, param: Param, track: bool, where: str) -> SearchRange:
    """Check one ``[search]`` entry against the parameter it ranges over."""
    label = f"{where}: [search] {name}"
    if not isinstance(entry, dict):
        raise InvalidConfig(f"{label} must be a table like {{ low = 0.0, high = 1.0 }} (optionally log = true), "
                            f"got {entry!r}")  # fmt: skip
    unknown = sorted(set(entry) - set(RANGE_FIELDS))
    if unknown:
        raise InvalidConfig(f"{label}: unknown fields {unknown}; a range has {', '.join(RANGE_FIELDS)}")
    missing = [key for key in ("low", "high") if key not in entry]
    if missing:
        raise InvalidConfig(f"{label}: missing {' and '.join(missing)}; write {{ low = ..., high = ... }}")
    if param.kind not in (int, float):
        raise InvalidConfig(f"{label}: only numeric parameters can be searched; {name!r} is "
                            f"{param.kind.__name__}")  # fmt: skip
    low = _number(entry["low"], param.kind, f"{label}.low")
    high = _number(entry["high"], param.kind, f"{label}.high")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise InvalidConfig(f"{label}.log must be true or false, got {log!r}")
    if not low < high:
        raise InvalidConfig(f"{label}: bad range [{low:g}, {high:g}]: low must be below high")
    if log and low <= 0:
        raise InvalidConfig(f"{label}: a log-scale range needs low > 0, got low = {low:g}")
    for end, value in (("low", low), ("high", high)):
        if param.check is not None and not param.check(value):
            raise InvalidConfig(f"{label}: bad range [{low:g}, {high:g}]: {end} = {value:g} is not a valid "
                                f"{name} (it must be {param.rule})")  # fmt: skip
    return SearchRange(name, low, high, log, param.kind, track)


def parse_search(table: Any, declared: dict[str, Param], where: Path | str) -> dict[str, SearchRange]:
    """The checked search space of a spec's ``[search]`` table (empty when the spec has none).

    ``declared`` are the objective's hyper-parameters; keys may also name ``TRACK_SETTINGS``.
    """
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise InvalidConfig(f"method spec {where}: [search] must be a table of ranges")
    space: dict[str, SearchRange] = {}
    for name, entry in table.items():
        if name in declared and name in TRACK_SETTINGS:
            raise InvalidConfig(f"method spec {where}: [search] {name} is both a method parameter and a track "
                                "setting")
        if name in declared:
            space[name] = parse_range(name, entry, declared[name], False, f"method spec {where}")
        elif name in TRACK_SETTINGS:
            space[name] = parse_range(name, entry, TRACK_SETTINGS[name], True, f"method spec {where}")
        else:
            numeric = sorted(k for k, p in declared.items() if p.kind in (int, float))
            raise InvalidConfig(f"method spec {where}: [search] has unknown parameter {name!r}; it can search the "
                                f"method's numeric hyper-parameters ({', '.join(numeric) or 'none'}) and the track "
                                f"settings {', '.join(TRACK_SETTINGS)}")  # fmt: skip
    return space


def check_track_settings(settings: dict[str, Any], where: str = "track settings") -> dict[str, Any]:
    """Validated ``{lr, ramp_epochs}`` overrides of a run (``--track-set``, or a tuning trial's)."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if key not in TRACK_SETTINGS:
            raise InvalidConfig(f"{where}: {key!r} cannot be changed per run; the settings a run (or a tune) may "
                                f"change are {', '.join(TRACK_SETTINGS)}")  # fmt: skip
        out[key] = TRACK_SETTINGS[key].validate(key, value, where)
    return out
