"""The interop commands: ``actbench verify``, ``actbench export`` and ``actbench certify --model``.

Thin on purpose: the logic lives in :mod:`actbench.interop`; this module parses options and prints.
``verify`` and ``export`` are registered in :mod:`actbench.cli` with ``app.command()(...)``; the ``certify``
command there hands ``--model`` to :func:`certify_model`.
"""

from __future__ import annotations

import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from actbench.errors import ActbenchError

VERIFIER_HELP = "Verifiers tried in order until one decides: ibp, crown-ibp, crown, pgd (comma-separated)."


def _counterexample_path(network: Path, prop: Path) -> Path:
    from actbench.interop.instances import Instance

    return Path(Instance(str(network), str(prop), 1.0).name + ".counterexample")


def verify(
    network: Annotated[Path | None, typer.Argument(metavar="NET", help="The network: NET.onnx (or .onnx.gz).")] = None,
    prop: Annotated[Path | None, typer.Argument(metavar="PROP", help="The property: PROP.vnnlib (or .gz).")] = None,
    instances: Annotated[
        Path | None, typer.Option(help="Run a whole benchmark: an instances.csv (VNN-COMP layout).")
    ] = None,
    verifier: Annotated[str, typer.Option(help=VERIFIER_HELP)] = "ibp,crown-ibp,crown,pgd",
    timeout: Annotated[
        float | None, typer.Option(help="Seconds per instance (default: none; with --instances the CSV's).")
    ] = None,
    counterexample: Annotated[
        Path | None, typer.Option(help="Where a sat answer's counterexample goes (default: NET_PROP.counterexample).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="With --instances: folder for results.csv and counterexamples.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Only the answer (no details, no progress bar).")] = False,
) -> None:
    """VNN-COMP answer for an ONNX network and a VNN-LIB property: unsat (verified), sat, unknown or timeout.

    A sat answer comes with a counterexample file (VNN-COMP format), re-checked in float64 first.
    """
    console = Console()
    if instances is not None:
        if network is not None or prop is not None:
            raise ActbenchError("give either NET.onnx PROP.vnnlib or --instances instances.csv, not both")
        _verify_instances(instances, verifier, timeout, out, quiet, console)
        return
    if network is None or prop is None:
        raise ActbenchError("give NET.onnx PROP.vnnlib, or --instances instances.csv (see actbench verify --help)")
    from actbench.interop.onnx_import import load_onnx
    from actbench.interop.verify import parse_verifiers, verify_property
    from actbench.interop.vnnlib import read_property, write_counterexample

    names = parse_verifiers(verifier)
    net = load_onnx(network)
    spec = read_property(prop)
    verdict = verify_property(net, spec, names, timeout)
    typer.echo(verdict.answer)
    if verdict.answer == "sat":
        path = write_counterexample(counterexample or _counterexample_path(network, prop), verdict.x, verdict.y)
        if not quiet:
            console.print(f"counterexample (checked in float64): {path}", highlight=False)
    if not quiet:
        console.print(f"{verdict.seconds:.3f} s; decided by {verdict.verifier or 'no verifier'}; "
                      f"network {net.check}", highlight=False)  # fmt: skip
        for note in verdict.notes:
            console.print(f"  {note}", highlight=False)


def _verify_instances(instances: Path, verifier: str, timeout: float | None, out: Path | None, quiet: bool,
                      console: Console) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from actbench.interop.instances import RESULTS_FILE, run_instances

    benchmark = instances.resolve().parent.name
    out = out or Path("vnncomp-results") / benchmark
    counts: Counter[str] = Counter()
    progress = Progress(TextColumn("verify {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), disable=quiet)  # fmt: skip
    with progress:
        task = progress.add_task(benchmark, total=None, counts="loading")

        def on_result(result: Any, done: int, total: int) -> None:
            counts[result.verdict.answer] += 1
            progress.update(task, completed=done, total=total,
                            counts=" ".join(f"{k} {v}" for k, v in sorted(counts.items())))  # fmt: skip

        results = run_instances(instances, out, verifier, timeout, benchmark, on_result=on_result)
    summary = ", ".join(f"{counts[a]} {a}" for a in ("unsat", "sat", "unknown", "timeout") if counts[a])
    console.print(f"{len(results)} instances: {summary}; results in {out / RESULTS_FILE}", highlight=False)


def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (results/<track>/<run-id>).")],
    onnx: Annotated[Path | None, typer.Option(help="Write the model as ONNX to this file.")] = None,
    vnnlib: Annotated[
        Path | None, typer.Option(help="Write test-sample robustness properties and instances.csv to this folder.")
    ] = None,
    samples: Annotated[int, typer.Option(help="With --vnnlib: a property for each of the first N test samples.")] = 10,
    eps: Annotated[str | None, typer.Option(help="With --vnnlib: the radius (default: the track's eps).")] = None,
    timeout: Annotated[float, typer.Option(help="With --vnnlib: the timeout column of instances.csv.")] = 60.0,
    data_dir: Annotated[str | None, typer.Option(help="Folder with dataset files.")] = None,
) -> None:
    """Export a run's model (ONNX) and VNN-LIB robustness properties of its test samples, VNN-COMP style."""
    from actbench.interop.export import export_run

    result = export_run(run_dir, onnx=onnx, vnnlib=vnnlib, samples=samples, eps=eps, timeout=timeout,
                        data_dir=data_dir)  # fmt: skip
    console = Console()
    if result.onnx is not None:
        console.print(f"ONNX: {result.onnx}", highlight=False)
    if result.instances is not None:
        console.print(f"{len(result.properties)} VNN-LIB properties and {result.instances}", highlight=False)


def certify_model(model: Path, dataset: str | None, eps: str | None, name: str | None, claim: list[str] | None,
                  out: Path, force: bool, **options: Any) -> tuple[Path, dict[str, Any]]:
    """``actbench certify --model FILE --dataset D``: certify an external model into a run card."""
    from actbench.interop.external import certify_external

    if dataset is None:
        raise ActbenchError("--model needs --dataset (the track to certify under, e.g. fashion-mnist)")
    command = shlex.join(["actbench", *sys.argv[1:]]) if sys.argv[1:2] == ["certify"] else None
    return certify_external(model, dataset, eps=eps, name=name, claims=claim, out=out, force=force,
                            command=command, **options)  # fmt: skip
