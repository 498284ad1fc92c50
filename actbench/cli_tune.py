"""The ``actbench tune`` command: plan a tune, print it, run it, print the tuned fronts.

Thin on purpose: planning and the search live in :mod:`actbench.tune`; this module parses options and
prints. Registered in :mod:`actbench.cli` with ``app.command()(tune)``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from actbench.cli_options import CompleteSamples


def plan_lines(plan: Any, counts: dict[str, dict[str, int]]) -> list[str]:
    """What the tune will do: study, objectives, sampler, and per method its space and trials left."""
    from actbench.tune.plan import OBJECTIVES

    second = OBJECTIVES[plan.objectives][1].replace("_", " ").replace("acr", "ACR/eps")
    lines = [f"tune {plan.study}: {plan.trials} trials per method on {plan.track}; objectives: validation clean "
             f"accuracy and validation {second} at eps {plan.eps:g} (maximised); sampler {plan.sampler}, seed "
             f"{plan.seed}", f"study: {plan.storage_path}"]  # fmt: skip
    for method in plan.methods:
        space = ", ".join(r.describe() for r in plan.spaces[method].values())
        done, running = counts[method]["finished"], counts[method]["running"]
        left = max(0, plan.trials - done - running)
        state = f"{done} finished" + (f", {running} interrupted (will resume)" if running else "") + f", {left} new"
        lines.append(f"  {plan.names[method]}: {space} — {state}")
    return lines


def fronts_table(report: dict[str, Any]) -> Table:
    from actbench.tune.fronts import display_rows

    headers, rows = display_rows(report["methods"], wide=False)
    table = Table(title=f"tuned fronts of {report['study']} (selected on validation)", title_justify="left",
                  caption="HV: hypervolume of the validation front, reference (0, 0); HV test: the same configurations "
                          "on the test split (track protocol)", caption_justify="left")  # fmt: skip
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*row)
    return table


def tune(
    method: Annotated[str, typer.Option(help="Comma-separated methods with a [search] space, e.g. adaptive,ibp.")],
    trials: Annotated[int, typer.Option(help="Trials per method: the budget, the same for every method.")],
    dataset: Annotated[str, typer.Option("--dataset", "--track", help="Track / dataset name.")] = "fashion-mnist",
    objectives: Annotated[
        str, typer.Option(help="clean,certified or clean,acr: validation metrics at the track's eps, maximised.")
    ] = "clean,certified",
    sampler: Annotated[str, typer.Option(help="tpe (multi-objective TPE), nsga2 or random.")] = "tpe",
    study: Annotated[
        str | None, typer.Option(help="Study name (default: derived from the settings, so a re-run continues).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Training seed of every trial; also seeds the sampler.")] = 0,
    preset: Annotated[str, typer.Option(help="full, or quick (a few minutes per run on CPU).")] = "full",
    budget: Annotated[
        str | None, typer.Option(help="Override the budget: epochs=N, seconds=S or propagations=P.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the track's epoch budget.")] = None,
    executor: Annotated[str, typer.Option(help="local (this machine) or ray (a Ray cluster).")] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address: auto, host:port or ray://host:port (default: start a local Ray)."),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(help="Trials at once (default: 1 locally; on Ray, one per GPU, else per CPU).")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Results folder (on a cluster: shared storage seen by all workers).")
    ] = Path("results"),
    data_dir: Annotated[str | None, typer.Option(help="Folder with dataset files.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    train_subset: Annotated[
        int | None, typer.Option(help="Train every trial on a fixed random subset of this many training samples.")
    ] = None,
    samples: Annotated[int | None, typer.Option(help="Certify only the first N test samples.")] = None,
    complete_samples: CompleteSamples = None,
    recipe: Annotated[
        str, typer.Option(help="shared (the track's recipe for every method) or published (each method's own).")
    ] = "shared",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and exit.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """Search each method's clean-vs-certified trade-off front with the same number of trials per method."""
    from actbench.tune import plan_tune, run_tune, tune_status
    from actbench.tune.fronts import front_lines

    console = Console()
    plan = plan_tune(method, dataset, trials, objectives=objectives, sampler=sampler, study=study, seed=seed,
                     preset=preset, budget=budget, epochs=epochs, out=out, data_dir=data_dir, device=device,
                     train_subset=train_subset, certify_samples=samples, recipe=recipe,
                     complete_samples=complete_samples)  # fmt: skip
    for line in plan_lines(plan, tune_status(plan)):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    if dry_run:
        return
    try:
        summary = run_tune(plan, executor=executor, jobs=jobs, address=address, console=console,
                           show_progress=not quiet)  # fmt: skip
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]; run the same command again to continue the tune "
                                   "(finished trials are kept, running ones resume)")  # fmt: skip
        sys.exit(130)
    console.print(f"tune finished: {len(summary.ran)} trials run, {len(summary.reused)} reused (run already "
                  f"complete), {summary.resumed} resumed, {len(summary.failed)} failed; fronts in "
                  f"{plan.fronts_path}", highlight=False)  # fmt: skip
    console.print(fronts_table(summary.report))
    for line in front_lines(summary.report["methods"]):
        console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
    if summary.report.get("note"):
        console.print(f"note: {summary.report['note']}", highlight=False)
    failures = [f for row in summary.report["methods"] for f in row["failures"]]
    if failures:
        for row in summary.report["methods"]:
            for failure in row["failures"]:
                console.print(f"[red]failed[/] {row['method']} trial {failure['trial']}: {failure['error']}",
                              highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(1)
