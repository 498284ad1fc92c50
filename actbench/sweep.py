"""Sweeps: expand methods × hyper-parameter grid × seeds into runs, and execute them locally or on Ray.

A sweep is a list of :class:`~actbench.runner.RunRequest` with deterministic run ids, so running the
same sweep again only does what is missing: a run whose card is complete is skipped, an interrupted
run resumes from its checkpoint, a failed run is tried again. Every run goes through
:func:`~actbench.runner.execute_run`, exactly as ``actbench run`` does.

Grid semantics: each method takes only its own hyper-parameters. A grid key applies to the selected
methods whose spec declares it; a key written ``method.param`` (``sabr.kappa``) applies to that method
only. A method that takes none of the keys runs once per seed with its defaults. A key no selected
method declares is an error, and every value is validated against every method that takes it before
anything runs.

Executors:

* ``local`` — sequential in this process, or ``jobs`` spawned worker processes, each with
  ``cores // jobs`` torch threads;
* ``ray`` — one remote task per run, on a cluster (``address``) or on a local Ray instance started here.
  On a cluster the results folder must be shared storage that every worker sees at the same path.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from actbench.config import parse_override
from actbench.errors import ActbenchError, InvalidConfig
from actbench.runner import RunRequest, default_run_id, execute_run, resolve_device, resolve_run, resolve_track
from actbench.store import CARD_FILE, CHECKPOINT_FILE, read_card

EXECUTORS = ("local", "ray")
ATTEMPTS = 2  # a failed run is tried once more before it is reported
CONNECT_TIMEOUT = 3.0  # seconds to reach a Ray cluster's address before giving up
RAY_CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")  # where `ray start --head` records its address

# Plan statuses: what a (re)started sweep will do with each run.
NEW, COMPLETE, INTERRUPTED, FAILED = "new", "complete", "interrupted", "failed"
STATUS_ACTION = {
    NEW: "new",
    COMPLETE: "complete (will skip)",
    INTERRUPTED: "interrupted (will resume)",
    FAILED: "failed (will run again)",
}


# ------------------------------------------------------------------------------------------ planning


def parse_values(key: str, text: str | Sequence[Any]) -> list[Any]:
    """Grid values of one key: ``"0,0.25,0.5"`` → ``[0, 0.25, 0.5]``.

    Each value is read like a ``--set`` value (a TOML scalar; anything else, e.g. ``8/255``, stays a
    string for the method to parse). A list is taken as already parsed.
    """
    if isinstance(text, str):
        items = [item.strip() for item in text.split(",")]
        if not text.strip():
            raise InvalidConfig(f"grid key {key!r} has no values; give them as {key}=a,b,c")
        if any(not item for item in items):
            raise InvalidConfig(f"grid {key}={text}: empty value between commas")
        values = [parse_override(f"{key}={item}")[1] for item in items]
    else:
        values = list(text)
    if not values:
        raise InvalidConfig(f"grid key {key!r} has no values; give them as {key}=a,b,c")
    unique: list[Any] = []
    for value in values:  # keep order, drop repeats (0.5 twice is one run)
        if not any(value == seen and type(value) is type(seen) for seen in unique):
            unique.append(value)
    return unique


def parse_grid(items: Iterable[str]) -> dict[str, list[Any]]:
    """Parse repeated ``--grid key=v1,v2`` options into ``{key: [v1, v2]}``."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidConfig(f"grid {item!r}: use key=v1,v2,..., e.g. --grid kappa=0,0.25,0.5")
        parse_override(f"{key}=0")  # checks the key's spelling
        if key in grid:
            raise InvalidConfig(f"grid key {key!r} is given twice; list all its values in one --grid {key}=...")
        grid[key] = parse_values(key, raw)
    return grid


def parse_int_list(text: str, what: str = "seeds") -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]`` (repeats dropped)."""
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError as exc:
        raise InvalidConfig(f"{what} {text!r}: give whole numbers separated by commas, e.g. 0,1,2") from exc
    if not values:
        raise InvalidConfig(f"{what}: give at least one, e.g. 0,1,2")
    return list(dict.fromkeys(values))


def plan_sweep(
    methods: Sequence[str],
    track: str,
    grid: dict[str, Sequence[Any] | str] | None = None,
    seeds: Sequence[int] = (0,),
    preset: str = "full",
    budget: str | None = None,
    epochs: int | None = None,
    out: Path | str = Path("results"),
    data_dir: str | None = None,
    device: str = "auto",
    overrides: dict[str, Any] | None = None,
    train_subset: int | None = None,
    certify_samples: int | None = None,
    recipe: str = "shared",
    complete_samples: int | None = None,
) -> list[RunRequest]:
    """Expand methods × (each method's part of the grid) × seeds into run requests with fixed run ids.

    Everything is validated here, before anything runs or any folder is created: the track, preset and
    budget, every method name, every grid key (it must belong to at least one selected method), every
    value (through the method spec), and the extra ``overrides`` (applied, like grid keys, to the
    methods that take them).
    """
    from actbench.objectives import load_method

    methods = list(dict.fromkeys(m.strip() for m in methods if m.strip()))
    if not methods:
        raise InvalidConfig("a sweep needs at least one method, e.g. --methods adaptive,ibp")
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise InvalidConfig("a sweep needs at least one seed, e.g. --seeds 0,1")
    if device not in ("auto", "cpu", "cuda"):
        raise InvalidConfig(f"device {device!r}: choose auto, cpu or cuda")
    grid_values = {key: parse_values(key, values) for key, values in (grid or {}).items()}
    overrides = dict(overrides or {})

    base = RunRequest(method=methods[0], track=track, preset=preset, epochs=epochs, budget=budget,
                      out=Path(out), data_dir=data_dir, device=device, train_subset=train_subset,
                      certify_samples=certify_samples, complete_samples=complete_samples, progress=False,
                      recipe=recipe)  # fmt: skip
    resolved = resolve_track(base)  # validates track, preset and budget
    specs = {name: load_method(name, track, {}, recipe=recipe) for name in methods}
    _check_keys("grid key", grid_values, specs)
    _check_keys("--set key", overrides, specs)

    requests: list[RunRequest] = []
    seen: set[str] = set()
    for name, spec in specs.items():
        fixed = method_keys(name, spec, overrides)
        own_grid = method_keys(name, spec, grid_values)
        for combo in itertools.product(*own_grid.values()):
            params = {**fixed, **dict(zip(own_grid, combo, strict=True))}
            _validated(load_method, name, track, resolved, params, recipe)
            for seed in seeds:
                request = dataclasses.replace(base, method=name, seed=seed, overrides=dict(params))
                run_track, method = resolve_run(request)  # the method's recipe and selection rule applied
                request.run_id = default_run_id(method, run_track, request)
                if request.run_id in seen:
                    continue
                seen.add(request.run_id)
                requests.append(request)
    return requests


def _scope(key: str) -> tuple[str | None, str]:
    """``"sabr.kappa"`` → ``("sabr", "kappa")``; ``"kappa"`` → ``(None, "kappa")``."""
    scope, dot, param = key.rpartition(".")
    return (scope, param) if dot and scope and param else (None, key)


def _names(name: str, spec: Any) -> set[str]:
    """What a grid key may call a method: its spec name or what the user typed (e.g. a spec path)."""
    return {name, spec.name}


def method_keys(name: str, spec: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The part of a grid (or of fixed overrides) one method takes: plain keys it declares, and keys
    scoped to it (``sabr.kappa``), which win over plain ones."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        scope, param = _scope(key)
        if scope is None and key in spec.params:
            out.setdefault(key, value)
        elif scope is not None and scope in _names(name, spec):
            out[param] = value
    return out


def _check_keys(what: str, keys: Iterable[str], specs: dict[str, Any]) -> None:
    """A plain key must be a hyper-parameter of at least one selected method; a scoped key
    (``method.param``) must name a selected method and one of its hyper-parameters."""
    taken = "; ".join(f"{spec.name}: {', '.join(spec.params) or 'none'}" for spec in specs.values())
    selected = ", ".join(spec.name for spec in specs.values())
    for key in keys:
        scope, param = _scope(key)
        if scope is None:
            if not any(key in spec.params for spec in specs.values()):
                raise InvalidConfig(f"{what} {key!r} is not a hyper-parameter of any selected method ({selected}). "
                                    f"Their hyper-parameters are: {taken}")  # fmt: skip
            continue
        owners = [spec for name, spec in specs.items() if scope in _names(name, spec)]
        if not owners:
            raise InvalidConfig(f"{what} {key!r}: {scope!r} is not one of the selected methods ({selected})")
        if param not in owners[0].params:
            raise InvalidConfig(f"{what} {key!r}: method {owners[0].name} has no hyper-parameter {param!r}; "
                                f"it takes {', '.join(owners[0].params)}")  # fmt: skip


def _validated(load_method: Callable[..., Any], name: str, track: str, resolved: Any, params: dict[str, Any],
               recipe: str = "shared") -> Any:
    """The method spec with ``params`` applied; bad values raise InvalidConfig naming the method."""
    shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
    try:
        method = load_method(name, track, dict(params), recipe=recipe)
        from actbench.objectives import create_objective

        create_objective(method, resolved)  # the objective's own checks (ranges, combinations)
    except InvalidConfig as exc:
        raise InvalidConfig(f"method {name} with {shown}: {exc}") from exc
    return method


# ------------------------------------------------------------------------------------------ status


def run_dir_of(request: RunRequest) -> Path:
    """Where a planned run lives: ``<out>/<track>/<run id>``."""
    if request.run_id is None:
        raise InvalidConfig("a sweep request needs a run id; build requests with plan_sweep")
    return Path(request.out) / resolve_track(request).name / request.run_id


def run_status(run_dir: Path) -> str:
    """new, complete, interrupted (a checkpoint to resume from) or failed (a failed card, no checkpoint)."""
    card_path = run_dir / CARD_FILE
    card: dict[str, Any] | None = None
    if card_path.is_file():
        try:
            card = read_card(card_path)
        except ActbenchError:
            card = None
    if card is not None and card.get("status") == "complete":
        return COMPLETE
    if (run_dir / CHECKPOINT_FILE).is_file():
        return INTERRUPTED
    if card is not None and card.get("status") == "failed":
        return FAILED
    if card is not None:
        return INTERRUPTED  # stopped before its first checkpoint: starts again in the same folder
    return NEW


def describe_params(request: RunRequest) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(request.overrides.items())) or "defaults"


def plan_table(requests: Sequence[RunRequest]) -> Table:
    """The printed plan: one row per run with what a (re)started sweep will do with it."""
    table = Table(title=f"sweep plan: {len(requests)} runs", title_justify="left")
    for column in ("#", "run id", "method", "params", "seed", "status"):
        table.add_column(column)
    colours = {NEW: "cyan", COMPLETE: "green", INTERRUPTED: "yellow", FAILED: "red"}
    for i, request in enumerate(requests, 1):
        status = run_status(run_dir_of(request))
        table.add_row(str(i), request.run_id or "?", request.method, describe_params(request), str(request.seed),
                      f"[{colours[status]}]{STATUS_ACTION[status]}[/]")  # fmt: skip
    return table


# ------------------------------------------------------------------------------------------ one run


@dataclass
class RunResult:
    """What happened to one run of a sweep."""

    request: RunRequest
    run_dir: Path
    status: str  # "complete", "skipped" or "failed"
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None


def run_one(request: RunRequest, threads: int | None = None, ray_worker: bool = False) -> RunResult:
    """Execute one run and report its outcome instead of raising (an executor task; picklable).

    In a Ray task (``ray_worker``) the run uses the GPU Ray assigned it, or the CPU when it got none.
    ``KeyboardInterrupt`` and other non-``Exception`` errors still propagate: they stop the sweep.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    request = dataclasses.replace(request, progress=False)
    start = time.monotonic()
    try:
        outcome = execute_run(_on_assigned_device(request) if ray_worker else request)
    except Exception as exc:  # noqa: BLE001 - any failure of one run is reported, never fatal to the sweep
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return RunResult(request, run_dir_of(request), "failed", 1, time.monotonic() - start, message)
    status = "skipped" if outcome.skipped else "complete"
    return RunResult(request, outcome.run_dir, status, 1, time.monotonic() - start)


def run_one_in_ray(request: RunRequest, threads: int | None = None) -> RunResult:
    """:func:`run_one` as a Ray task: the run uses the GPU Ray assigned its worker, or the CPU."""
    return run_one(request, threads, ray_worker=True)


def assigned_device(device: str, gpu_ids: list[int | str] | None, cuda_available: bool, cuda_count: int) -> str:
    """The device a run uses given the GPUs Ray assigned its worker (``gpu_ids``; None outside Ray).

    Ray restricts ``CUDA_VISIBLE_DEVICES`` of a worker to its assigned GPUs, so ``cuda`` is exactly the
    assigned GPU; a worker given no GPU runs on the CPU and never touches a GPU another run holds. A
    worker whose torch sees no GPU, or more GPUs than it was given, is an error, not a silent CPU run.
    """
    if gpu_ids is None or device == "cpu":
        return device
    if not gpu_ids:
        if device == "cuda":
            raise ActbenchError("--device cuda, but Ray assigned no GPU to this run; does the cluster have GPUs "
                                "(`ray status`)?")
        return "cpu"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not cuda_available:
        raise ActbenchError(f"Ray assigned GPU {gpu_ids} to this run (CUDA_VISIBLE_DEVICES={visible}), but torch "
                            "sees no CUDA device on this node; check its CUDA driver and torch build, or run "
                            "the sweep with --device cpu")
    if cuda_count != len(gpu_ids):
        raise ActbenchError(f"Ray assigned GPU {gpu_ids} to this run but torch sees {cuda_count} devices "
                            f"(CUDA_VISIBLE_DEVICES={visible}); the worker must see only its own GPU")
    return "cuda"


def _on_assigned_device(request: RunRequest) -> RunRequest:
    """In a Ray worker: the request pinned to the GPU Ray assigned (or to the CPU)."""
    from actbench.device import ray_gpu_ids

    gpu_ids = ray_gpu_ids()
    if gpu_ids is None:  # pragma: no cover - Ray is always initialised in its workers
        return request
    import torch

    available = torch.cuda.is_available()
    device = assigned_device(request.device, gpu_ids, available, torch.cuda.device_count() if available else 0)
    return dataclasses.replace(request, device=device)


def ray_task_resources(cluster: dict[str, float], devices: set[str], jobs: int, local: bool) -> tuple[int, int]:
    """``(num_cpus, num_gpus)`` of each run's Ray task: one GPU when the cluster has GPUs and a run may use one.

    ``--device cuda`` on a cluster without GPUs is an error before anything runs.
    """
    cpus = int(cluster.get("CPU", 1))
    gpus = cluster.get("GPU", 0)
    if "cuda" in devices and not gpus:
        raise ActbenchError("--device cuda, but the Ray cluster has no GPUs (`ray status` lists its resources); "
                            "use --device auto or cpu, or add GPU nodes")
    threads = max(1, cpus // jobs) if local and jobs > 1 else 1
    return threads, 1 if gpus and devices - {"cpu"} else 0


def _init_worker(threads: int) -> None:
    """Worker-process initialiser: share the machine's cores between the ``jobs`` workers."""
    import torch

    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ the sweep


@dataclass
class SweepSummary:
    """The outcome of a sweep: every run lands in exactly one list."""

    completed: list[RunResult] = field(default_factory=list)
    skipped: list[RunResult] = field(default_factory=list)
    failed: list[RunResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def total(self) -> int:
        return len(self.completed) + len(self.skipped) + len(self.failed)

    def add(self, result: RunResult) -> None:
        {"complete": self.completed, "skipped": self.skipped, "failed": self.failed}[result.status].append(result)


def failures_table(summary: SweepSummary) -> Table:
    """The failed runs and why (their last error)."""
    table = Table(title=f"{len(summary.failed)} failed runs", title_justify="left")
    for column in ("run id", "method", "params", "seed", "attempts", "error", "folder"):
        table.add_column(column, overflow="fold")
    for r in summary.failed:
        table.add_row(r.request.run_id or "?", r.request.method, describe_params(r.request), str(r.request.seed),
                      str(r.attempts), r.error or "?", str(r.run_dir))  # fmt: skip
    return table


def run_sweep(
    requests: Sequence[RunRequest],
    executor: str = "local",
    jobs: int = 1,
    address: str | None = None,
    num_cpus: int | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> SweepSummary:
    """Run every planned request that is not complete yet and return what happened.

    A failed run is tried once more (resuming from its checkpoint when it wrote one) and then reported;
    it never stops the others. Complete runs are skipped without starting anything.
    """
    if executor not in EXECUTORS:
        raise InvalidConfig(f"executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise InvalidConfig(f"--jobs {jobs}: must be at least 1")
    if executor == "local":
        for device in {r.device for r in requests}:
            resolve_device(device)  # --device cuda without a GPU fails before anything runs
    console = console or Console(stderr=True)
    requests = [dataclasses.replace(r, progress=False) for r in requests]
    summary = SweepSummary()
    todo: list[RunRequest] = []
    for request in requests:
        run_dir = run_dir_of(request)
        if run_status(run_dir) == COMPLETE:
            summary.add(RunResult(request, run_dir, "skipped"))
        else:
            todo.append(request)

    if not todo:
        backend: _Backend = _InlineBackend()  # nothing to run: no workers, no cluster
    elif executor == "ray":
        backend = _RayBackend(address, num_cpus, jobs, devices={r.device for r in todo})
        todo = [_absolute_paths(r) for r in todo]  # workers do not share this process's working directory
    elif jobs > 1 and len(todo) > 1:
        backend = _PoolBackend(min(jobs, len(todo)), num_cpus)
    else:
        backend = _InlineBackend()

    columns = (SpinnerColumn(), TextColumn("[bold]sweep[/]"), BarColumn(), MofNCompleteColumn(),
               TextColumn("runs"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, disable=not show_progress) as progress:
        task = progress.add_task("sweep", total=len(requests), completed=len(summary.skipped))
        try:
            for result in _with_retries(backend, todo):
                if result.status == "failed" and result.attempts < ATTEMPTS:
                    progress.console.print(f"[yellow]retrying[/] {result.request.run_id}: {result.error}")
                    continue
                summary.add(result)
                progress.advance(task)
                _report(progress.console, result)
        finally:
            backend.close()
    return summary


def _absolute_paths(request: RunRequest) -> RunRequest:
    """The request with its results and data folders as absolute paths (as seen from this machine)."""
    data_dir = str(Path(request.data_dir).absolute()) if request.data_dir else None
    return dataclasses.replace(request, out=Path(request.out).absolute(), data_dir=data_dir)


def _report(console: Console, result: RunResult) -> None:
    if result.status == "failed":
        console.print(f"[red]failed[/] {result.request.run_id} after {result.attempts} attempts: {result.error}")
    elif result.status == "complete":
        console.print(f"[green]done[/] {result.request.run_id} ({result.seconds:.0f} s)")
    else:
        console.print(f"[green]already complete[/] {result.request.run_id}")


def _with_retries(backend: _Backend, todo: list[RunRequest]) -> Iterator[RunResult]:
    """Yield every result; a failure is yielded (so it can be shown) and resubmitted until ATTEMPTS."""
    attempts = dict.fromkeys((str(r.run_id) for r in todo), 0)
    for request in todo:
        backend.submit(request)
    while backend.pending():
        for result in backend.finished():
            attempts[str(result.request.run_id)] += 1
            result.attempts = attempts[str(result.request.run_id)]
            if result.status == "failed" and result.attempts < ATTEMPTS:
                backend.submit(result.request)
            yield result


# ------------------------------------------------------------------------------------------ backends


class _Backend:
    """Submits runs and hands back their results as they finish.

    ``task(request, threads)`` runs one request and returns its :class:`RunResult` (default
    :func:`run_one`; ``actbench tune`` passes its trial task): a picklable, module-level function.
    """

    def submit(self, request: RunRequest) -> None:
        raise NotImplementedError

    def pending(self) -> bool:
        raise NotImplementedError

    def finished(self) -> list[RunResult]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _InlineBackend(_Backend):
    """Sequential, in this process."""

    def __init__(self, task: Callable[..., RunResult] = run_one) -> None:
        self.queue: list[RunRequest] = []
        self.task = task

    def submit(self, request: RunRequest) -> None:
        self.queue.append(request)

    def pending(self) -> bool:
        return bool(self.queue)

    def finished(self) -> list[RunResult]:
        request = self.queue.pop(0)
        return [self.task(request)]


class _PoolBackend(_Backend):
    """``jobs`` spawned worker processes, each with ``cores // jobs`` torch threads."""

    def __init__(self, jobs: int, num_cpus: int | None, task: Callable[..., RunResult] = run_one) -> None:
        import multiprocessing

        threads = max(1, (num_cpus or os.cpu_count() or 1) // jobs)
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker, initargs=(threads,))  # fmt: skip
        self.futures: dict[Future, RunRequest] = {}
        self.task = task

    def submit(self, request: RunRequest) -> None:
        self.futures[self.pool.submit(self.task, request)] = request

    def pending(self) -> bool:
        return bool(self.futures)

    def finished(self) -> list[RunResult]:
        done, _ = wait(list(self.futures), return_when=FIRST_COMPLETED)
        results = []
        for future in done:
            self.futures.pop(future)
            try:
                result = future.result()
            except BrokenProcessPool as exc:
                raise ActbenchError(f"a sweep worker process died ({exc}); run the sweep again to continue") from exc
            results.append(result)
        return results

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def ray_module() -> Any:
    """Import Ray lazily; a clear error when it is not installed."""
    try:
        import ray
    except ImportError as exc:
        raise ActbenchError("the ray executor needs Ray: pip install 'actbench[ray]' (or use --executor local)") \
            from exc
    return ray


def _split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``ray://host:port`` → (host, port)."""
    text = address.removeprefix("ray://").strip().rstrip("/")
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise ActbenchError(f"Ray address {address!r}: use auto, host:port or ray://host:port")
    return host, int(port)


def _auto_address() -> str:
    """The running cluster ``--address auto`` means: $RAY_ADDRESS, else the one ``ray start`` recorded."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    if RAY_CURRENT_CLUSTER.is_file() and RAY_CURRENT_CLUSTER.read_text().strip():
        return RAY_CURRENT_CLUSTER.read_text().strip()
    raise ActbenchError("--address auto: no running Ray cluster found (no $RAY_ADDRESS, no `ray start` "
                        "on this machine); start one with `ray start --head`, or omit --address to start a "
                        "local Ray instance")  # fmt: skip


def probe_address(address: str, timeout: float = CONNECT_TIMEOUT) -> str:
    """Check that a Ray cluster's address accepts connections, quickly; returns the address to connect to."""
    target = _auto_address() if address == "auto" else address
    host, port = _split_address(target)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ActbenchError(
            f"cannot reach the Ray cluster at {target!r} ({exc}); check --address, that the cluster is "
            "running (`ray status`) and that this machine can reach it"
        ) from exc
    return target


class _RayBackend(_Backend):
    """One Ray task per run, on a cluster (``address``) or a local Ray instance started here."""

    def __init__(self, address: str | None, num_cpus: int | None, jobs: int, devices: set[str] | None = None,
                 task: Callable[..., RunResult] | None = None, gpu: bool | None = None) -> None:
        """``devices``: the requests' devices (one GPU per task when the cluster has GPUs and a run may use
        one); ``gpu`` says the same for callers without requests (True: may use a GPU)."""
        if devices is None:
            devices = {"cpu"} if gpu is False else {"auto"}
        task = task or run_one_in_ray
        ray = ray_module()
        self.ray = ray
        self.started = False
        self.refs: dict[Any, RunRequest] = {}
        if not ray.is_initialized():
            if address:
                target = probe_address(address)
                try:
                    ray.init(address=target, log_to_driver=False, logging_level="warning")
                except Exception as exc:  # noqa: BLE001 - Ray raises many types for a bad cluster
                    raise ActbenchError(f"cannot connect to the Ray cluster at {target!r}: {exc}") from exc
            else:
                ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                         logging_level="warning")  # fmt: skip
                self.started = True
        try:
            threads, gpus = ray_task_resources(ray.cluster_resources(), devices, jobs, not address)
        except ActbenchError:
            self.close()
            raise
        self.remote = ray.remote(task).options(num_cpus=threads, num_gpus=gpus, max_retries=0)
        self.threads = threads

    def submit(self, request: RunRequest) -> None:
        self.refs[self.remote.remote(request, self.threads)] = request

    def pending(self) -> bool:
        return bool(self.refs)

    def finished(self) -> list[RunResult]:
        done, _ = self.ray.wait(list(self.refs), num_returns=1)
        results = []
        for ref in done:
            request = self.refs.pop(ref)
            try:
                result = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a crashed worker or a lost node fails this run only
                result = RunResult(request, run_dir_of(request), "failed", 1, 0.0, f"{type(exc).__name__}: {exc}")
            results.append(result)
        return results

    def close(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)
        if self.started:
            self.ray.shutdown()
