"""Branch and bound on a fixed subset of VNN-COMP 2022 ``mnist_fc`` (the whole set is
``benchmarks/complete_mnist_fc.py``): every answer matches the competition winner's, every ``sat`` carries
a counterexample the float64 model confirms."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from actbench.certify.attack import margins
from actbench.complete import compile_model, verify_compiled
from actbench.complete.problem import robustness_spec

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "vnncomp2022" / "mnist_fc"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="VNN-COMP 2022 data not found at ../shared/vnncomp2022")

# (network, property, alpha-beta-CROWN's published answer): attack, vertex, root and branching cases
SUBSET = [
    ("mnist-net_256x2", "prop_1_0.03", "sat"),
    ("mnist-net_256x2", "prop_0_0.05", "sat"),
    ("mnist-net_256x2", "prop_0_0.03", "unsat"),
    ("mnist-net_256x2", "prop_6_0.03", "unsat"),
    ("mnist-net_256x2", "prop_10_0.05", "unsat"),
    ("mnist-net_256x4", "prop_1_0.05", "sat"),
]


def _bench():
    spec = importlib.util.spec_from_file_location("complete_mnist_fc", REPO / "benchmarks" / "complete_mnist_fc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mnist_fc_subset_matches_published_answers():
    bench = _bench()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        nets = {}
        for net_name, prop, expected in SUBSET:
            lower, upper, label = bench.load_property(DATA / "vnnlib" / f"{prop}.vnnlib.gz")
            if net_name not in nets:
                model = bench.load_onnx(DATA / "onnx" / f"{net_name}.onnx.gz")
                nets[net_name] = (model, compile_model(model, tuple(lower.shape[1:])))
            model, net = nets[net_name]
            spec = robustness_spec(torch.tensor([label]), net.num_outputs)
            v = verify_compiled(net, lower, upper, spec, "bab", 60, {"alpha": {"intermediate": True}})
            answer = {"verified": "unsat", "falsified": "sat", "unknown": "unknown"}[v.status]
            assert answer == expected, (net_name, prop, v)
            if answer == "sat":
                x = v.counterexample
                assert bool((x >= lower).all() and (x <= upper).all())
                with torch.no_grad():
                    assert float(margins(model.double()(x), torch.tensor([label]))) <= 0
    finally:
        torch.set_num_threads(threads)


def test_actbench_verify_dispatches_to_the_complete_verifiers():
    from actbench.interop import load_onnx, read_property, verify_property

    net = load_onnx(DATA / "onnx" / "mnist-net_256x2.onnx.gz")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for prop, expected in (("prop_6_0.03", "unsat"), ("prop_0_0.05", "sat")):
            verdict = verify_property(net, read_property(DATA / "vnnlib" / f"{prop}.vnnlib.gz"), ["bab"], timeout=60)
            assert verdict.answer == expected and verdict.verifier == "bab", verdict
            assert expected == "unsat" or verdict.x is not None
    finally:
        torch.set_num_threads(threads)
