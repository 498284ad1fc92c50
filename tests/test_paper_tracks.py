"""The paper tracks end to end on the CPU, on data written here in the real formats.

MNIST (IDX .gz, CNN7 at 28 px), CIFAR-10 (python pickles, CNN7 at 32 px) and TinyImageNet (JPEG folders,
CNN7-tin at 64 px, 200 classes): train -> select -> certify -> card -> compare -> site, with the quick
preset shrunk to tens of training images (a CNN7 step on 64x64 images costs ~10 GFLOP per image), two
epochs (clean, then the eps ramp) and tens of certified samples. CIFAR-10's runs (``ibp`` and
``adaptive``) are those of ``scripts/gpu-check.sh --device cpu``, which this module also checks. The
models learn little in a few steps; these tests check the pipeline, the formats and the cards, not accuracy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from actbench.store import read_card
from actbench.synthetic import write_mnist, write_tinyimagenet

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
MODELS = {"mnist": ("cnn7", [1, 28, 28], 10), "cifar10": ("cnn7", [3, 32, 32], 10),
          "tinyimagenet": ("cnn7-tin", [3, 64, 64], 200)}  # fmt: skip


def actbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "ACTBENCH_DATA": "", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "actbench.cli", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=1800, check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A work folder with MNIST and TinyImageNet in their formats (the track's validation split comes
    from the training files: 5000 images for MNIST, 10000 for TinyImageNet; 200 remain to train on)."""
    root = tmp_path_factory.mktemp("paper")
    write_mnist(root / "data", n_train=5200, n_test=60)
    write_tinyimagenet(root / "data", train_per_class=51, val_per_class=1)
    return root


@pytest.fixture(scope="module")
def gpu_check(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """``scripts/gpu-check.sh --device cpu`` as CI runs it, keeping its work folder."""
    workdir = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "PYTHON": sys.executable, "ACTBENCH_DATA": ""}
    env.pop("PYTHONPATH", None)  # the script puts the checkout on the path itself
    out = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--device", "cpu", "--workdir",
                          str(workdir)], cwd=workdir, env=env, capture_output=True, text=True, timeout=1800,
                         check=False)  # fmt: skip
    return out, workdir


@pytest.fixture(scope="module")
def runs(work, gpu_check) -> dict[str, list[Path]]:
    """Run folders per track: MNIST (ibp) and TinyImageNet (adaptive) by ``actbench run``, CIFAR-10 (ibp,
    adaptive) from the GPU check."""
    common = ["--preset", "quick", "--epochs", "2", "--data-dir", str(work / "data"), "--out", str(work / "results"),
              "--device", "cpu", "--quiet"]  # fmt: skip
    actbench("run", "--method", "ibp", "--dataset", "mnist", "--train-subset", "64", "--samples", "20", *common,
             cwd=work)  # fmt: skip
    actbench("run", "--method", "adaptive", "--dataset", "tinyimagenet", "--train-subset", "32", "--samples", "10",
             *common, cwd=work)  # fmt: skip
    shutil.copytree(gpu_check[1] / "results" / "cifar10", work / "results" / "cifar10")
    return {track: sorted((work / "results" / track).iterdir()) for track in MODELS}


def test_gpu_check_passes_on_the_cpu(gpu_check):
    out, _ = gpu_check
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "gpu-check PASSED" in text and "[FAIL]" not in text
    for line in ("ibp: card complete", "adaptive: certified in float64 on cpu", "crown-ibp bounds at eps 8.0/255 agree",
                 "certified radii agree", "no optional package imported (none)"):
        assert f"[PASS] {line}" in text, text
    assert "ms/step (training only)" in text and "certification: 6 samples" in text and "GFLOP/step" in text


def test_each_paper_track_writes_a_complete_card(runs):
    for track, folders in runs.items():
        model, in_shape, classes = MODELS[track]
        assert len(folders) == (2 if track == "cifar10" else 1), folders
        for run_dir in folders:
            card = read_card(run_dir)
            assert card["status"] == "complete" and card["track"]["name"] == track, run_dir
            assert card["track"]["preset"] == "quick" and card["model"]["name"] == model
            assert card["budget"]["used"]["epochs"] == 2 and card["selection"]["rule"] == "val-acceps"
            assert card["data"]["val_size"] == (10000 if track == "tinyimagenet" else 5000)
            assert card["data"]["train_size"] == (64 if track == "mnist" else 32)
            cert = card["certification"]
            assert cert["dtype"] == "float64" and cert["device"]["type"] == "cpu"
            assert cert["verifiers"] == ["ibp", "crown-ibp"]
            assert card["environment"]["device"] == "cpu"
            radii = pd.read_parquet(run_dir / "radii.parquet")
            assert len(radii) == card["metrics"]["samples"] == cert["samples"]
            assert radii["label"].between(0, classes - 1).all()
            assert (radii["radius_best"] <= card["track"]["eps"] + 1e-12).all()
            history = pd.read_csv(run_dir / "history.csv")
            assert list(history["epoch"]) == [1, 2] and history["eps_t"].iloc[0] == 0 < history["eps_t"].iloc[1]
            import torch

            blob = torch.load(run_dir / "model.pt", weights_only=True)
            assert blob["model_name"] == model and blob["in_shape"] == in_shape and blob["num_classes"] == classes


def test_recertify_a_tinyimagenet_run_with_ibp(runs, work):
    [run_dir] = runs["tinyimagenet"]
    headline = read_card(run_dir)["metrics"]
    actbench("certify", str(run_dir), "--verifier", "ibp", "--samples", "8", "--data-dir", str(work / "data"),
             "--quiet", cwd=work)  # fmt: skip
    card = read_card(run_dir)
    [record] = [r for r in card["certifications"] if not r["track_protocol"]]
    assert record["settings"]["verifiers"] == ["ibp"] and record["metrics"]["samples"] == 8
    assert record["settings"]["device"]["type"] == "cpu" and (run_dir / record["radii"]).is_file()
    assert card["metrics"] == headline  # another protocol never replaces the track's headline


def test_compare_and_site_over_the_paper_tracks(runs, work):
    results = work / "results"
    body = json.loads(actbench("compare", "--results", str(results), "--format", "json", cwd=work).stdout)
    assert set(body) == set(MODELS)
    assert sorted(r["method"] for r in body["cifar10"]["runs"]) == ["adaptive", "ibp"]
    assert [r["method"] for r in body["mnist"]["runs"]] == ["ibp"]
    assert [r["method"] for r in body["tinyimagenet"]["runs"]] == ["adaptive"]
    markdown = actbench("compare", "--results", str(results), "--dataset", "cifar10", "--format", "markdown",
                        cwd=work).stdout  # fmt: skip
    assert "CIFAR-10" in markdown and "| adaptive |" in markdown and "| ibp |" in markdown
    site = work / "site"
    actbench("site", "--results", str(results), "--out", str(site), cwd=work)
    for track, folders in runs.items():
        page = (site / "tracks" / f"{track}.html").read_text()
        for run_dir in folders:
            assert run_dir.name in page
            assert (site / "runs" / track / f"{run_dir.name}.html").is_file()
    assert all(f"tracks/{track}.html" in (site / "index.html").read_text() for track in MODELS)
