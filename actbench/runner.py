"""One benchmark run end to end: resolve the config, train, select, certify, write the run card.

The CLI's ``run`` command and the sweep executors both call :func:`execute_run`, so a run started
from either place behaves the same way (same run folder, same card, same resume logic).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shlex
import subprocess
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import actbench
from actbench.config import Budget, Track, load_track, parse_override
from actbench.errors import ActbenchError, CheckpointError, InvalidConfig
from actbench.store import (
    CARD_FILE,
    CHECKPOINT_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    RADII_FILE,
    SCHEMA_VERSION,
    read_card,
    utc_now,
    write_card,
)


@dataclass
class RunRequest:
    """What a user asked for; everything else comes from the track and the method spec."""

    method: str
    track: str
    preset: str = "full"
    seed: int = 0
    epochs: int | None = None
    budget: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    out: Path = Path("results")
    data_dir: str | None = None
    run_id: str | None = None
    train_subset: int | None = None
    certify_samples: int | None = None
    complete_samples: int | None = None  # complete verification of the first N certified samples (0: none)
    certify: bool = True
    force: bool = False
    progress: bool = True
    command: str | None = None
    recipe: str = "shared"
    track_settings: dict[str, Any] = field(default_factory=dict)  # --track-set lr=..., ramp_epochs=... (tune)
    notify: Any = field(default=None, compare=False, repr=False)  # callable(str) for one-line notices


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the card says ``interrupted`` and ``run_dir`` is where to resume."""

    def __init__(self, run_dir: Path):
        super().__init__(str(run_dir))
        self.run_dir = run_dir


@dataclass
class RunOutcome:
    """Where the run landed and its card (``skipped`` when a complete run already existed)."""

    run_dir: Path
    card: dict[str, Any]
    skipped: bool = False


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; an explicit ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise InvalidConfig(f"device {device!r}: choose auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidConfig("device cuda requested but CUDA is not available on this machine; use --device cpu")
    return device


def resolve_run(request: RunRequest) -> tuple[Track, Any]:
    """The track as run and the resolved method spec of a request.

    Order: the registered track; the method's recipe (``--recipe published``: the track settings of the
    method's own published recipe); the method's model-selection rule; ``--preset quick``; then the
    budget, training-subset and sample-count options; last the ``track_settings`` (``--track-set``:
    learning rate and ramp length, what ``actbench tune`` may search).
    """
    from actbench.objectives import load_method

    base = load_track(request.track)
    method = load_method(request.method, base.name, request.overrides, recipe=request.recipe)
    track = base
    if method.recipe_track:
        track = track.with_changes(method.recipe_track, f"recipe {method.recipe!r} of {method.name}")
    if method.selection is not None:
        track = dataclasses.replace(track, selection=method.selection)
    track = resolve_track(request, track)
    if request.track_settings:
        from actbench.objectives.search import check_track_settings

        track = track.with_changes(check_track_settings(request.track_settings, "--track-set"), "--track-set")
    return track, method


def resolve_track(request: RunRequest, track: Track | None = None) -> Track:
    """The track as run: ``track`` (default: the registered one), shrunk by ``--preset quick``, budget
    overridden. Method recipes and selection rules are applied by :func:`resolve_run`."""
    if request.preset not in ("full", "quick"):
        raise InvalidConfig(f"preset {request.preset!r}: choose full or quick")
    track = load_track(request.track) if track is None else track
    if request.preset == "quick":
        track = track.with_quick()
    if request.epochs is not None and request.budget is not None:
        raise InvalidConfig("give either --epochs or --budget, not both")
    if request.epochs is not None:
        track = dataclasses.replace(track, budget=Budget("epochs", request.epochs))
    elif request.budget is not None:
        budget = Budget.parse(request.budget)
        if budget.kind != "epochs" and track.budget.kind == "epochs" and not track.schedule_epochs:
            # seconds/propagation budgets keep the track's planned epochs for the eps and LR schedules
            track = dataclasses.replace(track, schedule_epochs=int(track.budget.value))
        track = dataclasses.replace(track, budget=budget)
    if request.train_subset is not None:
        track = dataclasses.replace(track, train_subset=request.train_subset)
    if request.certify_samples is not None:
        track = dataclasses.replace(track, certify_samples=request.certify_samples)
    if request.complete_samples is not None:
        track = _with_complete_samples(track, request.complete_samples)
    return track


def _with_complete_samples(track: Track, samples: int) -> Track:
    """The track with complete verification limited to the first ``samples`` test samples (0: none)."""
    from actbench.config import complete_table

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise InvalidConfig(f"--complete-samples {samples!r}: give a whole number >= 0 (0: no complete verification)")
    if samples == 0:
        return dataclasses.replace(track, certify_complete={})
    if not track.certify_complete:
        raise InvalidConfig(f"--complete-samples: track {track.name} has no complete verification in its protocol")
    table = {**track.certify_complete, "samples": samples}
    return dataclasses.replace(track, certify_complete=complete_table(table, track.eps))


def default_run_id(method: Any, track: Track, request: RunRequest) -> str:
    """A deterministic id: method, key parameter, seed, preset, and a hash of the full configuration.

    Deterministic ids let a sweep recognise a finished run and skip it.
    """
    parts = [method.name]
    if method.key_param:
        parts.append(f"{method.key_param}{method.params[method.key_param]:g}")
    parts.append(f"s{request.seed}")
    if request.preset != "full":
        parts.append(request.preset)
    config = {"track": track.to_dict(), "params": method.params, "seed": request.seed,
              "objective": method.objective}  # fmt: skip
    if method.recipe != "shared":
        parts.append(method.recipe)
        config["recipe"] = method.recipe
    digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return "-".join(parts + [digest])


def git_commit() -> str | None:
    """The commit of the actbench checkout, when it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(actbench.__file__).parent, capture_output=True,
            text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(device: str) -> dict[str, Any]:
    """The card's ``environment``; ``device_info`` names the GPU on cuda (and Ray's assignment in a sweep)."""
    from actbench.device import device_info

    return {
        "actbench": actbench.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "device": device,
        "device_info": device_info(device),
        "threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }


def reproduce_command(request: RunRequest, track: Track) -> str:
    """The command line that reproduces this run."""
    argv = ["actbench", "run", "--method", request.method, "--dataset", request.track]
    if request.preset != "full":
        argv += ["--preset", request.preset]
    if request.recipe != "shared":
        argv += ["--recipe", request.recipe]
    if request.epochs is not None:
        argv += ["--epochs", str(request.epochs)]
    if request.budget is not None:
        argv += ["--budget", str(track.budget)]
    if request.train_subset is not None:
        argv += ["--train-subset", str(request.train_subset)]
    if request.certify_samples is not None:
        argv += ["--samples", str(request.certify_samples)]
    if request.complete_samples is not None:
        argv += ["--complete-samples", str(request.complete_samples)]
    for key, value in sorted(request.overrides.items()):
        argv += ["--set", f"{key}={value}"]
    for key, value in sorted(request.track_settings.items()):
        argv += ["--track-set", f"{key}={value}"]
    argv += ["--seed", str(request.seed)]
    return shlex.join(argv)


def _initial_card(request: RunRequest, track: Track, method: Any, run_id: str, device: str,
                  splits: Any, model: torch.nn.Module) -> dict[str, Any]:
    track_dict = track.to_dict()
    track_dict["preset"] = request.preset
    return {
        "schema": SCHEMA_VERSION,
        "run_id": run_id,
        "status": "training",
        "created": utc_now(),
        "command": request.command or reproduce_command(request, track),
        "track": track_dict,
        "method": {
            "name": method.name,
            "title": method.title,
            "objective": method.objective,
            "key_param": method.key_param,
            "params": method.params,
            "spec": _display_path(method.path),
            "citation": method.citation,
            "selection": track.selection,
        },
        "recipe": method.recipe_record(),
        "model": {"name": track.model, "parameters": sum(p.numel() for p in model.parameters())},
        "seed": request.seed,
        "data": {
            "dataset": track.dataset,
            "source": splits.source,
            "train_size": splits.sizes["train"],
            "val_size": splits.sizes["val"],
            "test_size": splits.sizes["test"],
            "train_subset": track.train_subset,
        },
        "budget": {"limit": {"kind": track.budget.kind, "value": track.budget.value}, "used": {}},
        "environment": environment(device),
        "files": {"history": HISTORY_FILE, "model": MODEL_FILE, "radii": RADII_FILE},
    }


def execute_run(request: RunRequest) -> RunOutcome:
    """Train, select, certify and record one run; resumes an interrupted run in the same folder."""
    track, method = resolve_run(request)
    device = resolve_device(request.device)

    from actbench.data import load_splits
    from actbench.models import create_model, save_model
    from actbench.objectives import create_objective
    from actbench.train import train

    objective = create_objective(method, track)  # validates hyper-parameters before any data is loaded
    run_id = request.run_id or default_run_id(method, track, request)
    run_dir = Path(request.out) / track.name / run_id

    existing = _existing_card(run_dir)
    if existing is not None and existing.get("status") == "complete" and not request.force:
        return RunOutcome(run_dir, existing, skipped=True)
    resume = (run_dir / CHECKPOINT_FILE).is_file() and not request.force
    if request.force and run_dir.exists():
        for name in (CHECKPOINT_FILE, MODEL_FILE, RADII_FILE, HISTORY_FILE, CARD_FILE):
            (run_dir / name).unlink(missing_ok=True)

    splits = load_splits(track.dataset, request.data_dir, val_size=track.val_size, train_subset=track.train_subset,
                         augment=track.augment, progress=request.progress)  # fmt: skip
    info = splits.info
    torch.manual_seed(request.seed)
    model = create_model(track.model, info.in_shape, info.num_classes, info.mean, info.std)
    card = existing if resume and existing else _initial_card(request, track, method, run_id, device, splits, model)
    card["status"] = "training"
    write_card(run_dir, card)

    def resumed(done: int, planned: int) -> None:
        if request.notify is not None:
            request.notify(f"resuming {run_dir} after epoch {done} of {planned}")

    try:
        result = train(model, splits, track, objective, budget=track.budget, run_dir=run_dir,
                       seed=request.seed, device=device, resume=resume, progress=request.progress,
                       on_resume=resumed)  # fmt: skip
        save_model(run_dir / MODEL_FILE, result.model, track.model, info.in_shape, info.num_classes,
                   info.mean, info.std, extra={"run_id": run_id, "track": track.name})  # fmt: skip
        card["budget"]["used"] = result.used
        card["budget"]["stopped_by"] = result.stopped_by
        card["selection"] = result.selection
        card["status"] = "trained"
        write_card(run_dir, card)
        if request.certify:
            card = certify_track(run_dir, track, request, device)
    except KeyboardInterrupt as exc:
        card["status"] = "interrupted"
        card.pop("error", None)
        write_card(run_dir, card)
        raise RunInterrupted(run_dir) from exc
    except BaseException as exc:
        card["status"] = "failed"
        card["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        write_card(run_dir, card)
        raise
    return RunOutcome(run_dir, card)


def certify_track(run_dir: Path, track: Track, request: RunRequest, device: str) -> dict[str, Any]:
    """Certify a trained run with the track's settings; returns the completed card."""
    from actbench.certify.run import certify_run

    return certify_run(
        run_dir,
        verifiers=track.certify_verifiers,
        eps_grid=list(track.eps_grid),
        samples=track.certify_samples,
        attack=track.attack,
        data_dir=request.data_dir,
        device=device,
        progress=request.progress,
    )


def _display_path(path: Path | None) -> str | None:
    """A spec path relative to the working directory when it lies below it (cards stay portable)."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _existing_card(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / CARD_FILE
    if not path.is_file():
        return None
    try:
        return read_card(path)
    except ActbenchError:
        return None


def _int_from_argv(argv: list[str], flag: str) -> int | None:
    """The integer value of ``flag`` in a card's command line (None when absent or not a number)."""
    for i, item in enumerate(argv):
        value = item.split("=", 1)[1] if item.startswith(flag + "=") else (
            argv[i + 1] if item == flag and i + 1 < len(argv) else None)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def request_from_card(run_dir: Path) -> RunRequest:
    """Rebuild the request of an existing run (for ``actbench run --resume RUN_DIR``)."""
    run_dir = Path(run_dir)
    if not (run_dir / CARD_FILE).is_file():
        raise CheckpointError(f"{run_dir} is not a run folder (no {CARD_FILE})")
    card = read_card(run_dir)
    argv = shlex.split(card.get("command") or "")
    method = card["method"].get("spec") or card["method"]["name"]
    budget = card["budget"]["limit"]
    return RunRequest(
        method=method if method and os.path.exists(str(method)) else card["method"]["name"],
        track=card["track"]["name"],
        preset=card["track"].get("preset", "full"),
        seed=card["seed"],
        budget=f"{budget['kind']}={budget['value']}",
        overrides=_overrides_from_argv(argv),
        track_settings=_overrides_from_argv(argv, "--track-set"),
        train_subset=card["track"].get("train_subset"),
        certify_samples=card["track"].get("certify_samples"),
        complete_samples=_int_from_argv(argv, "--complete-samples"),
        recipe=(card.get("recipe") or {}).get("name", "shared"),
        out=run_dir.parent.parent,
        run_id=run_dir.name,
        command=card.get("command"),
    )


def _overrides_from_argv(argv: list[str], option: str = "--set") -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == option:
            key, parsed = parse_override(value)
            overrides[key] = parsed
    return overrides
