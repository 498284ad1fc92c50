"""A VNN-COMP benchmark folder: ``instances.csv`` in, ``results.csv`` and counterexamples out.

``instances.csv`` lists ``onnx,vnnlib,timeout`` per line, paths relative to the CSV's folder (files may be
gzipped, as the competition publishes them). ``results.csv`` has VNN-COMP's columns and no header:
``benchmark,onnx,vnnlib,prep_time,result,run_time``. Every input is read and checked (files exist, networks
import, properties parse and fit their network) before anything is written; ``results.csv`` is rewritten
atomically after each instance, so an interrupted run leaves a complete file of the instances done.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from actbench.errors import InvalidFile, InvalidInput
from actbench.interop.files import read_text
from actbench.interop.onnx_import import OnnxNetwork, load_onnx
from actbench.interop.verify import DEFAULT_VERIFIERS, Verdict, check_shapes, parse_verifiers, verify_property
from actbench.interop.vnnlib import RobustnessProperty, read_property, write_counterexample
from actbench.store import atomic_write_text

RESULTS_FILE = "results.csv"


@dataclass
class Instance:
    """One line of ``instances.csv`` (paths as written there)."""

    onnx: str
    vnnlib: str
    timeout: float

    @property
    def name(self) -> str:
        """``<network>_<property>`` as VNN-COMP names counterexample files."""
        return f"{_stem(self.onnx)}_{_stem(self.vnnlib)}"


@dataclass
class InstanceResult:
    instance: Instance
    verdict: Verdict
    prep_time: float
    counterexample: Path | None = None


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".gz", ".onnx", ".vnnlib"):
        name = name.removesuffix(suffix)
    return name


def read_instances(path: str | Path) -> list[Instance]:
    """Parse ``instances.csv``; :class:`InvalidFile` names the bad line."""
    path = Path(path)
    text = read_text(path, "instances.csv")
    out = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 3:
            raise InvalidFile(f"{path}:{number}: expected onnx,vnnlib,timeout, got {row}")
        try:
            timeout = float(row[2])
        except ValueError:
            raise InvalidFile(f"{path}:{number}: timeout {row[2]!r} is not a number") from None
        if not timeout > 0:
            raise InvalidFile(f"{path}:{number}: timeout must be positive, got {row[2]}")
        out.append(Instance(row[0].strip(), row[1].strip(), timeout))
    if not out:
        raise InvalidFile(f"{path}: no instances listed")
    return out


def load_benchmark(path: str | Path) -> tuple[list[Instance], dict[str, OnnxNetwork], dict[str, RobustnessProperty]]:
    """Instances plus every network and property they name, imported and checked against each other."""
    path = Path(path)
    instances = read_instances(path)
    root = path.parent
    nets: dict[str, OnnxNetwork] = {}
    props: dict[str, RobustnessProperty] = {}
    for inst in instances:
        if inst.onnx not in nets:
            nets[inst.onnx] = load_onnx(root / inst.onnx)
        if inst.vnnlib not in props:
            props[inst.vnnlib] = read_property(root / inst.vnnlib)
        check_shapes(nets[inst.onnx], props[inst.vnnlib], f"{path}: {inst.vnnlib}")
    return instances, nets, props


def results_text(benchmark: str, results: Sequence[InstanceResult]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for r in results:
        writer.writerow([benchmark, r.instance.onnx, r.instance.vnnlib, f"{r.prep_time:.6f}", r.verdict.answer,
                         f"{r.verdict.seconds:.6f}"])  # fmt: skip
    return buf.getvalue()


def run_instances(path: str | Path, out: str | Path, verifiers: Sequence[str] | str = DEFAULT_VERIFIERS,
                  timeout: float | None = None, benchmark: str | None = None,
                  on_result: Callable[[InstanceResult, int, int], None] | None = None) -> list[InstanceResult]:
    """Verify every instance of ``path`` (an ``instances.csv``); write ``out/results.csv`` and counterexamples.

    ``timeout`` overrides the per-instance timeouts of the CSV. ``on_result(result, done, total)`` is called
    after each instance (the CLI's progress bar).
    """
    names = parse_verifiers(verifiers)
    if timeout is not None and not timeout > 0:
        raise InvalidInput(f"timeout must be positive, got {timeout}")
    path = Path(path)
    started = time.monotonic()
    instances, nets, props = load_benchmark(path)
    load_time = (time.monotonic() - started) / len(instances)
    benchmark = benchmark or path.resolve().parent.name
    out = Path(out)
    results: list[InstanceResult] = []
    for k, inst in enumerate(instances, start=1):
        verdict = verify_property(nets[inst.onnx], props[inst.vnnlib], names, timeout or inst.timeout)
        result = InstanceResult(inst, verdict, load_time)
        if verdict.answer == "sat":
            result.counterexample = write_counterexample(out / f"{inst.name}.counterexample", verdict.x, verdict.y)
        results.append(result)
        atomic_write_text(out / RESULTS_FILE, results_text(benchmark, results))
        if on_result is not None:
            on_result(result, k, len(instances))
    return results
