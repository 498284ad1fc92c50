"""Comparisons that cannot mislead: configuration identity, one certification protocol per table, seed
means with tuning budgets and hypervolumes, no silent success, and schema-1 cards migrated."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
from leaderboard_helpers import EPS, TRACK, _metrics, _radii, make_card
from test_certify_fixtures import fmnist, make_run, one_thread
from test_cli import actbench

from actbench.certify.protocol import Protocol, track_protocol
from actbench.certify.run import certify_run
from actbench.compare import compare_command, hypervolume, hypervolume_table, runs_table, threshold_table
from actbench.config import load_track
from actbench.store import configuration_of, load_cards, read_card, write_card

ROOT = Path(__file__).resolve().parents[1]


def _write(root: Path, card: dict, radii=None) -> Path:
    run_dir = root / TRACK / card["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "card.json").write_text(json.dumps(card, indent=2))
    if radii is not None:
        radii.to_parquet(run_dir / "radii.parquet", index=False)
    return run_dir


def _card(run_id: str, method: str, params: dict, seed: int, acc: float, robust: float, rng, **track):
    key = next(iter(params), None)
    card = make_card(run_id, method, method.upper(), key, params.get(key, 0.0), seed, None)
    card["method"]["params"] = dict(params)
    radii = _radii(rng, 200, acc, robust)
    card["metrics"] = _metrics(radii)
    card["track"].update(track)
    return card, radii


# --- configuration identity ------------------------------------------------------------------------------


def test_unlike_runs_are_never_averaged(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "results"
    # the real standard run, and one with --train-subset 500 --seed 1 (same protocol: 200 samples)
    _write(root, *_card("standard-s0", "standard", {}, 0, 0.89, 0.0, rng))
    _write(root, *_card("standard-s1-small", "standard", {}, 1, 0.55, 0.0, rng, train_subset=500))
    # SABR κ 0 and κ 0.5 at one λ (what `--grid kappa=0,0.5` makes), two seeds each
    for kappa in (0.0, 0.5):
        for seed in (0, 1):
            _write(root, *_card(f"sabr-k{kappa}-s{seed}", "sabr", {"lam": 0.4, "kappa": kappa}, seed, 0.8 + kappa / 10,
                                0.5, rng))
    table = runs_table(load_cards(root).frame, TRACK)
    standard = table[table["method"] == "standard"]
    assert sorted(standard["n"]) == [1, 1] and sorted(standard["config_label"]) == ["full training split", "subset 500"]
    sabr = table[table["method"] == "sabr"]
    assert list(sabr["n"]) == [2, 2] and sorted(sabr["config_label"]) == ["kappa=0", "kappa=0.5"]
    # the --samples 50 run is another protocol: it never joins a table of 200-sample runs
    card, radii = _card("standard-s2-fewer", "standard", {}, 2, 0.7, 0.0, rng)
    card["certification"]["samples"] = 50
    _write(root, card, radii)
    index = load_cards(root)
    table = runs_table(index.frame, TRACK)
    assert "standard-s2-fewer" not in ",".join(table["runs"])
    protocols = set(index.frame["protocol"])
    assert len(protocols) == 2


def test_configuration_hash_ignores_the_seed_and_certification() -> None:
    card = make_card("a", "ibp", "IBP", "kappa", 0.5, 0, None)
    other = copy.deepcopy(card)
    other["seed"] = 3
    other["track"]["certify_samples"] = 17
    assert configuration_of(card)["hash"] == configuration_of(other)["hash"]
    for change in (lambda c: c["method"]["params"].update(kappa=0.25), lambda c: c["track"].update(lr=1.0),
                   lambda c: c["budget"]["limit"].update(value=9), lambda c: c.update(recipe={"name": "published"}),
                   lambda c: c["track"].update(train_subset=10)):
        changed = copy.deepcopy(card)
        change(changed)
        assert configuration_of(changed)["hash"] != configuration_of(card)["hash"]


# --- certification protocols -----------------------------------------------------------------------------


needs_data = pytest.mark.skipif(fmnist()[2] != "fashion-mnist", reason="needs the Fashion-MNIST files")


@needs_data
def test_recertification_adds_a_record_and_never_changes_the_headline(tmp_path: Path) -> None:
    root = tmp_path / "results"
    run = make_run(root / TRACK / "ibp-run", samples=30)
    with one_thread():
        certify_run(run, progress=False)  # the track's protocol: the headline
    before_card = read_card(run)
    before_table = compare_command(root, TRACK, None, "best", "markdown")
    radii_before = (run / "radii.parquet").read_bytes()
    with one_thread():
        after = certify_run(run, verifier="crown-ibp", samples=12, progress=False)
    assert after["metrics"] == before_card["metrics"] and after["certification"] == before_card["certification"]
    assert (run / "radii.parquet").read_bytes() == radii_before
    after_table = compare_command(root, TRACK, None, "best", "markdown")
    lines = after_table.splitlines(keepends=True)
    listed = [line for line in lines if line.startswith("- other protocols on this track")]
    assert len(listed) == 1  # the new protocol is listed beside the table, which is otherwise byte-identical
    assert "".join(line for line in lines if line not in listed) == before_table
    assert len(after["certifications"]) == 2
    other = after["certifications"][-1]
    assert not other["track_protocol"] and other["metrics"]["samples"] == 12
    shown = compare_command(root, TRACK, None, "best", "markdown", protocol=other["protocol"]["id"])
    assert other["protocol"]["id"] in shown and "first 12 samples" in shown and "ibp-run" not in before_table
    data = json.loads(compare_command(root, TRACK, None, "best", "json", protocol=other["protocol"]["id"]))
    assert data["runs"][0]["n"] == 1 and data["protocol"]["id"] == other["protocol"]["id"]


@needs_data
def test_float32_certificates_never_join_a_float64_table(tmp_path: Path) -> None:
    root = tmp_path / "results"
    sound = make_run(root / TRACK / "sound-run", samples=20)
    fast = make_run(root / TRACK / "float32-run", samples=20)
    with one_thread():
        certify_run(sound, progress=False)
        record = certify_run(fast, progress=False, dtype="float32")["certifications"][-1]
    assert not record["protocol"]["sound"] and "not sound" in record["protocol"]["label"]
    default = json.loads(compare_command(root, TRACK, None, "best", "json"))
    assert default["protocol"]["sound"] and default["runs"][0]["runs"] == "sound-run"
    text = compare_command(root, TRACK, None, "best", "table", protocol=record["protocol"]["id"])
    assert "NOT SOUND" in text and "float32" in text
    assert "float32" in compare_command(root, TRACK, None, "best", "table")  # listed as another protocol


def test_track_protocol_is_float64_with_the_attack() -> None:
    for name in ("fashion-mnist", "mnist", "cifar10", "tinyimagenet"):
        protocol = track_protocol(load_track(name))
        assert protocol.sound and protocol.checked and protocol.dtype == "float64"
    assert not Protocol(("ibp",), dtype="float32").sound and not Protocol(("ibp",), attack=None).checked
    assert Protocol(("ibp",)).id != Protocol(("ibp",), samples=10).id


# --- honest trade-off tables -----------------------------------------------------------------------------


def test_threshold_table_uses_seed_means_and_reports_tuning_budgets(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    root = tmp_path / "results"
    for i in range(6):  # adaptive: 6 configurations, 2 seeds each
        for seed in (0, 1):
            _write(root, *_card(f"adaptive-k{i}-s{seed}", "adaptive", {"kappa": i / 10}, seed, 0.7 + 0.03 * i,
                                0.6 - 0.05 * i, rng))
    for seed in (0, 1):  # crown_ibp: 1 configuration
        _write(root, *_card(f"crown-s{seed}", "crown_ibp", {"kappa": 0.0}, seed, 0.75, 0.55, rng))
    frame = load_cards(root).frame
    configs = runs_table(frame, TRACK)
    table = threshold_table(frame, TRACK, (0.7,))
    row = table[table["method"] == "adaptive"].iloc[0]
    assert row["configs"] == 6 and table[table["method"] == "crown_ibp"].iloc[0]["configs"] == 1
    mine = configs[(configs["method"] == "adaptive") & (configs["clean_accuracy_mean"] >= 0.7)]
    assert row["best_acr"] == pytest.approx(mine["acr_best_mean"].max())
    best_single = max(read_card(p)["metrics"]["acr"]["best"] for p in (root / TRACK).glob("adaptive-*"))
    assert row["best_acr"] <= best_single  # a seed mean, not the luckiest run
    best_config = mine.loc[mine["acr_best_mean"].idxmax()]
    runs = best_config["runs"].split(",")
    acrs = [read_card(root / TRACK / r)["metrics"]["acr"]["best"] for r in runs]
    assert row["best_acr"] == pytest.approx(statistics.mean(acrs))
    assert row["best_acr_std"] == pytest.approx(statistics.stdev(acrs))
    text = compare_command(root, TRACK, None, "best", "markdown")
    assert "unequal tuning budgets" in text and "adaptive 6" in text and "crown_ibp 1" in text


def test_hypervolume_against_a_hand_computation(tmp_path: Path) -> None:
    assert hypervolume([0.9, 0.8, 0.5], [0.1, 0.3, 0.6]) == pytest.approx(0.09 + 0.8 * 0.2 + 0.5 * 0.3)
    assert hypervolume([0.5, 0.4], [0.5, 0.4]) == pytest.approx(0.25)  # a dominated point adds nothing
    assert hypervolume([], []) == 0 and hypervolume([float("nan")], [0.5]) == 0
    rng = np.random.default_rng(5)
    root = tmp_path / "results"
    for i, kappa in enumerate((0.0, 0.5)):
        _write(root, *_card(f"ibp-{i}", "ibp", {"kappa": kappa}, 0, 0.7 + 0.1 * i, 0.6 - 0.2 * i, rng))
    frame = load_cards(root).frame
    configs = runs_table(frame, TRACK).sort_values("clean_accuracy_mean")
    (x1, x2), (a1, a2) = configs["clean_accuracy_mean"], configs["acr_best_mean"] / EPS
    c1, c2 = configs["cert_best@0.1_mean"]
    hand_acr = x2 * max(a2, 0) + x1 * max(a1 - a2, 0) if a1 > a2 else x2 * a2
    hand_cert = x2 * c2 + x1 * max(c1 - c2, 0) if c1 > c2 else x2 * c2
    volumes = hypervolume_table(frame, TRACK).iloc[0]
    assert volumes["hv_acr"] == pytest.approx(hand_acr) and volumes["hv_cert"] == pytest.approx(hand_cert)


# --- no silent success -----------------------------------------------------------------------------------


def test_compare_and_site_refuse_missing_empty_and_corrupt_results(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    shutil.copytree(ROOT / "tests" / "fixtures" / "results", corrupt)
    (corrupt / TRACK / "broken").mkdir()
    (corrupt / TRACK / "broken" / "card.json").write_text('{"schema": 2, "run_id": ')
    for command in ("compare", "site"):
        extra = ["--out", str(tmp_path / "site")] if command == "site" else []
        for folder, message in ((tmp_path / "missing", "does not exist"), (empty, "no run cards"),
                                (corrupt, "unreadable card")):
            out = actbench(command, "--results", str(folder), *extra)
            assert out.returncode == 2, (command, folder, out.stdout, out.stderr)
            assert message in out.stderr and "Traceback" not in out.stderr
            assert len(out.stderr.strip().splitlines()) == 1  # one message
        ok = actbench(command, "--results", str(corrupt), "--skip-invalid", *extra)
        assert ok.returncode == 0 and "broken" in ok.stdout + ok.stderr
    out = actbench("compare", "--results", str(corrupt), "--skip-invalid", "--budget", "epochs=99")
    assert out.returncode == 2 and "runs exist but none was given budget epochs=99" in out.stderr


# --- schema-1 cards load, migrated -----------------------------------------------------------------------


SCHEMA1_STUDY = ROOT / "tests" / "fixtures" / "schema1-study"  # the cards of the first study, as committed


def test_committed_schema1_cards_migrate(tmp_path: Path) -> None:
    paths = sorted(SCHEMA1_STUDY.glob("*/*/card.json"))
    assert paths, "the schema-1 fixture cards are missing"
    # the protocol the study was certified under: the track's cascade (complete verification came later)
    registered = track_protocol(dataclasses.replace(load_track(TRACK), certify_complete={})).id
    for path in paths:
        raw = json.loads(path.read_text())
        card = read_card(path)
        assert card["schema"] == 2 and raw["schema"] in (1, 2)
        if raw["status"] != "complete":
            continue
        (record,) = [r for r in card["certifications"] if r["track_protocol"]]
        assert record["metrics"] == raw["metrics"] and record["protocol"]["id"] == raw.get("certification", {}).get(
            "protocol", record["protocol"]["id"])
        assert card["config"]["hash"] == configuration_of(raw)["hash"]
        if raw["schema"] == 1 and raw["track"]["name"] == TRACK and raw["track"].get("preset") == "full":
            assert record["protocol"]["id"] == registered  # the track's protocol, unchanged since
        copy_dir = tmp_path / path.parent.name
        write_card(copy_dir, card)  # a migrated card writes as schema 2 and reads back the same
        again = read_card(copy_dir)
        assert again["certifications"] == card["certifications"] and again["config"] == card["config"]
    assert len(load_cards(SCHEMA1_STUDY).complete()) == sum(
        json.loads(p.read_text())["status"] == "complete" for p in paths)


def test_atomic_writes_are_readable_by_others(tmp_path: Path) -> None:
    import os
    import stat

    from actbench.store import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "card.json", "{}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "card.json").stat().st_mode)
    assert mode == 0o644, oct(mode)
