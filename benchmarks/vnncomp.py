"""actbench verify on a VNN-COMP benchmark, against every tool's published answers and counterexamples.

Runs ``actbench verify --instances`` on the benchmark folder (default VNN-COMP 2022's ``mnist_fc`` in
``../shared/vnncomp2022``), then reads ``results/<tool>/<benchmark>/results.csv`` and the tools'
counterexamples, checks each counterexample with a float64 forward pass (inside the property's box and
violating it), and prints one row per instance: our answer, each tool's, and how many valid published
counterexamples exist. An ``unsat`` of ours where a valid counterexample exists is a soundness bug: it is
flagged and the script exits with status 1. Tools' own contradictions are listed too (published answers
are data, not ground truth).

Run: ``.venv/bin/python benchmarks/vnncomp.py [--benchmark DIR] [--timeout 120] [--verifier ibp,crown-ibp,crown,pgd]``
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "vnncomp2022" / "mnist_fc"
SHORT = {"unsat": "U", "sat": "S", "timeout": "T", "unknown": "?"}


def _key(onnx: str, vnnlib: str) -> tuple[str, str]:
    return Path(onnx).name.removesuffix(".gz"), Path(vnnlib).name.removesuffix(".gz")


def published(results_root: Path, benchmark: str) -> dict[str, dict[tuple[str, str], str]]:
    """``{tool: {(onnx, vnnlib): answer}}`` from every ``results/<tool>/<benchmark>/results.csv``."""
    out: dict[str, dict[tuple[str, str], str]] = {}
    for path in sorted(results_root.glob(f"*/{benchmark}/results.csv")):
        answers = {}
        for row in csv.reader(path.open()):
            if len(row) >= 5:
                answers[_key(row[1], row[2])] = row[4].strip()
        out[path.parts[-3]] = answers
    return out


def valid_counterexamples(results_root: Path, benchmark: str, folder: Path, onnx: str, vnnlib: str, net, prop
                          ) -> tuple[list[str], list[str]]:
    """Tools whose published counterexample for this instance is valid, and those whose is not."""
    from actbench.errors import InvalidFile
    from actbench.interop.verify import check_counterexample
    from actbench.interop.vnnlib import read_counterexample

    name = f"{Path(onnx).name.removesuffix('.gz').removesuffix('.onnx')}_" \
           f"{Path(vnnlib).name.removesuffix('.gz').removesuffix('.vnnlib')}"
    good, bad = [], []
    for path in sorted(results_root.glob(f"*/{benchmark}/{name}.counterexample*")):
        tool = path.parts[-3]
        try:
            x, _ = read_counterexample(path)
        except InvalidFile:
            continue  # empty files (some tools published none)
        status, _ = check_counterexample(net, prop, x)
        (good if status.startswith("valid") else bad).append(tool)
    return good, bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", type=Path, default=DEFAULT, help="folder with instances.csv")
    parser.add_argument("--results", type=Path, default=None, help="published results (default: ../../results)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per instance (default: the CSV's)")
    parser.add_argument("--verifier", default="ibp,crown-ibp,crown,pgd")
    parser.add_argument("--out", type=Path, default=Path("vnncomp-results"))
    args = parser.parse_args()
    folder = args.benchmark
    if not (folder / "instances.csv").is_file():
        print(f"skipped: no VNN-COMP benchmark at {folder} (see README, 'ONNX, VNN-LIB and actbench verify')")
        return 0
    benchmark = folder.resolve().name
    results_root = args.results or folder.resolve().parent / "results"
    out = args.out / benchmark
    cmd = [sys.executable, "-m", "actbench.cli", "verify", "--instances", str(folder / "instances.csv"),
           "--out", str(out), "--verifier", args.verifier]  # fmt: skip
    if args.timeout:
        cmd += ["--timeout", str(args.timeout)]
    start = time.monotonic()
    code = subprocess.call(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.monotonic() - start
    if code != 0:
        print(f"actbench verify failed with status {code}")
        return code

    from actbench.interop.instances import load_benchmark

    instances, nets, props = load_benchmark(folder / "instances.csv")
    ours = {_key(r[1], r[2]): (r[4], float(r[5])) for r in csv.reader((out / "results.csv").open())}
    tools = published(results_root, benchmark)
    names = sorted(tools)
    print(f"\n{benchmark}: {len(instances)} instances, actbench verify --verifier {args.verifier} "
          f"(wall {wall:.0f} s; load average {os.getloadavg()[0]:.2f})")  # fmt: skip
    print("answers: U unsat (verified), S sat, ? unknown, T timeout, - none; cex = valid published "
          "counterexamples (float64)\n")  # fmt: skip
    header = f"{'network':<18} {'property':<20} {'ours':<5} {'s':>6}  " + " ".join(t[:6].ljust(6) for t in names)
    print(header + "  cex")
    contradictions, tool_wrong = [], Counter()
    counts = Counter()
    for inst in instances:
        key = _key(inst.onnx, inst.vnnlib)
        answer, seconds = ours[key]
        counts[answer] += 1
        good, _ = valid_counterexamples(results_root, benchmark, folder, inst.onnx, inst.vnnlib, nets[inst.onnx],
                                        props[inst.vnnlib])  # fmt: skip
        flag = ""
        if answer == "unsat" and good:
            contradictions.append((key, good))
            flag = "  <-- CONTRADICTS A VALID COUNTEREXAMPLE"
        if answer == "sat":  # our own counterexample file, judged like the published ones
            from actbench.interop.verify import check_counterexample
            from actbench.interop.vnnlib import read_counterexample

            x, _ = read_counterexample(out / f"{inst.name}.counterexample")
            if check_counterexample(nets[inst.onnx], props[inst.vnnlib], x)[0] != "valid":
                contradictions.append((key, ["our own counterexample is not valid"]))
                flag = "  <-- OUR COUNTEREXAMPLE IS NOT VALID"
        cells = []
        for tool in names:
            theirs = tools[tool].get(key, "-")
            if theirs == "unsat" and good:
                tool_wrong[tool] += 1
            cells.append(SHORT.get(theirs, "-" if theirs == "-" else "e").ljust(6))
        print(f"{key[0].removesuffix('.onnx'):<18} {key[1].removesuffix('.vnnlib'):<20} {SHORT.get(answer, answer):<5} "
              f"{seconds:>6.2f}  " + " ".join(cells) + f"  {len(good)}{flag}")  # fmt: skip
    print("\nsummary (unsat / sat / other):")
    print(f"  {'actbench':<18} {counts['unsat']:>3} / {counts['sat']:>3} / "
          f"{len(instances) - counts['unsat'] - counts['sat']:>3}")  # fmt: skip
    keys = {_key(inst.onnx, inst.vnnlib) for inst in instances}  # published files also list test instances
    for tool in names:
        c = Counter(tools[tool].get(k, "-") for k in keys)
        wrong = f"   ({tool_wrong[tool]} unsat answers contradict valid counterexamples)" if tool_wrong[tool] else ""
        print(f"  {tool:<18} {c['unsat']:>3} / {c['sat']:>3} / {len(keys) - c['unsat'] - c['sat']:>3}{wrong}")
    if contradictions:
        print(f"\nSOUNDNESS BUG: {len(contradictions)} answers of actbench contradict the counterexamples:")
        for key, good in contradictions:
            print(f"  {key}: {', '.join(good)}")
        return 1
    print("\nno unsat answer of actbench contradicts a valid published counterexample; every sat answer "
          "carries a counterexample re-checked in float64")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
