"""The command line end to end: bad input exits 2 with a helpful message; a small real run writes a card."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actbench.data import is_available
from actbench.store import read_card

ROOT = Path(__file__).resolve().parents[1]


def actbench(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 900):
    """Run the CLI as a user would (a fresh Python process) and capture its output."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "actbench.cli", *args], cwd=cwd or ROOT, env=full_env, capture_output=True,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_version_and_listings():
    out = actbench("--version")
    assert out.returncode == 0 and out.stdout.startswith("actbench ")
    tracks = actbench("tracks")
    assert tracks.returncode == 0
    for name in ("fashion-mnist", "mnist", "cifar10", "tinyimagenet"):
        assert name in tracks.stdout
    datasets = actbench("datasets")
    assert datasets.returncode == 0 and "cifar10" in datasets.stdout


def test_methods_lists_every_registered_method():
    out = actbench("methods")
    assert out.returncode == 0, out.stderr
    for name in ("standard", "pgd", "ibp", "crown_ibp", "sabr", "mtl_ibp", "adaptive"):
        assert name in out.stdout


def test_unknown_track_exits_2_listing_choices(tmp_path):
    out = actbench("run", "--method", "standard", "--dataset", "imagenet", "--out", str(tmp_path))
    assert out.returncode == 2
    assert "unknown track 'imagenet'" in out.stderr and "fashion-mnist" in out.stderr
    assert "Traceback" not in out.stderr
    assert not any(tmp_path.iterdir())


def test_unknown_method_exits_2_listing_choices(tmp_path):
    out = actbench("run", "--method", "magic", "--dataset", "fashion-mnist", "--out", str(tmp_path))
    assert out.returncode == 2
    assert "magic" in out.stderr and "adaptive" in out.stderr and "standard" in out.stderr
    assert "Traceback" not in out.stderr
    assert not any(tmp_path.iterdir())


def test_bad_budget_and_eps_override_exit_2(tmp_path):
    out = actbench("run", "--method", "standard", "--budget", "epochs=0", "--out", str(tmp_path))
    assert out.returncode == 2 and "budget" in out.stderr
    out = actbench("run", "--method", "ibp", "--set", "kappa=1.5", "--out", str(tmp_path))
    assert out.returncode == 2 and "kappa" in out.stderr
    assert not any(tmp_path.iterdir())


def test_missing_cifar10_prints_where_to_put_files(tmp_path):
    env = {"ACTBENCH_DATA": str(tmp_path / "data"), "HOME": str(tmp_path)}
    out = actbench("run", "--method", "standard", "--dataset", "cifar10", "--preset", "quick",
                   "--out", str(tmp_path / "results"), cwd=tmp_path, env=env)  # fmt: skip
    assert out.returncode == 2
    assert "cifar-10-batches-py" in out.stderr and "Traceback" not in out.stderr


def test_debug_shows_traceback(tmp_path):
    out = actbench("--debug", "run", "--method", "standard", "--dataset", "imagenet", "--out", str(tmp_path))
    assert out.returncode != 0 and "Traceback" in out.stderr


@pytest.mark.slow
@pytest.mark.skipif(not is_available("fashion-mnist"), reason="Fashion-MNIST files not installed")
def test_run_standard_end_to_end_writes_a_valid_card(tmp_path):
    args = ["run", "--method", "standard", "--dataset", "fashion-mnist", "--preset", "quick", "--epochs", "1",
            "--train-subset", "4000", "--samples", "100", "--out", str(tmp_path), "--quiet"]  # fmt: skip
    out = actbench(*args)
    assert out.returncode == 0, out.stderr
    cards = list(tmp_path.glob("fashion-mnist/*/card.json"))
    assert len(cards) == 1
    card = read_card(cards[0])
    assert card["status"] == "complete" and card["method"]["name"] == "standard"
    assert card["track"]["preset"] == "quick" and card["data"]["train_subset"] == 4000
    assert card["budget"]["used"]["epochs"] == 1 and card["budget"]["used"]["propagations"] > 0
    assert 0.5 < card["metrics"]["clean_accuracy"] <= 1.0
    assert card["metrics"]["samples"] == 100
    run_dir = cards[0].parent
    assert (run_dir / "history.csv").is_file() and (run_dir / "radii.parquet").is_file()
    assert (run_dir / "model.pt").is_file()
    assert str(cards[0].parent) in out.stdout.replace("\n", "") or "card.json" in out.stdout
    # running the same configuration again finds the finished run instead of repeating it
    again = actbench(*args)
    assert again.returncode == 0 and "already complete" in again.stdout
    assert json.loads(cards[0].read_text())["updated"] == card["updated"]


@pytest.mark.slow
@pytest.mark.skipif(not is_available("fashion-mnist"), reason="Fashion-MNIST files not installed")
def test_ctrl_c_marks_the_run_interrupted_and_resume_says_from_where(tmp_path):
    import signal
    import time

    args = ["run", "--method", "ibp", "--dataset", "fashion-mnist", "--preset", "quick", "--epochs", "3",
            "--train-subset", "1500", "--samples", "20", "--complete-samples", "2", "--out", str(tmp_path),
            "--quiet"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "actbench.cli", *args], cwd=ROOT, text=True,
                            env={**os.environ, "COLUMNS": "200"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not list(tmp_path.glob("fashion-mnist/*/checkpoint.pt")):
        time.sleep(0.2)
    assert list(tmp_path.glob("fashion-mnist/*/checkpoint.pt")), "no checkpoint within 10 minutes"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130
    (card_path,) = tmp_path.glob("fashion-mnist/*/card.json")
    assert read_card(card_path)["status"] == "interrupted"
    hint = [line for line in err.splitlines() if "interrupted" in line]
    assert len(hint) == 1 and f"actbench run --resume {card_path.parent}" in hint[0]
    resumed = actbench("run", "--resume", str(card_path.parent), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {card_path.parent} after epoch" in resumed.stderr and "of 3" in resumed.stderr
    card = read_card(card_path)
    assert card["status"] == "complete"
    assert card["metrics"]["complete"]["samples"] == 2  # --complete-samples survives the resume
    assert "--complete-samples 2" in card["command"] or "--complete-samples" in card["command"]
