"""The Optuna side of a tune: the SQLite storage, one study per method, samplers, and the lock.

Only the driver (the ``actbench tune`` process) opens the database: workers never touch it, so SQLite
sees one writer even when trials run on a Ray cluster. A lock file next to the database keeps a second
driver off the same study; with it held, any trial still marked running was left by a driver that was
killed, and is resumed (same trial number, same parameters, its run continues from its checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from actbench.errors import ActbenchError
from actbench.tune.plan import TunePlan

IDENTITY_ATTR = "actbench"  # study user attribute: the tune settings a continued study must match
LOCK_FILE = "tune.lock"


def optuna_module() -> Any:
    """Import Optuna lazily (quiet logging); a clear error when it is not installed."""
    try:
        import optuna
    except ImportError as exc:
        raise ActbenchError("actbench tune needs Optuna: pip install 'actbench[tune]' (make setup installs it)") \
            from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


@contextlib.contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """Hold the study's lock for the block; another driver on the same study is an error."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            raise ActbenchError(f"study {folder} is being run by another actbench tune (pid {owner}); wait for it "
                                "to finish or stop it, or choose another --study") from exc
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def storage_url(path: Path) -> str:
    return f"sqlite:///{Path(path).absolute()}"


def open_storage(plan: TunePlan) -> Any:
    """The tune's RDB storage (SQLite, created on first use)."""
    optuna = optuna_module()
    return optuna.storages.RDBStorage(storage_url(plan.storage_path),
                                      engine_kwargs={"connect_args": {"timeout": 60}})  # fmt: skip


def session_seed(seed: int, method: str, done: int) -> int:
    """The sampler seed of one driver session: fixed by the tune's seed, the method and how many trials the
    study already has, so a restarted tune does not draw the first trial's parameters again."""
    return (seed * 1_000_003 + zlib.crc32(method.encode()) + 7919 * done) % (2**32)


def make_sampler(name: str, seed: int, trials: int) -> tuple[Any, dict[str, Any]]:
    """A multi-objective Optuna sampler and its record for the cards.

    ``tpe`` (multi-objective TPE, the default: good with few trials; ``constant_liar`` so trials running
    in parallel are not drawn twice), ``nsga2`` (NSGA-II, for larger budgets) or ``random``.
    """
    optuna = optuna_module()
    if name == "tpe":
        options = {"n_startup_trials": min(10, max(1, trials // 2)), "multivariate": True, "constant_liar": True}
        sampler = optuna.samplers.TPESampler(seed=seed, **options)
    elif name == "nsga2":
        options = {"population_size": max(2, min(50, trials // 4))}
        sampler = optuna.samplers.NSGAIISampler(seed=seed, **options)
    else:
        options = {}
        sampler = optuna.samplers.RandomSampler(seed=seed)
    return sampler, {"name": name, "seed": seed, "options": options, "optuna": optuna.__version__}


def _differences(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def open_study(plan: TunePlan, method: str, storage: Any) -> Any:
    """The method's Optuna study (two maximised objectives), created on first use; a continued study must
    have been started with the same settings and search space."""
    import json

    optuna = optuna_module()
    name = plan.names[method]
    wanted = json.loads(json.dumps(plan.method_identity(method), default=str))
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "maximize"],
                                load_if_exists=True)  # fmt: skip
    stored = study.user_attrs.get(IDENTITY_ATTR)
    if stored is None:
        study.set_user_attr(IDENTITY_ATTR, wanted)
    elif stored != wanted:
        changes = "; ".join(_differences(stored, wanted)[:6])
        raise ActbenchError(f"study {plan.study} ({plan.storage_path}) was started for {name} with other settings "
                            f"({changes}); continue it with its original settings or start another with "
                            "--study NAME")  # fmt: skip
    done = len(study.get_trials(deepcopy=False))
    study.sampler, record = make_sampler(plan.sampler, session_seed(plan.seed, name, done), plan.trials)
    study.set_user_attr("sampler", record)
    return study


def existing_counts(plan: TunePlan) -> dict[str, dict[str, int]]:
    """Per method: finished and running trials of an existing study (all zero when there is none), read
    without creating anything (for the printed plan)."""
    counts = {m: {"finished": 0, "running": 0} for m in plan.methods}
    if not plan.storage_path.is_file():
        return counts
    optuna = optuna_module()
    storage = open_storage(plan)
    names = set(optuna.study.get_all_study_names(storage))
    for method in plan.methods:
        if plan.names[method] not in names:
            continue
        study = optuna.load_study(study_name=plan.names[method], storage=storage)
        for trial in study.get_trials(deepcopy=False):
            if trial.state.is_finished():
                counts[method]["finished"] += 1
            elif trial.state == optuna.trial.TrialState.RUNNING:
                counts[method]["running"] += 1
    return counts
