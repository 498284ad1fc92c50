"""VNN-COMP 2022 ``mnist_fc`` through ``actbench.complete.verify_box``: answers, times, wrong answers.

Reads ``../shared/vnncomp2022/mnist_fc`` (or ``--root``): three fully connected ReLU networks (ONNX,
gzipped) and 90 local-robustness properties (VNN-LIB, gzipped). The networks are loaded with the
``onnx`` package by a minimal reader of their Flatten/Gemm/Relu graphs (``actbench.interop`` replaces it
when it is installed). Every answer is compared with the published results: a ``sat`` must carry a
counterexample that the float64 model confirms (``verify_box`` only returns such), an ``unsat`` that
contradicts a published, checked counterexample is a wrong answer.

    python benchmarks/complete_mnist_fc.py --timeout 120 --out /tmp/mnist_fc.csv [--only 0:10] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "vnncomp2022"
ANSWER = {"verified": "unsat", "falsified": "sat", "unknown": "unknown"}
# alpha-beta-CROWN's choices for this benchmark: optimised intermediate bounds at the root, FSB branching
# with the max of the children's bounds; 10 steps per batch (20 there, on a GPU)
BAB_OPTIONS = {"alpha": {"intermediate": True}, "branching": "fsb", "reduce": "max", "iterations": 10}


def _read(path: Path, binary: bool = False) -> str | bytes:
    """A file's contents, gunzipped when it ends in ``.gz``."""
    if path.suffix == ".gz":
        with gzip.open(path, "rb" if binary else "rt") as fh:
            return fh.read()
    return path.read_bytes() if binary else path.read_text()


def load_onnx(path: Path) -> nn.Module:
    """The network as an nn.Sequential: ``actbench.interop``'s importer (checked against onnxruntime), or a
    minimal reader of Flatten -> (Gemm -> Relu)* -> Gemm graphs where that importer is not installed."""
    try:
        from actbench.interop import load_onnx as importer
    except ImportError:
        importer = None
    if importer is not None:
        return importer(path).model.eval()
    import onnx
    from onnx import numpy_helper

    raw = _read(path, binary=True)
    graph = onnx.load_from_string(raw).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    layers: list[nn.Module] = []
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Flatten":
            layers.append(nn.Flatten())
        elif node.op_type == "Relu":
            layers.append(nn.ReLU())
        elif node.op_type == "Gemm":
            if attrs.get("transB", 0) != 1 or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                raise SystemExit(f"{path}: unsupported Gemm attributes {attrs}")
            w, b = weights[node.input[1]], weights[node.input[2]]
            lin = nn.Linear(w.shape[1], w.shape[0]).double()
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w.astype(np.float64)))
                lin.bias.copy_(torch.from_numpy(b.astype(np.float64)))
            layers.append(lin)
        else:
            raise SystemExit(f"{path}: unsupported ONNX op {node.op_type}")
    return nn.Sequential(*layers).eval()


def load_property(path: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Input box and label of a local-robustness VNN-LIB property (``Y_j >= Y_label`` violations)."""
    text = _read(path)
    lo: dict[int, float] = {}
    hi: dict[int, float] = {}
    for op, i, v in re.findall(r"\(assert \((<=|>=) X_(\d+) ([-+0-9.eE]+)\)\)", text):
        (hi if op == "<=" else lo)[int(i)] = float(v)
    labels = {int(y) for y in re.findall(r"\(>= Y_\d+ Y_(\d+)\)", text)}
    if len(labels) != 1 or len(lo) != len(hi):
        raise SystemExit(f"{path}: not a local-robustness property")
    n = len(lo)
    lower = torch.tensor([lo[i] for i in range(n)], dtype=torch.float64).view(1, n, 1)
    upper = torch.tensor([hi[i] for i in range(n)], dtype=torch.float64).view(1, n, 1)
    return lower, upper, labels.pop()


def published(root: Path) -> dict[tuple[str, str], dict[str, str]]:
    """``(onnx stem, vnnlib stem) -> {tool: result}`` from the published results."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for csv_file in sorted((root / "results").glob("*/mnist_fc/results.csv")):
        tool = csv_file.parent.parent.name
        for row in csv.reader(csv_file.open()):
            if len(row) < 5 or "mnist_fc" not in row[0]:
                continue
            key = (Path(row[1]).stem.replace(".onnx", ""), Path(row[2]).stem.replace(".vnnlib", ""))
            out.setdefault(key, {})[tool] = row[4]
    return out


def checked_counterexamples(root: Path, key: tuple[str, str], net: object, lower: torch.Tensor,
                            upper: torch.Tensor, label: int) -> list[str]:
    """Tools whose published counterexample for ``key``, clamped into the box, violates in float64."""
    from actbench.complete import base
    from actbench.complete.problem import robustness_spec

    spec = robustness_spec(torch.tensor([label]), net.num_outputs)
    tools = []
    for path in sorted((root / "results").glob(f"*/mnist_fc/{key[0]}_{key[1]}.counterexample.gz")):
        text = _read(path)
        xs = dict(re.findall(r"\(X_(\d+) ([-+0-9.eE]+)\)", text))
        if len(xs) != lower.numel():
            continue
        x = torch.tensor([float(xs[str(i)]) for i in range(lower.numel())], dtype=torch.float64).view_as(lower)
        if base.find_counterexample(net, x, lower, upper, spec) is not None:
            tools.append(path.parent.parent.name)
    return tools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--verifier", default="bab")
    parser.add_argument("--only", default=None, help="instance range a:b (0-based)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", default="wall", choices=["wall", "process"],
                        help="time limits in wall seconds (VNN-COMP) or CPU seconds of this process (shared machine)")
    parser.add_argument("--out", type=Path, default=None, help="CSV of the answers")
    parser.add_argument("--options", default=json.dumps(BAB_OPTIONS), help="verifier options (JSON)")
    args = parser.parse_args(argv)
    from actbench.complete import compile_model, now, use_clock, verify_compiled
    from actbench.complete.__init__ import _spec

    torch.set_num_threads(args.threads)
    bench = args.root / "mnist_fc"
    if not bench.is_dir():
        print(f"no benchmark at {bench}", file=sys.stderr)
        return 2
    instances = [row for row in csv.reader((bench / "instances.csv").open()) if row]
    if args.only:
        a, b = (int(v) for v in args.only.split(":"))
        instances = instances[a:b]
    ref = published(args.root)
    nets: dict[str, object] = {}
    rows = []
    for i, (onnx_name, vnnlib_name, _) in enumerate(instances):
        onnx_path = bench / (onnx_name + ".gz")
        prop_path = bench / (vnnlib_name + ".gz")
        lower, upper, label = load_property(prop_path)
        if onnx_name not in nets:
            nets[onnx_name] = compile_model(load_onnx(onnx_path), tuple(lower.shape[1:]))
        net = nets[onnx_name]
        options = json.loads(args.options) if args.verifier == "bab" else {}
        wall = time.monotonic()
        with use_clock(args.clock):
            start = now()
            verdict = verify_compiled(net, lower, upper, _spec(net, label, None, None), args.verifier,
                                      args.timeout, options)
            seconds = now() - start
        wall = time.monotonic() - wall
        key = (Path(onnx_name).stem.replace(".onnx", ""), Path(vnnlib_name).stem.replace(".vnnlib", ""))
        abc = ref.get(key, {}).get("alpha_beta_crown", "?")
        answer = ANSWER[verdict.status]
        sat_by = checked_counterexamples(args.root, key, net, lower, upper, label)
        wrong = answer == "unsat" and bool(sat_by)
        rows.append({"index": i, "onnx": key[0], "vnnlib": key[1], "answer": answer, "seconds": round(seconds, 2),
                     "wall_seconds": round(wall, 2),
                     "reason": verdict.reason, "domains": verdict.domains, "alpha_beta_crown": abc,
                     "checked_counterexample_by": " ".join(sat_by), "wrong": wrong})
        print(f"{i:3d} {key[0]:16s} {key[1]:14s} {answer:8s} {seconds:7.2f}s (wall {wall:6.1f}s)  abc={abc:8s} "
              f"domains={verdict.domains:<7d} {verdict.reason}{'  WRONG' if wrong else ''}", flush=True)
        if args.out:
            with args.out.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    counts = {a: sum(r["answer"] == a for r in rows) for a in ("unsat", "sat", "unknown")}
    abc_sat = sum(r["alpha_beta_crown"] == "sat" for r in rows)
    sat_found = sum(r["alpha_beta_crown"] == "sat" and r["answer"] == "sat" for r in rows)
    print(f"unsat {counts['unsat']}  sat {counts['sat']}  unknown {counts['unknown']}  "
          f"published-sat answered sat {sat_found}/{abc_sat}  wrong {sum(r['wrong'] for r in rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
