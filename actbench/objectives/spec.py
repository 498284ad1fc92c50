"""Method specs: the TOML files in ``methods/`` (the paper's method) and ``baselines/``.

A spec names the objective, cites the paper and gives default hyper-parameters, with per-track
values from the papers where known::

    name = "sabr"                      # must match the file name for registered specs
    title = "SABR: small adversarial bounding regions"
    objective = "sabr"                 # a registered objective (actbench.objectives)
    ibp_init = true                    # Shi et al. IBP initialisation before training
    key_param = "lam"                  # optional; the parameter shown beside the method (default: the objective's)
    [citation]
    authors = "..."; venue = "ICLR"; year = 2023; link = "https://..."
    [params]                           # defaults; every key must be declared by the objective
    lam = 0.4
    [tracks.cifar10]                   # per-track values (registered track names)
    lam = 0.7
    selection = "val-accuracy"         # optional model-selection rule (default: the track's, val-acceps)
    [recipes.published.cifar10]        # optional named recipes: the method's own published training
    source = "repo, file, command"     #   recipe on a track, selected with --recipe published
    track = { lr = 5e-4, budget = "epochs=160" }   # track settings it changes (RECIPE_TRACK_KEYS)
    params = { lam = 0.7 }                         # hyper-parameters it changes
    [search]                           # optional search space of `actbench tune` (objectives/search.py)
    lam = { low = 0.02, high = 1.0, log = true }

Resolution order: the objective's declared defaults, ``[params]``, ``[tracks.<track>]``, the chosen
recipe's ``params``, then the user's ``--set key=value`` overrides. Every value is type- and
range-checked before training starts. The default recipe, ``shared``, is the track's own: one recipe for
every method, the fair-comparison setting.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actbench.config import Track, list_tracks
from actbench.errors import InvalidConfig, UnknownName
from actbench.objectives.base import Objective, declared_params, objective_class
from actbench.objectives.search import SearchRange, parse_search

ROOT = Path(__file__).resolve().parents[2]
SPEC_DIRS = (ROOT / "methods", ROOT / "baselines", Path(__file__).resolve().parents[1] / "registry")
REQUIRED = {"name": str, "title": str, "objective": str, "ibp_init": bool, "citation": dict}
OPTIONAL = {"key_param": str, "params": dict, "tracks": dict, "description": str, "selection": str, "recipes": dict,
            "search": dict}
SHARED_RECIPE = "shared"
RECIPE_TRACK_KEYS = ("budget", "batch_size", "lr", "lr_schedule", "lr_milestones", "lr_gamma", "warmup_epochs",
                     "ramp_epochs", "reg_tightness", "reg_relu", "l1", "grad_clip", "augment")
RECIPE_FIELDS = {"source": str, "track": dict, "params": dict}
CITATION = {"authors": str, "title": str, "venue": str, "year": int, "link": str}


@dataclass(frozen=True)
class MethodSpec:
    """A resolved method: its objective, fully resolved parameters and where it came from."""

    name: str
    title: str
    objective: str
    params: dict[str, Any]
    citation: dict[str, Any]
    path: Path | None
    key_param: str | None
    description: str = field(default="", compare=False)
    selection: str | None = None  # the method's model-selection rule; None: the track's
    recipe: str = SHARED_RECIPE
    recipe_track: dict[str, Any] = field(default_factory=dict)  # track settings the recipe changes
    recipe_source: str = ""
    search: dict[str, SearchRange] = field(default_factory=dict, compare=False)  # `actbench tune`'s space

    def recipe_record(self) -> dict[str, Any]:
        """What a run card records of the recipe: its name, source and the settings it changed."""
        return {"name": self.recipe, "source": self.recipe_source, "track": dict(self.recipe_track)}


def _registered() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in SPEC_DIRS:
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found.setdefault(path.stem, path)
    return found


def list_methods() -> dict[str, str]:
    """Registered method names with their titles (``methods/`` first, then ``baselines/``)."""
    out: dict[str, str] = {}
    for name, path in _registered().items():
        try:
            out[name] = str(tomllib.loads(path.read_text()).get("title", name))
        except (OSError, tomllib.TOMLDecodeError):
            out[name] = f"{name} (unreadable spec {path})"
    return out


def _type_name(kind: type) -> str:
    return {dict: "table", str: "string", bool: "boolean", int: "integer"}.get(kind, kind.__name__)


def _check_fields(raw: dict[str, Any], where: Path) -> None:
    unknown = set(raw) - set(REQUIRED) - set(OPTIONAL)
    if unknown:
        raise InvalidConfig(f"method spec {where}: unknown fields {sorted(unknown)}; allowed: "
                            f"{sorted([*REQUIRED, *OPTIONAL])}")  # fmt: skip
    for key, kind in REQUIRED.items():
        if key not in raw:
            raise InvalidConfig(f"method spec {where}: missing field {key!r} ({_type_name(kind)})")
    for key, kind in {**REQUIRED, **OPTIONAL}.items():
        if key in raw and (not isinstance(raw[key], kind) or (kind is int and isinstance(raw[key], bool))):
            raise InvalidConfig(f"method spec {where}: field {key!r} must be a {_type_name(kind)}, "
                                f"got {type(raw[key]).__name__} {raw[key]!r}")  # fmt: skip
    citation = raw["citation"]
    for key, kind in CITATION.items():
        if key not in citation:
            raise InvalidConfig(f"method spec {where}: citation needs {key!r} ({_type_name(kind)})")
        if not isinstance(citation[key], kind) or isinstance(citation[key], bool):
            raise InvalidConfig(f"method spec {where}: citation.{key} must be a {_type_name(kind)}")


def _resolve_params(cls: type[Objective], layers: list[tuple[str, dict[str, Any]]], where: Path) -> dict[str, Any]:
    declared = declared_params(cls)
    params = {name: p.default for name, p in declared.items()}
    for source, values in layers:
        for key, value in values.items():
            if key not in declared:
                raise InvalidConfig(f"method spec {where}: {source} sets unknown parameter {key!r}; objective "
                                    f"{cls.name!r} accepts: {', '.join(sorted(declared))}")  # fmt: skip
            params[key] = declared[key].validate(key, value, f"method spec {where} ({source})")
    return params


def read_spec(path: Path) -> dict[str, Any]:
    """Read and field-check a spec file (no parameter resolution)."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise InvalidConfig(f"cannot read method spec {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"method spec {path} is not valid TOML: {exc}") from exc
    _check_fields(raw, Path(path))
    return raw


def _recipe(raw: dict[str, Any], recipe: str, track_name: str | None, where: Path) -> dict[str, Any]:
    """The ``[recipes.<recipe>.<track>]`` table, checked; empty for the shared recipe."""
    recipes = raw.get("recipes", {})
    for name, per_track in recipes.items():
        if name == SHARED_RECIPE or not isinstance(per_track, dict):
            raise InvalidConfig(f"method spec {where}: recipes.{name} must be a table of tracks "
                                f"(and {SHARED_RECIPE!r} is reserved for the track's own recipe)")
        for track, table in per_track.items():
            if not isinstance(table, dict):
                raise InvalidConfig(f"method spec {where}: recipes.{name}.{track} must be a table")
            unknown = set(table) - set(RECIPE_FIELDS)
            if unknown or not isinstance(table.get("source"), str):
                raise InvalidConfig(f"method spec {where}: recipes.{name}.{track} needs a 'source' string and may "
                                    f"have 'track' and 'params' tables; unknown: {sorted(unknown)}")
            bad = set(table.get("track", {})) - set(RECIPE_TRACK_KEYS)
            if bad:
                raise InvalidConfig(f"method spec {where}: recipes.{name}.{track}.track cannot set {sorted(bad)}; "
                                    f"a recipe may set: {', '.join(RECIPE_TRACK_KEYS)}")
    if recipe == SHARED_RECIPE:
        return {}
    if recipe not in recipes:
        known = [SHARED_RECIPE, *recipes]
        raise InvalidConfig(f"method {raw['name']!r} has no recipe {recipe!r}; it has: {', '.join(known)}")
    if track_name not in recipes[recipe]:
        have = ", ".join(sorted(recipes[recipe])) or "none"
        raise InvalidConfig(f"method {raw['name']!r} has no {recipe} recipe for track {track_name!r} (it has one for: "
                            f"{have}); use --recipe {SHARED_RECIPE}, the track's recipe for every method")
    return recipes[recipe][track_name]


def load_method(name_or_path: str | Path, track_name: str, overrides: dict[str, Any] | None = None,
                recipe: str = SHARED_RECIPE) -> MethodSpec:
    """Resolve a registered method name or a path to a spec TOML for ``track_name``.

    ``recipe`` names a training recipe: ``shared`` (the track's, the default) or one of the spec's
    ``[recipes]`` (e.g. ``published``). Raises :class:`UnknownName` for an unregistered name and
    :class:`InvalidConfig` for a spec with a missing/mistyped field, an unknown parameter, an
    out-of-range value (also in ``overrides``) or a recipe the method does not have for the track.
    """
    text = str(name_or_path)
    registered = _registered()
    if text in registered:
        path = registered[text]
    elif text.endswith(".toml") or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise InvalidConfig(f"method spec {path} does not exist")
    else:
        raise UnknownName("method", text, list(registered))
    raw = read_spec(path)
    if path.parent in SPEC_DIRS and raw["name"] != path.stem:
        raise InvalidConfig(f"method spec {path}: name {raw['name']!r} must match the file name {path.stem!r}")
    cls = objective_class(raw["objective"])
    tracks = raw.get("tracks", {})
    known_tracks = set(list_tracks())
    for key, table in tracks.items():
        if not isinstance(table, dict):
            raise InvalidConfig(f"method spec {path}: tracks.{key} must be a table of parameters")
        if known_tracks and key not in known_tracks:
            raise InvalidConfig(f"method spec {path}: unknown track {key!r} in [tracks]; registered tracks: "
                                f"{', '.join(sorted(known_tracks))}")  # fmt: skip
    chosen = _recipe(raw, recipe, track_name, path)
    layers = [("ibp_init", {"ibp_init": raw["ibp_init"]}), ("[params]", raw.get("params", {})),
              (f"[tracks.{track_name}]", tracks.get(track_name, {})),
              (f"[recipes.{recipe}.{track_name}]", chosen.get("params", {})),
              ("--set", dict(overrides or {}))]  # fmt: skip
    params = _resolve_params(cls, layers, path)
    key_param = raw.get("key_param", getattr(cls, "KEY_PARAM", None)) or None
    if key_param is not None and key_param not in params:
        raise InvalidConfig(f"method spec {path}: key_param {key_param!r} is not a parameter of {cls.name!r}")
    selection = raw.get("selection")
    if selection is not None:
        from actbench.train.selection import SELECTION_RULES

        if selection not in SELECTION_RULES:
            raise InvalidConfig(f"method spec {path}: selection {selection!r}; choose one of "
                                f"{', '.join(SELECTION_RULES)}")
    search = parse_search(raw.get("search"), declared_params(cls), path)
    return MethodSpec(raw["name"], raw["title"], raw["objective"], params, dict(raw["citation"]), path, key_param,
                      raw.get("description", ""), selection, recipe, dict(chosen.get("track", {})),
                      chosen.get("source", ""), search)  # fmt: skip


def create_objective(spec: MethodSpec, track: Track) -> Objective:
    """Instantiate the spec's objective for ``track`` (the number of classes comes from its dataset)."""
    from actbench.data import get_info

    cls = objective_class(spec.objective)
    return cls(dict(spec.params), get_info(track.dataset).num_classes)
