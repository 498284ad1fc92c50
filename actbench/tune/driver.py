"""The tune loop: Optuna's ask/tell in this process, trials on the sweep's executors (local or Ray).

The driver asks each method's study for parameters, turns them into a :class:`TrialRequest` (an
ordinary run request with a deterministic run id), hands it to an executor, and tells the study the
trial's validation objectives when it finishes. Methods take turns, so every method gets the same number
of trials (the budget) and, when the tune is stopped early, budgets differ by at most the trials in
flight. Why ask/tell with Ray tasks rather than Ray Tune's ``OptunaSearch``: the SQLite study stays the
one record of which trials exist (Ray Tune keeps its own experiment state, which would have to agree
with it on resume), only this process writes it, and trials run on exactly the executors, resources
and run folders of ``actbench sweep``.

Resuming: finished trials are never run again. A trial still marked running in the study was left by a
killed driver (the lock rules out a live one): it is run again with the same trial number and
parameters, so its run resumes from its last checkpoint, and then told. A trial whose run is already
complete (the same configuration as an earlier trial) is told without training anything.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from actbench.errors import CardError, InvalidConfig
from actbench.runner import RunRequest, default_run_id, resolve_device, resolve_run
from actbench.store import atomic_write_text, read_card
from actbench.sweep import ATTEMPTS, EXECUTORS, _absolute_paths, _InlineBackend, _PoolBackend, _RayBackend, ray_module
from actbench.tune.fronts import Point, budget_note, card_point, summarise
from actbench.tune.plan import TunePlan
from actbench.tune.study import open_storage, open_study, optuna_module, study_lock
from actbench.tune.trial import TrialRequest, TrialResult, run_trial


@dataclass
class TuneSummary:
    """What a tune session did, and the fronts of the whole study (``report``, also in fronts.json)."""

    plan: TunePlan
    report: dict[str, Any] = field(default_factory=dict)
    ran: list[TrialResult] = field(default_factory=list)  # trials trained (and certified) in this session
    reused: list[TrialResult] = field(default_factory=list)  # trials whose run was already complete
    failed: list[TrialResult] = field(default_factory=list)
    resumed: int = 0  # trials left running by a killed driver, continued here

    @property
    def ok(self) -> bool:
        return not self.failed


def _display_path(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(path).absolute())


def trial_request(plan: TunePlan, method: str, number: int, params: dict[str, Any],
                  sampler: dict[str, Any]) -> TrialRequest:
    """The run request of one trial: the plan's base request with the trial's parameters (method
    hyper-parameters as ``overrides``, track settings as ``track_settings``) and its ``tune`` section."""
    space = plan.spaces[method]
    base = {f.name: getattr(plan.base, f.name) for f in dataclasses.fields(RunRequest)}
    tune = {"study": plan.study, "trial": number, "trials": plan.trials, "objectives": plan.objectives,
            "split": "validation", "eps": plan.eps, "sampler": sampler, "storage": _display_path(plan.storage_path),
            "space": {k: r.to_dict() for k, r in space.items()}, "params": dict(params)}  # fmt: skip
    request = TrialRequest(**{**base, "method": method,
                              "overrides": {k: v for k, v in params.items() if not space[k].track},
                              "track_settings": {k: v for k, v in params.items() if space[k].track}},
                           tune=tune)  # fmt: skip
    track, spec = resolve_run(request)
    request.run_id = default_run_id(spec, track, request)
    return request


class _Session:
    """One driver session over the method studies: asks, submits, tells, counts."""

    def __init__(self, plan: TunePlan, studies: dict[str, Any], storage: Any) -> None:
        self.optuna = optuna_module()
        self.plan, self.studies, self.storage = plan, studies, storage
        states = self.optuna.trial.TrialState
        self.finished = {m: sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
                         for m, study in studies.items()}  # fmt: skip
        self.running = {m: 0 for m in studies}
        self.queue: list[tuple[str, int, dict[str, Any]]] = []  # trials to (re)submit: (method, number, params)
        for method, study in studies.items():
            for frozen in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
                trial = self._trial(method, frozen.number)
                self.queue.append((method, frozen.number, self._params(method, trial)))
                self.running[method] += 1
        self.resumed = len(self.queue)

    def _trial_id(self, method: str, number: int) -> int:
        study_id = self.storage.get_study_id_from_name(self.plan.names[method])
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def _trial(self, method: str, number: int) -> Any:
        return self.optuna.trial.Trial(self.studies[method], self._trial_id(method, number))

    def _params(self, method: str, trial: Any) -> dict[str, Any]:
        """Every searched parameter of the trial; ones a killed driver never drew are drawn now."""
        return {name: r.suggest(trial) for name, r in self.plan.spaces[method].items()}

    def wanted(self) -> str | None:
        """The method that should get the next new trial (fewest so far), or None when all have their budget."""
        open_ = [m for m in self.plan.methods if self.finished[m] + self.running[m] < self.plan.trials]
        if not open_:
            return None
        return min(open_, key=lambda m: (self.finished[m] + self.running[m], self.plan.methods.index(m)))

    def next_trial(self) -> TrialRequest | None:
        """A resumed trial first, else a new one from the method whose turn it is; None when none is due."""
        if self.queue:
            method, number, params = self.queue.pop(0)
        else:
            method = self.wanted()
            if method is None:
                return None
            trial = self.studies[method].ask()
            number, params = trial.number, self._params(method, trial)
            self.running[method] += 1
        request = trial_request(self.plan, method, number, params,
                                self.studies[method].user_attrs.get("sampler", {}))  # fmt: skip
        self.storage.set_trial_user_attr(self._trial_id(method, number), "run_id", request.run_id)
        return request

    def tell(self, request: TrialRequest, result: TrialResult | Any) -> None:
        """Record a finished trial: its validation objectives, or a failure (the trial counts either way)."""
        method, number = request.method, int(request.tune["trial"])
        values = getattr(result, "values", None)
        if result.status != "failed" and values:
            self.studies[method].tell(number, list(values))
        else:
            self.storage.set_trial_user_attr(self._trial_id(method, number), "error", str(result.error))
            self.studies[method].tell(number, state=self.optuna.trial.TrialState.FAIL)
        self.finished[method] += 1
        self.running[method] -= 1


def _backend(executor: str, jobs: int | None, address: str | None, num_cpus: int | None, gpu: bool,
             task: Callable[..., Any]) -> tuple[Any, int]:
    """The sweep's executor for trial tasks, and how many trials run at once."""
    if executor == "ray":
        backend = _RayBackend(address, num_cpus, jobs or 1, gpu=gpu, task=task)
        if jobs:
            return backend, jobs
        resources = backend.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if gpu else 0
        return backend, max(1, gpus or int(resources.get("CPU", 1)) // backend.threads)
    jobs = jobs or 1
    return (_PoolBackend(jobs, num_cpus, task=task) if jobs > 1 else _InlineBackend(task=task)), jobs


def _check_executor(plan: TunePlan, executor: str, jobs: int | None, address: str | None) -> None:
    """Executor errors before anything is created: unknown executor, bad --jobs, no GPU, no Ray, bad address."""
    if executor not in EXECUTORS:
        raise InvalidConfig(f"executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if jobs is not None and (isinstance(jobs, bool) or jobs < 1):
        raise InvalidConfig(f"--jobs {jobs}: must be at least 1")
    if executor == "local":
        resolve_device(plan.base.device)
    else:
        ray_module()
        if address:
            from actbench.sweep import probe_address

            probe_address(address)


def report(plan: TunePlan, studies: dict[str, Any]) -> dict[str, Any]:
    """The study's fronts per method (see :mod:`actbench.tune.fronts`), for fronts.json and the CLI."""
    optuna = optuna_module()
    rows = []
    for method in plan.methods:
        study = studies[method]
        points: list[Point] = []
        failures = []
        trials = study.get_trials(deepcopy=False)
        for trial in trials:
            if trial.state == optuna.trial.TrialState.FAIL:
                failures.append({"trial": trial.number, "run_id": trial.user_attrs.get("run_id"),
                                 "error": trial.user_attrs.get("error", "")})  # fmt: skip
            if trial.state != optuna.trial.TrialState.COMPLETE:
                continue
            run_dir = Path(plan.base.out) / plan.track / str(trial.user_attrs.get("run_id"))
            try:
                point = card_point(read_card(run_dir), run_dir, {"objectives": plan.objectives, "trial": trial.number,
                                                                 "params": trial.params, "values": trial.values})
            except CardError:
                point = None
            if point is None:  # the card is gone: the study's values still place the trial
                point = Point(plan.names[method], trial.number, str(trial.user_attrs.get("run_id")), "",
                              (trial.values[0], trial.values[1]), None)  # fmt: skip
            points.append(point)
        finished = sum(t.state.is_finished() for t in trials)
        rows.append({"study": plan.study, "method": plan.names[method], "budget": plan.trials, "finished": finished,
                     "failed": len(failures), "objectives": plan.objectives,
                     "sampler": study.user_attrs.get("sampler", {}), **summarise(points), "failures": failures})
    return {"study": plan.study, "track": plan.track, "storage": _display_path(plan.storage_path),
            "objectives": plan.objectives, "split": "validation", "eps": plan.eps,
            "trials_per_method": plan.trials, "identity": plan.identity, "methods": rows,
            "note": budget_note(rows)}  # fmt: skip


def run_tune(plan: TunePlan, executor: str = "local", jobs: int | None = None, address: str | None = None,
             num_cpus: int | None = None, console: Console | None = None, show_progress: bool = True,
             task: Callable[..., Any] = run_trial) -> TuneSummary:
    """Run the tune until every method has ``plan.trials`` finished trials; returns what happened.

    Creates ``plan.folder`` (study.db, fronts.json) on first use. Ctrl-C stops it: finished trials are
    kept, running ones resume when the same command is run again. ``task`` runs one trial request
    (:func:`~actbench.tune.trial.run_trial`; tests pass a stand-in that trains nothing).
    """
    _check_executor(plan, executor, jobs, address)
    optuna_module()
    console = console or Console(stderr=True)
    summary = TuneSummary(plan)
    with study_lock(plan.folder):
        storage = open_storage(plan)
        studies = {method: open_study(plan, method, storage) for method in plan.methods}
        session = _Session(plan, studies, storage)
        summary.resumed = session.resumed
        total = plan.trials * len(plan.methods)
        done = sum(min(n, plan.trials) for n in session.finished.values())
        backend, capacity = None, 1
        if done < total or session.queue:
            backend, capacity = _backend(executor, jobs, address, num_cpus, plan.base.device != "cpu", task)
        columns = (SpinnerColumn(), TextColumn("[bold]tune[/]"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("trials"), TimeElapsedColumn())  # fmt: skip
        inflight: dict[str, list[TrialRequest]] = {}
        attempts: dict[str, int] = {}
        try:
            with Progress(*columns, console=console, disable=not show_progress) as progress:
                task = progress.add_task("tune", total=total, completed=min(done, total))
                while backend is not None:
                    while len(inflight) < capacity:
                        request = session.next_trial()
                        if request is None:
                            break
                        if executor == "ray":
                            request = _absolute_paths(request)
                        if request.run_id in inflight:  # same configuration in flight: share its result
                            inflight[str(request.run_id)].append(request)
                            continue
                        inflight[str(request.run_id)] = [request]
                        attempts.setdefault(str(request.run_id), 0)
                        backend.submit(request)
                    if not backend.pending():
                        break
                    for result in backend.finished():
                        run_id = str(result.request.run_id)
                        attempts[run_id] += 1
                        if result.status == "failed" and attempts[run_id] < ATTEMPTS:
                            progress.console.print(f"[yellow]retrying[/] {run_id}: {result.error}")
                            backend.submit(inflight[run_id][0])
                            continue
                        for request in inflight.pop(run_id):
                            session.tell(request, result)
                            _record(summary, result)
                            _print_trial(progress.console, request, result)
                            progress.advance(task)
        finally:
            if backend is not None:
                backend.close()
            summary.report = report(plan, studies)
            atomic_write_text(plan.fronts_path, json.dumps(summary.report, indent=2, default=str) + "\n")
    return summary


def _record(summary: TuneSummary, result: Any) -> None:
    if result.status == "failed":
        summary.failed.append(result)
    elif result.status == "skipped":
        summary.reused.append(result)
    else:
        summary.ran.append(result)


def _print_trial(console: Console, request: TrialRequest, result: Any) -> None:
    from actbench.tune.fronts import params_label

    what = f"{request.method} trial {request.tune['trial']} ({params_label(request.tune['params'])})"
    if result.status == "failed":
        console.print(f"[red]failed[/] {what}: {result.error}", highlight=False)
        return
    second = "certified" if request.tune["objectives"].endswith("certified") else "ACR/eps"
    values = getattr(result, "values", None) or (float("nan"), float("nan"))
    verb = "[green]done[/]" if result.status == "complete" else "[green]already complete[/]"
    console.print(f"{verb} {what}: validation {100 * values[0]:.1f} % clean, {100 * values[1]:.1f} % {second} "
                  f"({result.seconds:.0f} s) {request.run_id}", highlight=False)  # fmt: skip


def tune_status(plan: TunePlan) -> dict[str, dict[str, int]]:
    """Per method: finished and running trials of the study so far (nothing is created)."""
    from actbench.tune.study import existing_counts

    return existing_counts(plan)

