"""Complete verification as a phase of certification, after the incomplete cascade and the attack.

At each eps of the phase (the track's headline eps), a sample of the fixed subset (the first
``samples`` certified samples) is

- ``certified`` when the cascade's sound radius already reaches eps, ``falsified`` when the attack
  found an adversarial example at a radius <= eps (boxes are nested, so it lies in the eps-box), or
  ``misclassified``: these are never searched;
- otherwise searched by a complete verifier (``bab`` or ``milp``, ``actbench.complete``) with a time
  limit per sample: ``verified``, ``falsified`` (a counterexample the float64 model confirms) or
  ``unknown``.

Certified accuracy at eps is then exact up to the unknown share. Radius-based metrics (ACR) keep
coming from the sound incomplete cascade.

The time limit is in wall seconds, or with ``clock = "process"`` in this process's CPU seconds (on a
machine shared with other jobs that limit does not shrink with the load; ``seconds`` in the records and
the card follow the same clock).

Resume: every finished search is appended as one JSON line to ``state_file`` (flushed and fsynced, so
an interruption loses at most the sample in flight; a torn last line is ignored). The first line is
a key (model weights' hash, verifier, timeout, options, eps); a file with another key is started
afresh, so a changed model or setting never reuses stale answers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from actbench.errors import InvalidConfig, SoundnessError

COMPLETE_VERIFIERS = ("bab", "milp")
STATE_FILE = "complete.jsonl"


@dataclass
class CompleteSettings:
    """The phase's settings; ``state_file`` (None: no resume) is where finished searches are logged."""

    verifier: str = "bab"
    eps: tuple[float, ...] = ()
    samples: int | None = None
    timeout: float = 10.0
    clock: str = "wall"  # or "process": the time limit in this process's CPU seconds (shared machines)
    options: dict[str, Any] = field(default_factory=dict)
    state_file: Path | None = None

    def check(self) -> CompleteSettings:
        if self.verifier not in COMPLETE_VERIFIERS:
            raise InvalidConfig(f"complete verifier {self.verifier!r}: choose {' or '.join(COMPLETE_VERIFIERS)}")
        if not self.eps or any(not (math.isfinite(e) and e > 0) for e in self.eps):
            raise InvalidConfig(f"complete verification needs eps values > 0, got {list(self.eps)}")
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise InvalidConfig(f"complete timeout must be a positive number of seconds, got {self.timeout}")
        if self.samples is not None and (isinstance(self.samples, bool) or int(self.samples) < 1):
            raise InvalidConfig(f"complete samples must be >= 1, got {self.samples!r}")
        if self.clock not in ("wall", "process"):
            raise InvalidConfig(f"complete clock {self.clock!r}: choose wall or process")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"verifier": self.verifier, "eps": [float(e) for e in self.eps], "samples": self.samples,
                "timeout": self.timeout, "clock": self.clock, "options": dict(self.options)}

    @classmethod
    def from_track(cls, table: dict[str, Any], eps_default: Sequence[float]) -> CompleteSettings | None:
        """From a track's ``[certify_complete]`` table (None when the track has none)."""
        from actbench.config import complete_table

        if not table:
            return None
        t = complete_table(table, float(eps_default[0]))
        return cls(t["verifier"], tuple(t["eps"]), t["samples"], t["timeout"], t["clock"], t["options"]).check()


@dataclass
class CompleteReport:
    """``records``: one row per (eps, sample); ``summary``: per-eps counts (goes to the card)."""

    records: pd.DataFrame
    summary: dict[str, Any]


def model_key(model: nn.Module) -> str:
    """A hash of every parameter and buffer (float64 bytes): the identity of the verified model."""
    digest = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(t.detach().to(torch.float64).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


class StateLog:
    """The append-only JSON-lines log of finished searches (see the module docstring)."""

    def __init__(self, path: Path | None, key: dict[str, Any]):
        self.path, self.key = path, key
        self.done: dict[tuple[float, int], dict[str, Any]] = {}
        if path is None:
            return
        lines = path.read_text().splitlines() if path.is_file() else []
        header = _parse(lines[0]) if lines else None
        if header is not None and header.get("key") == key:
            for line in lines[1:]:
                entry = _parse(line)
                if entry is not None and {"eps", "index", "status"} <= set(entry):
                    self.done[(float(entry["eps"]), int(entry["index"]))] = entry
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_line(path, {"key": key}, mode="w")

    def add(self, entry: dict[str, Any]) -> None:
        self.done[(float(entry["eps"]), int(entry["index"]))] = entry
        if self.path is not None:
            _write_line(self.path, entry, mode="a")


def _parse(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _write_line(path: Path, obj: dict[str, Any], mode: str) -> None:
    with path.open(mode) as fh:
        fh.write(json.dumps(obj, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def complete_phase(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, correct: torch.Tensor,
                   best: torch.Tensor, attack_r: torch.Tensor, settings: CompleteSettings, bar: Any = None,
                   lo: float = 0.0, hi: float = 1.0) -> CompleteReport:
    """Run the phase on the first ``settings.samples`` of ``x`` (``[N, *in]``, the model's dtype).

    ``best``/``attack_r`` are the cascade's certified and attack radii (``[N]``, float64, attack ``inf``
    when never attacked, NaN when no attack ran). ``bar`` is a rich Progress to add a task to.
    """
    from actbench.complete import compile_model, now, use_clock, verify_compiled
    from actbench.complete.problem import robustness_spec

    settings = settings.check()
    n = x.shape[0] if settings.samples is None else min(int(settings.samples), x.shape[0])
    net = compile_model(model, tuple(x.shape[1:]), dtype=torch.float64)
    key = {"model": model_key(model), **settings.to_dict(), "samples": n}
    log = StateLog(settings.state_file, key)
    attack = torch.nan_to_num(attack_r.double(), nan=math.inf)
    rows: list[dict[str, Any]] = []
    todo = [(e, i) for e in settings.eps for i in range(n)
            if bool(correct[i]) and float(best[i]) < e and float(attack[i]) > e]
    task = bar.add_task(f"complete {settings.verifier}", total=len(todo)) if bar is not None else None
    for eps in settings.eps:
        for i in range(n):
            if not bool(correct[i]):
                rows.append(_row(eps, i, "misclassified", "clean", 0.0))
            elif float(best[i]) >= eps:
                rows.append(_row(eps, i, "certified", "cascade", 0.0))
            elif float(attack[i]) <= eps:
                rows.append(_row(eps, i, "falsified", "attack", 0.0))
            else:
                entry = log.done.get((float(eps), i))
                if entry is None:
                    xi = x[i:i + 1].double()
                    lower, upper = (xi - eps).clamp(min=lo), (xi + eps).clamp(max=hi)
                    spec = robustness_spec(labels[i:i + 1].cpu(), net.num_outputs)
                    with use_clock(settings.clock):
                        start = now()
                        v = verify_compiled(net, lower.cpu(), upper.cpu(), spec, settings.verifier,
                                            settings.timeout, settings.options)
                        seconds = now() - start
                    entry = {"eps": float(eps), "index": i, "status": v.status, "reason": v.reason,
                             "seconds": round(seconds, 4), "domains": v.domains}
                    log.add(entry)
                rows.append(_row(eps, i, entry["status"], settings.verifier, float(entry["seconds"]),
                                 entry.get("reason", "")))
                if task is not None:
                    bar.advance(task)
    records = pd.DataFrame(rows)
    _check_nested(records)
    return CompleteReport(records, summarize_complete(records, settings, n))


def _row(eps: float, i: int, status: str, source: str, seconds: float, reason: str = "") -> dict[str, Any]:
    return {"eps": float(eps), "index": i, "status": status, "source": source, "seconds": seconds, "reason": reason}


def _check_nested(records: pd.DataFrame) -> None:
    """A sample proven at eps cannot be falsified at a smaller eps (its box is inside): else a bug."""
    if records.empty:
        return
    proven = records[records["status"].isin(["certified", "verified"])].groupby("index")["eps"].max()
    broken = records[records["status"] == "falsified"].groupby("index")["eps"].min()
    both = proven.index.intersection(broken.index)
    bad = [i for i in both if broken[i] <= proven[i]]
    if bad:
        i = bad[0]
        raise SoundnessError(f"sample {i}: proven at eps {proven[i]:g} but falsified at eps {broken[i]:g}; a "
                             "verifier is unsound, please report this with the checkpoint")


def summarize_complete(records: pd.DataFrame, settings: CompleteSettings, n: int) -> dict[str, Any]:
    """Per-eps counts for the card: certified (cascade + search), falsified, unknown, time spent."""
    per_eps = []
    for eps in settings.eps:
        r = records[records["eps"] == float(eps)]
        searched = r[r["source"] == settings.verifier]
        count = {s: int((r["status"] == s).sum()) for s in ("certified", "verified", "falsified", "unknown",
                                                             "misclassified")}
        certified = count["certified"] + count["verified"]
        times = searched["seconds"].to_numpy(float)
        per_eps.append({
            "eps": float(eps),
            "certified": certified,
            "certified_by_cascade": count["certified"],
            "verified_by_search": count["verified"],
            "falsified": count["falsified"],
            "falsified_by_search": int((searched["status"] == "falsified").sum()),
            "unknown": count["unknown"],
            "misclassified": count["misclassified"],
            "searched": int(len(searched)),
            "seconds": round(float(times.sum()), 3),
            "median_seconds": round(float(statistics.median(times)), 4) if len(times) else 0.0,
            "certified_accuracy": certified / n if n else 0.0,
            "upper_accuracy": (n - count["falsified"] - count["misclassified"]) / n if n else 0.0,
        })
    return {**settings.to_dict(), "samples": n, "per_eps": per_eps}


def complete_columns(records: pd.DataFrame, n: int) -> dict[str, np.ndarray]:
    """Per-sample status columns ``complete_<eps>`` for ``radii.parquet`` (empty string: not in the subset)."""
    out: dict[str, np.ndarray] = {}
    for eps, group in records.groupby("eps"):
        col = np.full(n, "", dtype=object)
        col[group["index"].to_numpy(int)] = group["status"].to_numpy(str)
        out[f"complete_{float(eps):g}"] = col
    return out
