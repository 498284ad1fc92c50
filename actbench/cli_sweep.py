"""The ``actbench sweep`` command: plan a grid of runs, print the plan, execute it, report failures.

Thin on purpose: planning and execution live in :mod:`actbench.sweep`; this module parses options
and prints. Registered in :mod:`actbench.cli` with ``app.command()(sweep)``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from actbench.cli_options import CompleteSamples
from actbench.config import parse_override


def sweep(
    methods: Annotated[str, typer.Option(help="Comma-separated method names or spec paths, e.g. adaptive,ibp,sabr.")],
    dataset: Annotated[str, typer.Option("--dataset", "--track", help="Track / dataset name.")] = "fashion-mnist",
    grid: Annotated[
        list[str] | None,
        typer.Option(help="Hyper-parameter grid key=v1,v2,... (repeatable); applies to the methods that take "
                          "the key."),  # fmt: skip
    ] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds, e.g. 0,1,2.")] = "0",
    preset: Annotated[str, typer.Option(help="full, or quick (a few minutes per run on CPU).")] = "full",
    budget: Annotated[
        str | None, typer.Option(help="Override the budget: epochs=N, seconds=S or propagations=P.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the track's epoch budget.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Fixed hyper-parameter key=value for the methods that take it (repeatable)."),
    ] = None,
    executor: Annotated[str, typer.Option(help="local (this machine) or ray (a Ray cluster).")] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address: auto, host:port or ray://host:port (default: start a local Ray)."),
    ] = None,
    jobs: Annotated[int, typer.Option(help="Runs at once on this machine (local worker processes / local Ray).")] = 1,
    out: Annotated[
        Path, typer.Option(help="Results folder (on a cluster: shared storage seen by all workers).")
    ] = Path("results"),
    data_dir: Annotated[str | None, typer.Option(help="Folder with dataset files.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    train_subset: Annotated[
        int | None, typer.Option(help="Train every run on a fixed random subset of this many training samples.")
    ] = None,
    samples: Annotated[int | None, typer.Option(help="Certify only the first N test samples.")] = None,
    complete_samples: CompleteSamples = None,
    recipe: Annotated[
        str, typer.Option(help="shared (the track's recipe for every method) or published (each method's own).")
    ] = "shared",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and exit.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """Run every method × grid point × seed on a track; finished runs are skipped, interrupted ones resumed."""
    from actbench.sweep import failures_table, parse_grid, parse_int_list, plan_sweep, plan_table, run_sweep

    console = Console()
    requests = plan_sweep(
        methods=methods.split(","), track=dataset, grid=parse_grid(grid or []), seeds=parse_int_list(seeds),
        preset=preset, budget=budget, epochs=epochs, out=out, data_dir=data_dir, device=device,
        overrides=dict(parse_override(item) for item in set_ or []), train_subset=train_subset,
        certify_samples=samples, recipe=recipe, complete_samples=complete_samples,
    )  # fmt: skip
    console.print(plan_table(requests))
    if dry_run:
        return
    try:
        summary = run_sweep(requests, executor=executor, jobs=jobs, address=address, console=console,
                            show_progress=not quiet)  # fmt: skip
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]; run the same command again to finish the sweep "
                                   "(complete runs are skipped, interrupted ones resume)")  # fmt: skip
        sys.exit(130)
    console.print(f"sweep finished: {len(summary.completed)} completed, {len(summary.skipped)} skipped "
                  f"(already complete), {len(summary.failed)} failed; results in {out}")  # fmt: skip
    if summary.failed:
        console.print(failures_table(summary))
        raise typer.Exit(1)
