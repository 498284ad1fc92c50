"""The ``actbench`` command line: parse, call library functions, print with rich.

No logic lives here that tests cannot reach through the library. Every :class:`ActbenchError` is
printed as one message (no traceback unless ``--debug``) and exits with status 2.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import actbench
from actbench.cli_interop import export, verify
from actbench.cli_options import CompleteSamples
from actbench.cli_sweep import sweep
from actbench.cli_tune import tune
from actbench.config import format_eps, parse_override
from actbench.errors import ActbenchError


def _flag_type(self: Any, ctx: Any) -> str | None:
    """No value type in --help for flags (``--force``, ``--quiet``, ``--help``): they take no value."""
    return None if getattr(self, "is_flag", False) else _TYPE_SHOWN(self, ctx)


_TYPE_SHOWN = getattr(typer.core.TyperOption, "display_type_rich", None)
if _TYPE_SHOWN is not None:
    typer.core.TyperOption.display_type_rich = _flag_type

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Benchmark suite and leaderboard for certified training of neural networks.",
)
console = Console()
err_console = Console(stderr=True)
_STATE = {"debug": False}


def _version(value: bool) -> None:
    if value:
        console.print(f"actbench {actbench.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _STATE["debug"] = debug
    from actbench.bounds.allocator import tune_allocator

    tune_allocator()  # keep freed memory in the process: large tensors page-fault less (bounds/allocator.py)


def main() -> None:
    """Console-script entry point: run the app, turning ActbenchError into exit status 2."""
    try:
        app()
    except ActbenchError as exc:
        if _STATE["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        run_dir = getattr(exc, "run_dir", None)
        if run_dir is not None:
            err_console.print(f"[yellow]interrupted[/]: resume with `actbench run --resume {run_dir}`", highlight=False)
        else:
            err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.2f} %"


def print_run_summary(card: dict[str, Any], run_dir: Path) -> None:
    """A summary table of a finished run: where it is, what it scored, what it cost."""
    metrics = card.get("metrics") or {}
    table = Table(title=f"run {card['run_id']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("method", f"{card['method']['name']} ({card['method'].get('title', '')})")
    table.add_row("track", f"{card['track']['name']} (preset {card['track'].get('preset', 'full')})")
    table.add_row("status", card["status"])
    if metrics:
        table.add_row("clean test accuracy", _pct(metrics.get("clean_accuracy")))
        eps_max = card["track"]["eps"]
        for verifier, acr in (metrics.get("acr") or {}).items():
            table.add_row(f"ACR ({verifier})", f"{acr:.5f}  ({100 * acr / eps_max:.1f} % of eps {format_eps(eps_max)})")
        test_eps = metrics.get("eps_test") or []
        best = (metrics.get("certified_accuracy_test") or {}).get("best") or []
        for eps, value in zip(test_eps, best, strict=False):
            table.add_row(f"certified accuracy at {format_eps(eps)}", _pct(value))
        complete = metrics.get("complete") or {}
        for row in complete.get("per_eps", []):
            table.add_row(f"complete ({complete['verifier']}) at {format_eps(row['eps'])}",
                          f"{_pct(row['certified_accuracy'])} certified of {complete['samples']}: "
                          f"{row['certified']} certified / {row['falsified']} falsified / {row['unknown']} unknown, "
                          f"{row['searched']} searched in {row['seconds']:.0f} s "
                          f"(median {row['median_seconds']:.2f} s)")
    used = card.get("budget", {}).get("used") or {}
    if used:
        table.add_row(
            "budget used",
            f"{used.get('epochs')} epochs, {used.get('seconds', 0):.0f} s, "
            f"{used.get('propagations', 0):.3g} propagations (limit {card['budget']['limit']['kind']}="
            f"{card['budget']['limit']['value']:g})",
        )
    table.add_row("card", str(run_dir / "card.json"))
    console.print(table)


@app.command()
def run(
    method: Annotated[str, typer.Option(help="Method name (see `actbench methods`) or path to a method TOML.")] = "",
    dataset: Annotated[str, typer.Option("--dataset", "--track", help="Track / dataset name.")] = "fashion-mnist",
    preset: Annotated[str, typer.Option(help="full, or quick (a few minutes on CPU).")] = "full",
    epochs: Annotated[int | None, typer.Option(help="Override the track's epoch budget.")] = None,
    budget: Annotated[
        str | None, typer.Option(help="Override the budget: epochs=N, seconds=S or propagations=P.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    data_dir: Annotated[str | None, typer.Option(help="Folder with dataset files.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a method hyper-parameter: key=value (repeatable).")
    ] = None,
    track_set: Annotated[
        list[str] | None, typer.Option("--track-set", help="Change a training setting of the track for this run: "
                                       "lr=... or ramp_epochs=... (what `actbench tune` searches; repeatable).")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the interrupted run in this folder.")] = None,
    force: Annotated[bool, typer.Option(help="Start over even if this run already exists.")] = False,
    run_id: Annotated[str | None, typer.Option(help="Name of the run folder (default: derived from config).")] = None,
    train_subset: Annotated[
        int | None, typer.Option(help="Train on a fixed random subset of this many training samples.")
    ] = None,
    samples: Annotated[int | None, typer.Option(help="Certify only the first N test samples.")] = None,
    complete_samples: CompleteSamples = None,
    certify: Annotated[bool, typer.Option(help="Certify the selected model at the end.")] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    recipe: Annotated[
        str, typer.Option(help="shared (the track's recipe for every method) or published (the method's own).")
    ] = "shared",
) -> None:
    """Train a method on a track, select on validation, certify on test, write the run card."""
    from actbench.runner import RunInterrupted, RunRequest, execute_run, request_from_card

    if resume is not None:
        request = request_from_card(resume)
        request.progress = not quiet
        if data_dir:
            request.data_dir = data_dir
    else:
        if not method:
            raise ActbenchError("--method is required (see `actbench methods`)")
        overrides = dict(parse_override(item) for item in set_ or [])
        request = RunRequest(
            method=method, track=dataset, preset=preset, seed=seed, epochs=epochs, budget=budget,
            overrides=overrides, device=device, out=out, data_dir=data_dir, run_id=run_id,
            train_subset=train_subset, certify_samples=samples, complete_samples=complete_samples, certify=certify,
            force=force, progress=not quiet,
            recipe=recipe, track_settings=dict(parse_override(item) for item in track_set or []),
            command=shlex.join(["actbench", *sys.argv[1:]]) if sys.argv[1:2] == ["run"] else None,
        )  # fmt: skip
    request.notify = lambda text: err_console.print(text, highlight=False, soft_wrap=True)
    try:
        outcome = execute_run(request)
    except RunInterrupted as exc:
        err_console.print(f"[yellow]interrupted[/]: resume with `actbench run --resume {exc.run_dir}`",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if outcome.skipped:
        console.print(f"[green]already complete[/]: {outcome.run_dir} (use --force to run it again)")
    print_run_summary(outcome.card, outcome.run_dir)


app.command()(sweep)
app.command()(tune)
app.command()(verify)
app.command()(export)


@app.command()
def datasets(data_dir: Annotated[str | None, typer.Option(help="Folder with dataset files.")] = None) -> None:
    """Registered datasets, their sizes, and whether their files are available offline here."""
    from actbench.data import DATASETS, candidate_dirs, is_available

    table = Table(title="datasets")
    for col in ("name", "title", "classes", "input", "train", "test", "available offline"):
        table.add_column(col)
    for name, info in sorted(DATASETS.items()):
        ok = is_available(name, data_dir)
        table.add_row(name, info.title, str(info.num_classes), "×".join(map(str, info.in_shape)),
                      str(info.train_size), str(info.test_size), "[green]yes[/]" if ok else "[red]no[/]")  # fmt: skip
    console.print(table)
    console.print(f"searched: {', '.join(str(p) for p in candidate_dirs(data_dir))}")


@app.command()
def tracks() -> None:
    """Registered tracks: dataset, model, eps, budget and schedule."""
    from actbench.config import list_tracks, load_track

    table = Table(title="tracks")
    for col in ("name", "dataset", "model", "eps", "eps_test", "budget", "lr schedule", "ramp", "verifiers"):
        table.add_column(col)
    for name in list_tracks():
        t = load_track(name)
        table.add_row(
            t.name, t.dataset, t.model, format_eps(t.eps), ", ".join(format_eps(e) for e in t.eps_test),
            str(t.budget), f"{t.lr_schedule} {t.lr:g}", f"{t.warmup_epochs}+{t.ramp_epochs} ep",
            ", ".join(t.certify_verifiers),
        )  # fmt: skip
    console.print(table)


@app.command()
def methods() -> None:
    """Registered methods (methods/ and baselines/ TOML files)."""
    from actbench.objectives import list_methods, load_method

    table = Table(title="methods")
    for col in ("name", "title", "objective", "key parameter", "spec"):
        table.add_column(col)
    for name in list_methods():
        spec = load_method(name, None, {})
        key = f"{spec.key_param}={spec.params[spec.key_param]:g}" if spec.key_param else "—"
        table.add_row(spec.name, spec.title, spec.objective, key, str(spec.path or ""))
    console.print(table)


@app.command()
def certify(
    run_dir: Annotated[Path | None, typer.Argument(help="A run folder (results/<track>/<run-id>).")] = None,
    verifier: Annotated[str, typer.Option(
        help="ibp, crown-ibp, crown, alpha-crown, cascade (cheap first), or bab / milp (cascade, then complete "
             "verification of the samples left between certified and attacked).")] = "cascade",
    eps_grid: Annotated[str | None, typer.Option(help="start:stop:count (e.g. 0:0.2:21) or a list 0.1,8/255.")] = None,
    samples: Annotated[int | None, typer.Option(help="Certify only the first N test samples.")] = None,
    attack: Annotated[bool, typer.Option(help="Run the PGD attack (upper bound and soundness check).")] = True,
    dtype: Annotated[str, typer.Option(help="float64 (default, sound) or float32 (faster).")] = "float64",
    max_seconds: Annotated[float | None, typer.Option(help="Time limit per verifier; the rest is unknown.")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Folder with dataset files.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Complete verification: seconds per sample.")] = None,
    complete_samples: Annotated[int | None, typer.Option(help="Complete verification: the first N samples.")] = None,
    model: Annotated[Path | None, typer.Option(help="Instead of RUN_DIR: an external model, .onnx or .pt.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "--track", help="With --model: the track.")] = None,
    eps: Annotated[str | None, typer.Option(help="With --model: the eps cap (default: the track's).")] = None,
    name: Annotated[str | None, typer.Option(help="With --model: the entry's name (its run folder).")] = None,
    claim: Annotated[list[str] | None, typer.Option(help="With --model: a claimed number, key=value.")] = None,
    out: Annotated[Path, typer.Option(help="With --model: the results folder.")] = Path("results"),
    force: Annotated[bool, typer.Option(help="With --model: replace an entry of the same name.")] = False,
) -> None:
    """(Re-)certify a trained run, or with --model an external one: per-sample radii, ACR, certified accuracy."""
    from actbench.certify.run import certify_run
    from actbench.config import parse_eps_grid
    from actbench.runner import resolve_device

    grid = parse_eps_grid(eps_grid) if eps_grid is not None else None
    if model is not None or run_dir is None:
        from actbench.cli_interop import certify_model

        if model is None or run_dir is not None:
            raise ActbenchError("give a run folder, or --model FILE --dataset D (not both)")
        run_dir, card = certify_model(
            model, dataset, eps, name, claim, out, force, verifier=verifier, eps_grid=grid, samples=samples,
            attack=attack, dtype=dtype, max_seconds=max_seconds, data_dir=data_dir, device=resolve_device(device),
            progress=not quiet,
        )  # fmt: skip
        return print_run_summary(card, run_dir)
    card = certify_run(
        run_dir, verifier=verifier, eps_grid=grid, samples=samples, attack=attack, dtype=dtype,
        max_seconds=max_seconds, data_dir=data_dir, device=resolve_device(device), progress=not quiet,
        complete_timeout=timeout, complete_samples=complete_samples,
    )  # fmt: skip
    record = card["certifications"][-1]
    protocol = record["protocol"]
    if not record["track_protocol"]:
        console.print(f"certified under protocol [bold]{protocol['id']}[/] ({protocol['label']}), not the track's: "
                      f"recorded beside the headline, which is unchanged; compare such runs with `actbench compare "
                      f"--protocol {protocol['id']}`", highlight=False)  # fmt: skip
        card = {**card, "metrics": record["metrics"]}
    print_run_summary(card, run_dir)


@app.command()
def compare(
    dataset: Annotated[str | None, typer.Option("--dataset", "--track", help="Track (default: every track).")] = None,
    results: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    thresholds: Annotated[str | None, typer.Option(help="Clean-accuracy levels, e.g. 0.6,0.7,0.8.")] = None,
    verifier: Annotated[str, typer.Option(help="best, ibp, crown-ibp or crown.")] = "best",
    fmt: Annotated[str, typer.Option("--format", help="table, csv, markdown or json.")] = "table",
    budget: Annotated[str | None, typer.Option(help="Only runs given this budget, e.g. epochs=6.")] = None,
    protocol: Annotated[
        str | None, typer.Option(help="Certification protocol id to compare under (default: the track's).")
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Go on when a card is unreadable (it is listed, not used).")
    ] = False,
) -> None:
    """Leaderboard tables from the run cards: configurations (seed means), robustness at accuracy
    thresholds, hypervolumes and Pareto fronts, under one certification protocol.

    Only seeds of one configuration are averaged; --budget keeps one budget; --protocol picks the protocol.
    """
    from actbench.compare import compare_command

    text = compare_command(results, dataset, thresholds, verifier, fmt, budget, protocol, skip_invalid)
    sys.stdout.write(text)


@app.command()
def site(
    results: Annotated[Path, typer.Option(help="Results folder.")] = Path("results"),
    out: Annotated[Path, typer.Option(help="Output folder of the static site.")] = Path("site"),
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Go on when a card is unreadable (it is listed, not used).")
    ] = False,
) -> None:
    """Build the static leaderboard site (open OUT/index.html)."""
    from actbench.compare import load_results
    from actbench.leaderboard.site import build_site

    cards = load_results(results, skip_invalid)
    for warning in cards.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    index = build_site(results, out, index=cards)
    console.print(f"site written: {index.resolve()}", highlight=False)


@app.command()
def bench(
    only: Annotated[str | None, typer.Option(help="Run one benchmark: bounds, certify or train_step.")] = None,
) -> None:
    """Speed ratios of the bound engine, certification and training steps on this machine."""
    import subprocess

    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    scripts = sorted(folder.glob("*.py")) if folder.is_dir() else []
    if only:
        scripts = [s for s in scripts if s.stem == only]
    if not scripts:
        raise ActbenchError(f"no benchmark scripts found in {folder} (benchmarks ship with a source checkout)")
    for script in scripts:
        console.rule(script.stem)
        code = subprocess.call([sys.executable, str(script)])
        if code != 0:
            raise ActbenchError(f"benchmark {script.name} failed with exit status {code}")


if __name__ == "__main__":
    main()
