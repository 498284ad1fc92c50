"""Results folders for the site tests: the committed fixture of real runs, enriched in a temporary copy with
what other parts of actbench write (a second certification protocol, complete-verification counts, a tuning
study, an external submission, model files) and a literature file."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

from leaderboard_helpers import results_root

from actbench.certify.protocol import from_record
from actbench.store import read_card, write_card

LITERATURE = '''
[[point]]
method = "paper method A"
method_name = "ibp"
paper = "Author et al. A test paper. 2099"
paper_link = "https://example.org/paper-a"
link = "https://example.org/paper-a/table-2"
source = "Table 2 of the test paper"
eps = 0.1
clean_accuracy = 0.55
certified_accuracy = 0.41
verifier = "MN-BaB"
time_limit = "1000 s per sample"
model = "CNN7"

[[point]]
method = "paper method B"
paper = "Author et al. Another test paper. 2099"
link = "https://example.org/paper-b"
source = "README headline"
eps = 0.05
certified_accuracy = 0.62
verifier = "IBP"
time_limit = "none: one bound pass per sample"
'''


def literature_dir(root: Path, track: str = "fashion-mnist") -> Path:
    """A literature folder with two published points for ``track`` (one without clean accuracy)."""
    folder = root / "literature"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{track}.toml").write_text(LITERATURE)
    return folder


def _runs(root: Path, method: str) -> list[Path]:
    return sorted(p.parent for p in root.glob(f"*/{method}-*/card.json"))


def add_float32_record(run_dir: Path) -> dict[str, Any]:
    """A second certification record under a float32 (not sound) protocol, with its own radii file."""
    card = read_card(run_dir)
    headline = next(r for r in card["certifications"] if r.get("track_protocol"))
    protocol = from_record({**headline["protocol"], "dtype": "float32"})
    record = copy.deepcopy(headline)
    record.update(protocol=protocol.record(), track_protocol=False, radii=f"radii-{protocol.id}.parquet")
    record["metrics"]["acr"] = {k: v * 1.01 for k, v in record["metrics"]["acr"].items()}
    shutil.copyfile(run_dir / "radii.parquet", run_dir / record["radii"])
    card["certifications"].append(record)
    write_card(run_dir, card)
    return record


def add_complete_counts(run_dir: Path, eps: float, counts: tuple[int, int, int]) -> None:
    """Complete-verification counts (certified, falsified, unknown) at ``eps`` on the headline record."""
    card = read_card(run_dir)
    headline = next(r for r in card["certifications"] if r.get("track_protocol"))
    headline["complete"] = {"verifier": "bab", "timeout": 60, "eps": [eps], "certified": [counts[0]],
                            "falsified": [counts[1]], "unknown": [counts[2]]}  # fmt: skip
    write_card(run_dir, card)


def add_tune(run_dir: Path, study: str = "s1", trials: int = 40) -> None:
    card = read_card(run_dir)
    card["tune"] = {"study": study, "trial": 3, "trials": trials, "objectives": ["clean_accuracy", "acr"]}
    write_card(run_dir, card)


def add_external(root: Path, source: Path, name: str = "my-submission") -> Path:
    """An external submission: a copy of ``source`` with ``source: external`` and its submission section."""
    target = source.parent / name
    shutil.copytree(source, target)
    card = read_card(target)
    card.update(run_id=name, source="external", command=f"actbench certify --model {name}.onnx")
    card["method"] = {"name": name, "title": f"external submission ({name}.onnx)", "objective": "external",
                      "key_param": None, "params": {}, "spec": None}  # fmt: skip
    card["submission"] = {"file": f"{name}.onnx", "sha256": "ab" * 32, "claimed": {"clean_accuracy": 0.9}}
    (target / "model.onnx").write_bytes(b"onnx-bytes")
    write_card(target, card)
    return target


def enriched_results(tmp: Path) -> dict[str, Any]:
    """A copy of the fixture with every optional card section the site renders; returns what was added."""
    root = tmp / "results"
    shutil.copytree(results_root(tmp / "base"), root)
    adaptive, ibp, standard = _runs(root, "adaptive"), _runs(root, "ibp"), _runs(root, "standard")
    record = add_float32_record(adaptive[0])
    add_complete_counts(adaptive[1], 0.1, (60, 30, 10))
    for run in ibp:
        add_tune(run)
    external = add_external(root, standard[0])
    (adaptive[0] / "model.pt").write_bytes(b"model-bytes")
    return {"root": root, "float32": record, "float32_run": adaptive[0], "complete_run": adaptive[1],
            "tuned": ibp, "external": external, "model_run": adaptive[0]}  # fmt: skip
