"""Run configuration: eps parsing, budgets, tracks (TOML package data) and the resolved RunConfig.

A *track* fixes everything that must be equal for a fair comparison (dataset, model, eps, budget,
schedules, certification settings). A *run* is a track plus a method spec plus a seed.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actbench.errors import InvalidConfig, UnknownName

TRACKS_DIR = Path(__file__).parent / "tracks"
BUDGET_KINDS = ("epochs", "seconds", "propagations")
_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"


def parse_eps(value: str | float | int) -> float:
    """Parse an eps in [0, 1] pixel units: ``0.1``, ``"0.1"``, ``"8/255"`` or ``"8.8/255"``."""
    if isinstance(value, bool):
        raise InvalidConfig(f"eps must be a number, got {value!r}")
    if isinstance(value, int | float):
        eps = float(value)
    else:
        text = str(value).strip()
        match = re.fullmatch(rf"({_NUMBER})\s*(?:/\s*({_NUMBER}))?", text)
        if not match:
            raise InvalidConfig(f"cannot parse eps {value!r}: use a number like 0.1 or a fraction like 8/255")
        num = float(match.group(1))
        den = float(match.group(2)) if match.group(2) else 1.0
        if den == 0:
            raise InvalidConfig(f"eps {value!r} divides by zero")
        eps = num / den
    if not math.isfinite(eps) or eps < 0 or eps > 1:
        raise InvalidConfig(f"eps {value!r} is outside [0, 1] (eps is in pixel units of [0,1] images)")
    return eps


def parse_eps_grid(spec: str | list) -> list[float]:
    """Parse an eps grid: ``"0:0.2:21"`` (start:stop:count, inclusive) or ``"0.1,8/255"`` or a list."""
    if isinstance(spec, list | tuple):
        values = [parse_eps(v) for v in spec]
    else:
        text = str(spec).strip()
        if not text:
            raise InvalidConfig("empty eps grid")
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise InvalidConfig(f"eps grid {spec!r}: use start:stop:count, e.g. 0:0.2:21")
            start, stop = parse_eps(parts[0]), parse_eps(parts[1])
            try:
                count = int(parts[2])
            except ValueError as exc:
                raise InvalidConfig(f"eps grid {spec!r}: count {parts[2]!r} is not an integer") from exc
            if count < 1 or stop < start:
                raise InvalidConfig(f"eps grid {spec!r}: need count >= 1 and stop >= start")
            if count == 1:
                values = [start]
            else:
                values = [round(start + (stop - start) * i / (count - 1), 12) for i in range(count)]
        else:
            values = [parse_eps(v) for v in text.split(",") if v.strip()]
    if not values:
        raise InvalidConfig("empty eps grid")
    return sorted(set(values))


def format_eps(eps: float) -> str:
    """Human form of an eps: a short decimal (``0.1``) or a fraction of 255 (``8/255``)."""
    if abs(eps - round(eps, 3)) < 1e-12:
        return f"{round(eps, 3):g}"
    num255 = eps * 255
    if abs(num255 - round(num255, 1)) < 1e-9:
        return f"{round(num255, 1):g}/255"
    return f"{eps:.4g}"


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a ``--set key=value`` override; the value is read as a TOML scalar (``0.5``, ``true``, ``"x"``).

    A value that is not valid TOML is kept as a plain string (so ``--set attack=pgd`` works).
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
        raise InvalidConfig(f"override {text!r}: use key=value, e.g. --set kappa=0.5")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


@dataclass(frozen=True)
class Budget:
    """The compute budget of a run: one kind (epochs, seconds or propagations) and its limit."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in BUDGET_KINDS:
            raise InvalidConfig(f"budget kind {self.kind!r}: choose one of {', '.join(BUDGET_KINDS)}")
        if not (isinstance(self.value, int | float) and math.isfinite(self.value) and self.value > 0):
            raise InvalidConfig(f"budget {self.kind}={self.value!r} must be a positive number")
        if self.kind == "epochs" and float(self.value) != int(self.value):
            raise InvalidConfig(f"budget epochs={self.value} must be a whole number")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """Parse ``epochs=20``, ``seconds=600`` or ``propagations=5e7``."""
        if "=" not in text:
            raise InvalidConfig(f"budget {text!r}: use kind=value with kind one of {', '.join(BUDGET_KINDS)}")
        kind, _, raw = text.partition("=")
        try:
            value = float(raw)
        except ValueError as exc:
            raise InvalidConfig(f"budget {text!r}: {raw!r} is not a number") from exc
        kind = kind.strip()
        return cls(kind, int(value) if kind == "epochs" and value == int(value) else value)

    def __str__(self) -> str:
        """``kind=value``, short (``propagations=1.44e+06``) yet exact: ``Budget.parse`` gives it back."""
        text = f"{self.value:g}"
        if float(text) != float(self.value):
            text = repr(float(self.value))
        return f"{self.kind}={text}"


@dataclass(frozen=True)
class Track:
    """A leaderboard setting: everything that must be equal across methods for a fair comparison."""

    name: str
    title: str
    dataset: str
    model: str
    eps: float  # training target and cap of certified radii (ACR is computed on [0, eps])
    eps_test: tuple[float, ...]  # headline eps values for certified accuracy
    eps_grid: tuple[float, ...]  # full grid for certified-accuracy curves
    budget: Budget
    batch_size: int
    val_size: int
    lr: float
    lr_schedule: str  # "multistep" or "onecycle"
    lr_milestones: tuple[float, ...]  # fractions of the epoch budget where LR is multiplied by lr_gamma
    lr_gamma: float
    warmup_epochs: int  # clean epochs before the eps ramp (num_stn)
    ramp_epochs: int  # eps ramp length (num_reg); regularisers are active during it
    reg_tightness: float
    reg_relu: float
    l1: float
    grad_clip: float
    selection: str  # "val-acceps" or "last"
    selection_samples: int  # validation samples used for model selection
    certify_verifiers: tuple[str, ...]
    certify_samples: int | None  # None: the whole test split
    attack: bool
    augment: bool
    train_subset: int | None = None  # a fixed random subset of the training split (None: all of it)
    quick: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    # Epochs the LR and eps schedules are planned for when the budget is seconds or propagations
    # (0: the epochs of the registered track's budget). An epochs budget always plans its own count.
    schedule_epochs: int = 0
    # Complete verification after the cascade ([certify_complete] table: verifier, eps, samples, timeout,
    # options; empty: none), in canonical form (complete_table). See actbench/certify/complete.py.
    certify_complete: dict[str, Any] = field(default_factory=dict)

    def with_quick(self) -> Track:
        """The ``--preset quick`` version: fewer epochs / samples, same eps and model."""
        return self.with_changes(self.quick, "the quick preset")

    def with_changes(self, changes: dict[str, Any], where: str) -> Track:
        """This track with some settings replaced (TOML values: a budget string, lists for tuples)."""
        names = {f.name for f in dataclasses.fields(Track)}
        unknown = set(changes) - names
        if unknown:
            raise InvalidConfig(f"{where}: unknown track settings {sorted(unknown)}")
        changes = dict(changes)
        if "budget" in changes and not isinstance(changes["budget"], Budget):
            changes["budget"] = Budget.parse(changes["budget"])
        for key in ("eps_test", "eps_grid", "certify_verifiers", "lr_milestones"):
            if key in changes:
                changes[key] = tuple(changes[key])
        if "certify_complete" in changes:
            changes["certify_complete"] = complete_table(changes["certify_complete"] or {}, self.eps)
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise InvalidConfig(f"{where}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["budget"] = {"kind": self.budget.kind, "value": self.budget.value}
        return data


def _track_from_toml(path: Path) -> Track:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidConfig(f"track file {path}: {exc}") from exc
    names = {f.name for f in dataclasses.fields(Track)}
    unknown = set(raw) - names
    if unknown:
        raise InvalidConfig(f"track file {path}: unknown keys {sorted(unknown)}")
    try:
        raw["eps"] = parse_eps(raw["eps"])
        raw["eps_test"] = tuple(parse_eps(e) for e in raw["eps_test"])
        raw["eps_grid"] = tuple(parse_eps_grid(raw["eps_grid"]))
        raw["budget"] = Budget.parse(raw["budget"])
        for key in ("certify_verifiers", "lr_milestones"):
            raw[key] = tuple(raw.get(key, ()))
        if raw.get("certify_samples", 0) in (0, None):
            raw["certify_samples"] = None
        raw["certify_complete"] = complete_table(raw.get("certify_complete") or {}, raw["eps"])
        return Track(**raw)
    except KeyError as exc:
        raise InvalidConfig(f"track file {path}: missing key {exc}") from exc
    except TypeError as exc:
        raise InvalidConfig(f"track file {path}: {exc}") from exc


COMPLETE_KEYS = ("verifier", "eps", "samples", "timeout", "clock", "options")


def complete_table(table: dict[str, Any], eps_default: float) -> dict[str, Any]:
    """A ``[certify_complete]`` table in canonical form (every key, eps as floats; ``{}`` stays empty), so
    that equal settings make equal certification protocols."""
    if not table:
        return {}
    unknown = set(table) - set(COMPLETE_KEYS)
    if unknown:
        raise InvalidConfig(f"[certify_complete]: unknown keys {sorted(unknown)}; known: {list(COMPLETE_KEYS)}")
    samples = table.get("samples")
    return {"verifier": str(table.get("verifier", "bab")),
            "eps": [parse_eps(e) for e in table.get("eps", [eps_default])],
            "samples": None if samples in (None, 0) else int(samples),
            "timeout": float(table.get("timeout", 10.0)),
            "clock": str(table.get("clock", "wall")),
            "options": dict(table.get("options") or {})}


def list_tracks() -> list[str]:
    return sorted(p.stem for p in TRACKS_DIR.glob("*.toml"))


def load_track(name: str) -> Track:
    """Load a registered track by name (``fashion-mnist``, ``mnist``, ``cifar10``, ``tinyimagenet``)."""
    path = TRACKS_DIR / f"{name}.toml"
    if not path.is_file():
        raise UnknownName("track", name, list_tracks())
    return _track_from_toml(path)
