"""``actbench export`` and ``actbench certify --model``: the VNN-LIB round trip gives margin_bounds' box, an
exported run certifies to exactly its own numbers, bad input exits 2 and writes nothing."""

from __future__ import annotations

import copy
import csv
import json
import shutil

import pandas as pd
import pytest
import torch
from interop_helpers import onnx_model, save
from onnx import helper
from test_certify_fixtures import fmnist, make_run, one_thread
from test_cli import actbench

from actbench.bounds import box_margin_bounds, margin_bounds
from actbench.certify.engine import AttackSettings
from actbench.certify.run import certify_run
from actbench.data import load_splits
from actbench.errors import ActbenchError, InvalidConfig, InvalidInput
from actbench.interop.export import export_run, sample_box
from actbench.interop.external import certify_external, submission_track
from actbench.interop.instances import run_instances
from actbench.interop.onnx_import import load_onnx
from actbench.interop.vnnlib import read_property
from actbench.models import load_model
from actbench.store import load_cards, read_card, write_card

pytestmark = pytest.mark.skipif(fmnist()[2] != "fashion-mnist", reason="needs the Fashion-MNIST files")
EPS = 0.02
SAMPLES = 24
FAST_ATTACK = AttackSettings(steps=5, restarts=1, bisect_steps=3)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def _protocol_run(run_dir, attack: bool = True):
    """A trained mlp run whose card carries exactly the protocol ``certify --model --eps 0.02`` derives."""
    make_run(run_dir, samples=SAMPLES)
    card = read_card(run_dir)
    card["track"] = {**submission_track("fashion-mnist", EPS).to_dict(), "preset": "full",
                     "certify_samples": SAMPLES, "attack": attack}  # fmt: skip
    write_card(run_dir, card)
    return run_dir


def _test_split(n: int):
    return load_splits("fashion-mnist", val_size=5000, augment=False).test.subset(n)


def test_vnnlib_round_trip_gives_the_box_margin_bounds_uses(tmp_path):
    run = make_run(tmp_path / "run", samples=SAMPLES)
    result = export_run(run, vnnlib=tmp_path / "bench", samples=4, eps=EPS)
    assert result.onnx == tmp_path / "bench" / "onnx" / "run.onnx" and len(result.properties) == 4
    rows = list(csv.reader((tmp_path / "bench" / "instances.csv").open()))
    assert rows == [["onnx/run.onnx", f"vnnlib/prop_{i}_0.02.vnnlib", "60"] for i in range(4)]
    model, _ = load_model(run / "model.pt")
    model = model.double()
    x, y = _test_split(4).tensors()
    x = x.double()
    lower, upper = sample_box(x, EPS)
    for i in range(4):
        prop = read_property(tmp_path / "bench" / rows[i][1])
        assert prop.label == int(y[i]) and prop.num_inputs == 784
        assert torch.equal(torch.from_numpy(prop.lower).view(1, 1, 28, 28), lower[i:i + 1])
        assert torch.equal(torch.from_numpy(prop.upper).view(1, 1, 28, 28), upper[i:i + 1])
        box = (torch.from_numpy(prop.lower).view(1, 1, 28, 28), torch.from_numpy(prop.upper).view(1, 1, 28, 28))
        with torch.no_grad():
            for method in ("ibp", "crown-ibp"):
                a = margin_bounds(model, x[i:i + 1], y[i:i + 1], EPS, method=method).lower
                b = box_margin_bounds(model, *box, y[i:i + 1], method=method).lower
                assert torch.equal(a, b)


def test_exported_benchmark_verifies_consistently_with_the_runs_radii(tmp_path):
    run = make_run(tmp_path / "run", samples=SAMPLES)
    with one_thread():
        card = certify_run(run, verifier="crown-ibp", progress=False, samples=8, attack_settings=FAST_ATTACK)
    radii = pd.read_parquet(run / card["certifications"][-1]["radii"])
    export_run(run, vnnlib=tmp_path / "bench", samples=8, eps=EPS)
    results = run_instances(tmp_path / "bench" / "instances.csv", tmp_path / "out", ["crown-ibp", "pgd"])
    for i, r in enumerate(results):
        if radii["radius_best"][i] >= EPS:  # certified at eps: the same bounds verify the same box
            assert r.verdict.answer == "unsat", i
        if r.verdict.answer == "unsat":
            assert radii["radius_attack"][i] > EPS, i  # never verified where the attack found an example
        if r.verdict.answer == "sat":
            assert radii["radius_best"][i] < EPS and r.counterexample.is_file()
    assert {r.verdict.answer for r in results} >= {"unsat", "sat"}


@pytest.mark.slow
def test_certify_model_reproduces_the_runs_certified_numbers_exactly(tmp_path):
    run = _protocol_run(tmp_path / "results" / "fashion-mnist" / "run")
    own = certify_run(run, progress=False)
    assert own["certification"]["verifiers"] == ["ibp", "crown-ibp"] and own["metrics"]["samples"] == SAMPLES
    assert actbench("export", str(run), "--onnx", str(tmp_path / "run.onnx")).returncode == 0
    out = actbench("certify", "--model", str(tmp_path / "run.onnx"), "--dataset", "fashion-mnist", "--eps", "0.02",
                   "--samples", str(SAMPLES), "--name", "sub", "--claim", "clean_accuracy=0.9",
                   "--out", str(tmp_path / "results"), "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    card = read_card(tmp_path / "results" / "fashion-mnist" / "sub")
    assert card["source"] == "external" and card["status"] == "complete"
    assert card["external"]["claimed"] == {"clean_accuracy": 0.9} and len(card["external"]["sha256"]) == 64
    assert _untimed(card["metrics"]) == _untimed(own["metrics"])
    pd.testing.assert_frame_equal(pd.read_parquet(run / "radii.parquet"),
                                  pd.read_parquet(tmp_path / "results" / "fashion-mnist" / "sub" / "radii.parquet"))
    assert not list((tmp_path / "results" / "fashion-mnist").glob(".staging-*"))
    # the entry is an ordinary card: compare lists it beside the run, and it re-certifies like a run
    assert len(load_cards(tmp_path / "results").complete("fashion-mnist")) == 2
    table = actbench("compare", "--results", str(tmp_path / "results"), "--dataset", "fashion-mnist")
    assert table.returncode == 0 and "sub" in table.stdout
    again = certify_run(tmp_path / "results" / "fashion-mnist" / "sub", progress=False)
    assert _untimed(again["metrics"]) == _untimed(own["metrics"])


def _untimed(metrics: dict) -> dict:
    """Metrics without the complete phase's time spent (the verdicts and counts must match; seconds differ)."""
    out = copy.deepcopy(metrics)
    for entry in (out.get("complete") or {}).get("per_eps", []):
        entry.pop("seconds", None)
        entry.pop("median_seconds", None)
    return out


def test_certify_model_accepts_an_actbench_checkpoint(tmp_path):
    run = _protocol_run(tmp_path / "results" / "fashion-mnist" / "run", attack=False)
    own = certify_run(run, progress=False, attack=False)
    assert own["status"] == "complete"
    shutil.copy(run / "model.pt", tmp_path / "mine.pt")
    run_dir, card = certify_external(tmp_path / "mine.pt", "fashion-mnist", eps=EPS, out=tmp_path / "results",
                                     samples=SAMPLES, progress=False, attack=False)  # fmt: skip
    assert run_dir.name.startswith("mine-") and card["model"]["format"] == "actbench"
    assert _untimed(card["metrics"]) == _untimed(own["metrics"]) and card["status"] == "complete"
    with pytest.raises(InvalidConfig, match="track's protocol"):
        certify_external(tmp_path / "mine.pt", "fashion-mnist", out=tmp_path / "other", dtype="float32")
    with pytest.raises(ActbenchError, match="already exists"):
        certify_external(tmp_path / "mine.pt", "fashion-mnist", eps=EPS, out=tmp_path / "results")


def test_flat_input_networks_get_flattened_images(tmp_path):
    """A network declared on [784, 1] vectors (like VNN-COMP's mnist_fc) certifies on 28x28 images."""
    import numpy as np

    rng = np.random.default_rng(0)
    w = (rng.normal(size=(784, 10)) * 0.01).astype(np.float32)
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])]
    path = save(onnx_model(nodes, {"w": w}, [1, 784, 1], [1, 10]), tmp_path / "flat.onnx")
    run_dir, card = certify_external(path, "fashion-mnist", eps=EPS, out=tmp_path / "results", samples=4,
                                     progress=False, attack=False)  # fmt: skip
    assert card["metrics"]["samples"] == 4 and card["status"] == "complete"
    flat, _ = _test_split(4).tensors()
    with torch.no_grad():
        logits = load_onnx(path).model(flat.view(4, 784, 1))
    assert card["metrics"]["clean_accuracy"] == float((logits.argmax(1) == _test_split(4).labels).float().mean())


def test_bad_submissions_exit_2_and_write_nothing(tmp_path):
    run = make_run(tmp_path / "run", samples=SAMPLES)
    assert actbench("export", str(run), "--onnx", str(tmp_path / "m.onnx")).returncode == 0
    soft = save(onnx_model([helper.make_node("Flatten", ["x"], ["f"]),
                            helper.make_node("Softmax", ["f"], ["y"], name="probs")], {}, ["N", 1, 28, 28],
                           ["N", 784]), tmp_path / "soft.onnx")  # fmt: skip
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    out_dir = tmp_path / "results"
    for args, expect in [
        (["--model", str(tmp_path / "m.onnx"), "--dataset", "cifar10"], "shape [1, 28, 28]"),
        (["--model", str(soft), "--dataset", "fashion-mnist"], "'probs' (op Softmax)"),
        ([str(run), "--model", str(tmp_path / "m.onnx"), "--dataset", "fashion-mnist"], "not both"),
    ]:  # fmt: skip
        out = actbench("certify", *args, "--out", str(out_dir))
        assert out.returncode == 2 and expect in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
    out = actbench("export", str(run))
    assert out.returncode == 2 and "nothing to export" in out.stderr
    for model, kwargs, expect in [
        (tmp_path / "junk.onnx", {}, "not a readable ONNX"),
        (tmp_path / "none.onnx", {}, "no model"),
        (tmp_path / "m.onnx", {"name": "../up"}, "name"),
        (tmp_path / "m.onnx", {"claims": ["acc=high"]}, "claim"),
        (tmp_path / "m.onnx", {"track": "imagenet"}, "unknown track"),
        (tmp_path / "m.onnx", {"samples": 0}, "samples"),
    ]:  # fmt: skip
        with pytest.raises(ActbenchError, match=expect):
            certify_external(model, **{"track": "fashion-mnist", **kwargs}, out=out_dir)
    assert not out_dir.exists()
    for kwargs, expect in [({"vnnlib": tmp_path / "v", "samples": 0}, "samples"),
                           ({"vnnlib": tmp_path / "v", "eps": "2"}, "eps")]:  # fmt: skip
        with pytest.raises(ActbenchError, match=expect):
            export_run(run, **kwargs)
    assert not (tmp_path / "v").exists()


def test_library_errors_are_typed(tmp_path):
    with pytest.raises(InvalidConfig):
        submission_track("fashion-mnist", 0)
    with pytest.raises(InvalidInput):
        from actbench.interop.external import adapt_input

        adapt_input(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10)), (32, 32, 3), (3, 32, 32), "m")
    with pytest.raises(ActbenchError):
        certify_external(tmp_path / "model.h5", "fashion-mnist", out=tmp_path / "r")
    assert json.dumps(submission_track("fashion-mnist", "0.3").to_dict())  # a card-ready track
