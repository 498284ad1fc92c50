"""``actbench verify``: answers against published counterexamples and an exact MILP oracle; the dispatcher's
soundness rules; the command line (single instance, --instances, bad input)."""

from __future__ import annotations

import copy
import csv

import numpy as np
import pytest
import torch
from interop_helpers import MNIST_FC, needs_vnncomp, published_counterexamples
from test_bounds_util import dense_blocks, exact_min_margins
from test_cli import actbench
from torch import nn

from actbench.errors import ActbenchError, InvalidFile, InvalidInput, UnknownName
from actbench.interop import verify as verify_mod
from actbench.interop.instances import read_instances, run_instances
from actbench.interop.onnx_export import export_onnx
from actbench.interop.onnx_import import load_onnx
from actbench.interop.verify import ANSWERS, Outcome, check_counterexample, verify_property
from actbench.interop.vnnlib import read_counterexample, read_property, write_property
from actbench.models import Normalize

# A fast subset of mnist_fc: counterexamples found by the attack and by the relaxation's vertex, and
# instances verified by CROWN-IBP and CROWN (all 90: benchmarks/vnncomp.py).
SUBSET = [
    ("onnx/mnist-net_256x2.onnx", "vnnlib/prop_1_0.03.vnnlib"),
    ("onnx/mnist-net_256x2.onnx", "vnnlib/prop_3_0.03.vnnlib"),
    ("onnx/mnist-net_256x2.onnx", "vnnlib/prop_8_0.05.vnnlib"),
    ("onnx/mnist-net_256x2.onnx", "vnnlib/prop_0_0.03.vnnlib"),
    ("onnx/mnist-net_256x4.onnx", "vnnlib/prop_8_0.05.vnnlib"),
    ("onnx/mnist-net_256x6.onnx", "vnnlib/prop_0_0.03.vnnlib"),
]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _independent_violation(net, prop, x: np.ndarray) -> bool:
    """A counterexample check that shares nothing with the verifier: float64 copy, the written box."""
    model = copy.deepcopy(net.model).double().eval()
    inside = bool(np.all(x >= prop.lower) and np.all(x <= prop.upper))
    with torch.no_grad():
        y = model(torch.from_numpy(x).view(1, *net.input_shape)).flatten()
    return inside and any(float(y[j]) >= float(y[prop.label]) for j in prop.targets)


@needs_vnncomp
def test_verify_never_contradicts_a_published_counterexample_and_every_sat_is_real():
    answers = []
    for onnx, vnnlib in SUBSET:
        net, prop = load_onnx(MNIST_FC / onnx, check=False), read_property(MNIST_FC / vnnlib)
        verdict = verify_property(net, prop, timeout=120)
        answers.append(verdict.answer)
        valid = [tool for tool, path in published_counterexamples(onnx, vnnlib)
                 if path.stat().st_size > 100 and check_counterexample(net, prop, read_counterexample(path)[0])[0]
                 .startswith("valid")]  # fmt: skip
        if verdict.answer == "unsat":
            assert not valid, f"{onnx} {vnnlib}: unsat, but {valid} published valid counterexamples"
        if verdict.answer == "sat":
            assert _independent_violation(net, prop, verdict.x), f"{onnx} {vnnlib}: sat without a real counterexample"
            assert valid, "every sat instance of this subset has published counterexamples"
    assert answers.count("unsat") >= 2 and answers.count("sat") >= 3, answers


def _tiny(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(Normalize([0.5], [0.5]), nn.Flatten(), nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 8),
                         nn.ReLU(), nn.Linear(8, 3)).eval()  # fmt: skip


def test_verify_agrees_with_an_exact_milp_oracle(tmp_path):
    """unsat only where the exact minimum margin is positive; sat only where it is not; both occur."""
    counts = {"unsat": 0, "sat": 0}
    for seed in range(4):
        model = _tiny(seed)
        path = export_onnx(model, (1, 1, 6), tmp_path / f"tiny{seed}.onnx")
        net = load_onnx(path)
        blocks = dense_blocks(copy.deepcopy(net.model), (1, 1, 6))
        g = np.random.default_rng(seed)
        for k in range(6):
            centre = g.random(6)
            eps = [0.02, 0.1, 0.3][k % 3]
            lower, upper = np.clip(centre - eps, 0, 1), np.clip(centre + eps, 0, 1)
            with torch.no_grad():
                label = int(net.model(torch.from_numpy(centre).float().view(1, 1, 1, 6)).argmax())
            prop_path = write_property(tmp_path / f"p{seed}_{k}.vnnlib", lower, upper, label, 3)
            prop = read_property(prop_path)
            verdict = verify_property(net, prop)
            exact, _ = exact_min_margins(blocks, prop.lower, prop.upper, label)
            if verdict.answer == "unsat":
                assert exact.min() > 0, (seed, k, exact)
            elif verdict.answer == "sat":
                assert exact.min() <= 1e-9 and _independent_violation(net, prop, verdict.x)
            counts[verdict.answer] = counts.get(verdict.answer, 0) + 1
    assert counts["unsat"] >= 3 and counts["sat"] >= 3, counts


def _tiny_instance(tmp_path, eps: float = 0.05):
    """The tiny network as ONNX and a property around the all-0.5 input, labelled with its prediction."""
    net = load_onnx(export_onnx(_tiny(2), (1, 1, 6), tmp_path / "tiny.onnx"))
    with torch.no_grad():
        assert int(net.model(torch.full((1, 1, 1, 6), 0.5)).argmax()) == 0  # the label the tests use
    centre = np.full(6, 0.5)
    prop = read_property(write_property(tmp_path / "p.vnnlib", centre - eps, centre + eps, 0, 3))
    return net, prop


def test_a_sat_claim_without_a_real_counterexample_becomes_unknown(tmp_path, monkeypatch):
    net, prop = _tiny_instance(tmp_path)
    bogus = torch.full((1, 1, 1, 6), 0.5, dtype=torch.float64)
    monkeypatch.setitem(verify_mod.VERIFIERS, "liar", lambda problem, deadline: Outcome("sat", bogus))
    monkeypatch.setitem(verify_mod.VERIFIERS, "mute", lambda problem, deadline: Outcome("sat"))
    verdict = verify_property(net, prop, ["liar", "mute"])
    assert verdict.answer == "unknown" and verdict.x is None
    assert any("does not violate" in n for n in verdict.notes) and any("without a counterexample" in n
                                                                       for n in verdict.notes)  # fmt: skip


def test_time_limit_gives_timeout_and_lazy_entries_resolve(tmp_path, monkeypatch):
    import time

    net, prop = _tiny_instance(tmp_path)

    def slow(problem, deadline):
        time.sleep(0.3)
        return Outcome("unknown")

    monkeypatch.setitem(verify_mod.VERIFIERS, "slow", slow)
    verdict = verify_property(net, prop, ["slow", "ibp"], timeout=0.1)
    assert verdict.answer == "timeout" and "ibp: not run (time limit)" in verdict.notes
    monkeypatch.setitem(verify_mod.VERIFIERS, "later", "actbench.interop.verify:pgd_verifier")
    assert verify_mod.resolve_verifier("later") is verify_mod.pgd_verifier
    monkeypatch.setitem(verify_mod.VERIFIERS, "absent", "actbench.complete.nothing:verify")
    with pytest.raises(ActbenchError, match="not available"):
        verify_property(net, prop, ["absent"])
    with pytest.raises(UnknownName):
        verify_property(net, prop, ["ibp", "marabou"])


def test_shape_mismatch_is_an_error(tmp_path):
    net, _ = _tiny_instance(tmp_path)
    prop = read_property(write_property(tmp_path / "q.vnnlib", np.zeros(7), np.ones(7), 0, 3))
    with pytest.raises(InvalidInput, match="7 inputs"):
        verify_property(net, prop)


def test_cli_verify_writes_a_checked_counterexample(tmp_path):
    net, _ = _tiny_instance(tmp_path)
    prop_path = write_property(tmp_path / "wide.vnnlib", np.zeros(6), np.ones(6), 2, 3)  # 2: not top at the centre
    out = actbench("verify", str(tmp_path / "tiny.onnx"), str(prop_path), "--counterexample",
                   str(tmp_path / "cex.txt"), cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "sat"
    x, y = read_counterexample(tmp_path / "cex.txt")
    assert _independent_violation(net, read_property(prop_path), x) and y.shape == (3,)
    small = write_property(tmp_path / "small.vnnlib", np.full(6, 0.5), np.full(6, 0.5), 0, 3)
    out = actbench("verify", str(tmp_path / "tiny.onnx"), str(small), "--verifier", "crown-ibp", "--quiet",
                   cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "unsat"  # a point box the network classifies right
    assert sorted(p.name for p in tmp_path.glob("*.counterexample")) == []


def test_cli_verify_instances_writes_vnncomp_results(tmp_path):
    _tiny_instance(tmp_path)
    bench = tmp_path / "bench"
    (bench / "vnnlib").mkdir(parents=True)
    (tmp_path / "tiny.onnx").rename(bench / "tiny.onnx")
    lines = []
    for i, eps in enumerate((0.001, 0.5, 0.05)):
        write_property(bench / "vnnlib" / f"prop_{i}.vnnlib", np.full(6, 0.5 - eps), np.full(6, 0.5 + eps), 0, 3)
        lines.append(f"tiny.onnx,vnnlib/prop_{i}.vnnlib,30")
    (bench / "instances.csv").write_text("\n".join(lines) + "\n")
    out = actbench("verify", "--instances", str(bench / "instances.csv"), "--out", str(tmp_path / "res"))
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader((tmp_path / "res" / "results.csv").open()))
    assert [r[:3] for r in rows] == [["bench", "tiny.onnx", f"vnnlib/prop_{i}.vnnlib"] for i in range(3)]
    assert all(r[4] in ANSWERS and float(r[3]) >= 0 and float(r[5]) >= 0 for r in rows)
    for r in rows:
        cex = tmp_path / "res" / f"tiny_{r[2][7:-7]}.counterexample"
        assert cex.is_file() == (r[4] == "sat")
    assert "3 instances" in out.stdout


@pytest.mark.parametrize("case", ["shape", "robustness", "malformed", "unsupported", "both", "instances-csv"])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, case):
    from interop_helpers import onnx_model, save
    from onnx import helper

    _tiny_instance(tmp_path)
    net, prop = tmp_path / "tiny.onnx", tmp_path / "p.vnnlib"
    work = tmp_path / "work"
    work.mkdir()
    if case == "shape":
        prop = write_property(tmp_path / "q.vnnlib", np.zeros(5), np.ones(5), 0, 3)
        args, expect = ["verify", str(net), str(prop)], "5 inputs"
    elif case == "robustness":
        prop.write_text(prop.read_text().replace("(assert (or", "(assert (<= Y_0 0.5))\n(assert (or"))
        args, expect = ["verify", str(net), str(prop)], "robustness"
    elif case == "malformed":
        prop.write_text(prop.read_text()[:-5])
        args, expect = ["verify", str(net), str(prop)], "unbalanced"
    elif case == "unsupported":
        model = onnx_model([helper.make_node("Softmax", ["x"], ["y"], name="probs")], {}, ["N", 6], ["N", 6])
        args, expect = ["verify", str(save(model, tmp_path / "soft.onnx")), str(prop)], "'probs' (op Softmax)"
    elif case == "both":
        args, expect = ["verify", str(net), str(prop), "--instances", str(tmp_path / "i.csv")], "not both"
    else:
        (tmp_path / "i.csv").write_text("tiny.onnx,p.vnnlib\n")
        args, expect = ["verify", "--instances", str(tmp_path / "i.csv"), "--out", str(work / "res")], "timeout"
    out = actbench(*args, cwd=work)
    assert out.returncode == 2 and expect in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not any(work.iterdir())


def test_instances_are_all_checked_before_anything_is_written(tmp_path):
    _tiny_instance(tmp_path)
    write_property(tmp_path / "wrong.vnnlib", np.zeros(4), np.ones(4), 0, 3)
    (tmp_path / "instances.csv").write_text("tiny.onnx,p.vnnlib,10\ntiny.onnx,wrong.vnnlib,10\n")
    with pytest.raises(InvalidInput):
        run_instances(tmp_path / "instances.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "instances.csv").write_text("tiny.onnx,p.vnnlib,-1\n")
    with pytest.raises(InvalidFile, match="positive"):
        read_instances(tmp_path / "instances.csv")
