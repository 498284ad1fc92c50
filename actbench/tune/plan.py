"""Planning a tune: validate everything (methods, search spaces, objectives, sampler, track settings) and
fix the study's identity, before any folder, database or run exists.

A tune is identified by everything that makes its trials comparable: the track as run (preset, budget,
training subset, certified samples), the recipe, the objectives, the sampler and the seed. The default
study name is derived from them, so the same command always continues the same study; each method has
its own Optuna study inside it, with its search space recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actbench.errors import InvalidConfig
from actbench.objectives.search import SearchRange
from actbench.runner import RunRequest, resolve_run, resolve_track

# --objectives: the validation metrics each trial is scored on (both maximised), and their card keys in
# ``selection.validation``. ACR is divided by the track's eps so both objectives lie in [0, 1].
OBJECTIVES: dict[str, tuple[str, str]] = {
    "clean,certified": ("accuracy", "certified_accuracy"),
    "clean,acr": ("accuracy", "acr"),
}
SAMPLERS = ("tpe", "nsga2", "random")
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
TUNE_FOLDER = "tune"  # <out>/<track>/tune/<study>/: study.db, fronts.json


@dataclass
class TunePlan:
    """A validated tune: what every trial of every method shares, and each method's search space."""

    study: str
    track: str  # the track's name
    folder: Path  # <out>/<track>/tune/<study>
    methods: list[str]  # as the user named them (registered names or spec paths)
    names: dict[str, str]  # method as named -> its spec name
    spaces: dict[str, dict[str, SearchRange]]  # per method as named
    trials: int  # the budget: trials per method
    objectives: str  # a key of OBJECTIVES
    sampler: str
    seed: int
    eps: float  # the track's eps: certified accuracy is measured there, ACR is divided by it
    base: RunRequest  # the request every trial starts from (method, overrides and settings filled in per trial)
    identity: dict[str, Any] = field(default_factory=dict)  # what a continued study must match

    @property
    def storage_path(self) -> Path:
        return self.folder / "study.db"

    @property
    def fronts_path(self) -> Path:
        return self.folder / "fronts.json"

    def method_identity(self, method: str) -> dict[str, Any]:
        """What the Optuna study of one method records and checks when continued."""
        space = {name: r.to_dict() for name, r in self.spaces[method].items()}
        return {**self.identity, "method": self.names[method], "space": space}


def parse_objectives(text: str) -> str:
    """``clean,certified`` or ``clean,acr`` (spaces ignored)."""
    key = ",".join(part.strip() for part in str(text).split(","))
    if key not in OBJECTIVES:
        raise InvalidConfig(f"--objectives {text!r}: choose {' or '.join(OBJECTIVES)} (validation clean accuracy "
                            "and validation certified accuracy or ACR at the track's eps, both maximised)")
    return key


def _check_settings_fit(name: str, space: dict[str, SearchRange], request: RunRequest) -> None:
    """A searched ramp must end within the planned epochs (else eps never reaches its target)."""
    from actbench.train.budget import planned_epochs

    ramp = space.get("ramp_epochs")
    if ramp is None:
        return
    track, _ = resolve_run(request)
    epochs = planned_epochs(track.budget, track)
    if track.warmup_epochs + int(ramp.high) > epochs:
        raise InvalidConfig(f"method {name}: [search] ramp_epochs up to {int(ramp.high)} does not fit the budget: "
                            f"{track.warmup_epochs} warm-up + {int(ramp.high)} ramp epochs > {epochs} planned "
                            f"epochs; lower its high end or give more epochs")  # fmt: skip


def _check_ends(name: str, space: dict[str, SearchRange], request: RunRequest) -> None:
    """Both corners of the space (every range at its low end, then at its high end) build a valid run."""
    from actbench.objectives import create_objective

    for end in ("low", "high"):
        values = {key: (int if r.kind is int else float)(getattr(r, end)) for key, r in space.items()}
        params = {k: v for k, v in values.items() if not space[k].track}
        settings = {k: v for k, v in values.items() if space[k].track}
        trial = dataclasses.replace(request, method=name, overrides=params, track_settings=settings)
        try:
            track, method = resolve_run(trial)
            create_objective(method, track)
        except InvalidConfig as exc:
            raise InvalidConfig(f"method {name}: its search space at the {end} end "
                                f"({', '.join(f'{k}={v:g}' for k, v in values.items())}) is not a valid run: "
                                f"{exc}") from exc  # fmt: skip


def default_study_name(identity: dict[str, Any]) -> str:
    """``clean-certified-tpe-s0-<hash>``: readable, and the same for the same settings."""
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return "-".join([identity["objectives"].replace(",", "-"), identity["sampler"], f"s{identity['seed']}", digest])


def plan_tune(
    methods: list[str] | str,
    track: str,
    trials: int,
    objectives: str = "clean,certified",
    sampler: str = "tpe",
    study: str | None = None,
    seed: int = 0,
    preset: str = "full",
    budget: str | None = None,
    epochs: int | None = None,
    out: Path | str = Path("results"),
    data_dir: str | None = None,
    device: str = "auto",
    train_subset: int | None = None,
    certify_samples: int | None = None,
    recipe: str = "shared",
    complete_samples: int | None = None,
) -> TunePlan:
    """Check a tune before anything runs or is written; raises an :class:`ActbenchError` subclass.

    Checked: the trial count, objectives, sampler, device, track, preset and budget, every method name,
    that each method declares a ``[search]`` space, that both ends of each space give a valid run and
    that a searched ramp fits the budget, and the study name.
    """
    from actbench.objectives import load_method

    if isinstance(methods, str):
        methods = methods.split(",")
    methods = list(dict.fromkeys(m.strip() for m in methods if m.strip()))
    if not methods:
        raise InvalidConfig("a tune needs at least one method, e.g. --method adaptive,ibp")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise InvalidConfig(f"--trials {trials!r}: give a whole number >= 1 (trials per method)")
    objectives = parse_objectives(objectives)
    if sampler not in SAMPLERS:
        raise InvalidConfig(f"--sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    if device not in ("auto", "cpu", "cuda"):
        raise InvalidConfig(f"device {device!r}: choose auto, cpu or cuda")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidConfig(f"--seed {seed!r}: give a whole number")
    base = RunRequest(method=methods[0], track=track, preset=preset, seed=seed, epochs=epochs, budget=budget,
                      out=Path(out), data_dir=data_dir, device=device, train_subset=train_subset,
                      certify_samples=certify_samples, complete_samples=complete_samples, progress=False,
                      recipe=recipe)  # fmt: skip
    resolved = resolve_track(base)  # the track, preset and budget
    specs = {name: load_method(name, track, {}, recipe=recipe) for name in methods}
    without = [name for name, spec in specs.items() if not spec.search]
    if without:
        from actbench.objectives import list_methods

        with_space = [m for m in list_methods() if load_method(m, track, {}).search]
        raise InvalidConfig(f"no search space declared for {', '.join(without)} (a [search] table in the method's "
                            f"TOML); methods with one: {', '.join(with_space)}")  # fmt: skip
    names = [spec.name for spec in specs.values()]
    if len(set(names)) < len(names):
        raise InvalidConfig(f"methods {', '.join(methods)} name the same method twice (spec names: "
                            f"{', '.join(names)}); tune each method once")
    for name, spec in specs.items():
        _check_ends(name, spec.search, base)
        _check_settings_fit(name, spec.search, dataclasses.replace(base, method=name))
    identity = {"track": resolved.to_dict(), "preset": preset, "recipe": recipe, "objectives": objectives,
                "sampler": sampler, "seed": seed}  # fmt: skip
    if study is None:
        study = default_study_name(identity)
    elif not STUDY_NAME.fullmatch(study):
        raise InvalidConfig(f"--study {study!r}: use letters, digits, '.', '_' and '-' (at most 80 characters), "
                            "starting with a letter or digit")
    folder = Path(out) / resolved.name / TUNE_FOLDER / study
    return TunePlan(study=study, track=resolved.name, folder=folder, methods=methods,
                    names={name: spec.name for name, spec in specs.items()},
                    spaces={name: dict(spec.search) for name, spec in specs.items()}, trials=trials,
                    objectives=objectives, sampler=sampler, seed=seed, eps=resolved.eps, base=base,
                    identity=identity)  # fmt: skip
