"""Certification engine: a cascade of verifiers over a split, per-sample records and card metrics.

Choices (documented here because the card numbers depend on them):

* **Cascade.** Verifiers run cheapest first (ibp -> crown-ibp -> crown). A costlier verifier runs only
  on correctly classified samples whose best radius so far is below ``eps_max``, and its root search is
  warm-started at that best radius (evaluated first). Its column ``radius_<v>`` is always its *own*
  certified radius (the search returns an eps it certified itself); samples it skipped because a
  cheaper verifier already certified ``eps_max`` hold NaN. ``radius_best`` is the max over verifiers.
* **Per-verifier metrics** (``acr[v]``, ``certified_accuracy[v]``) are cumulative over the cascade:
  they use the best radius of ``v`` and every cheaper verifier that ran before it, which is what the
  cascade certifies after stage ``v`` (so ``acr["ibp"]`` is pure IBP, the last stage equals "best").
  With ``cascade=False`` every verifier runs on every sample and its metrics are its own.
* **Counting.** A sample counts as certified at eps when it is correctly classified (clean margin > 0)
  and its radius is >= eps. Radii are capped at ``eps_max``, so grid values above the cap count 0.
  Grid and ``eps_test`` values are snapped into the root search, so for a monotone verifier (IBP)
  "radius >= eps" agrees exactly with direct certification at eps.
* **Time limit.** ``max_seconds`` applies per verifier; samples it did not finish in time get NaN for
  that verifier (never counted as certified by it) and status "unknown" unless certified at the cap.
* **Attack.** Margin PGD with restarts, bisection for the smallest attacked eps (upper bound); ``inf``
  when no attack succeeded within ``eps_max``, 0 when misclassified. A certified radius >= the attack
  radius is a contradiction (the adversarial point lies inside the certified box): ``SoundnessError``.
  PGD iterates on a float32 copy for speed; each candidate is clamped into the float64 box and judged
  by the float64 model, so a finite attack radius is a real adversarial example of the certified model.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from actbench.certify.attack import attack_radii
from actbench.certify.complete import CompleteSettings, complete_columns, complete_phase
from actbench.certify.memory import samples_per_pass
from actbench.certify.radius import certified_radii, clean_margin
from actbench.config import parse_eps, parse_eps_grid
from actbench.data import Split
from actbench.device import device_info, no_tf32
from actbench.errors import InvalidConfig, ResourceLimit, SoundnessError, UnknownName

VERIFIERS = ("ibp", "crown-ibp", "crown", "alpha-crown")  # cascade order, cheapest first
DEFAULT_CASCADE = VERIFIERS[:3]  # alpha-crown (an optimisation per probe) only when asked for
DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class AttackSettings:
    """Margin PGD used for empirical (upper-bound) radii."""

    steps: int = 10
    restarts: int = 1
    step_size: float = 0.2  # fraction of eps per step
    bisect_steps: int = 5  # the attack radius is an upper bound; 5 halvings locate it within ~3 % of eps_max
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "restarts": self.restarts, "step_size": self.step_size,
                "bisect_steps": self.bisect_steps, "seed": self.seed}


@dataclass
class CertifyReport:
    """``records``: one row per sample; ``summary`` -> card["metrics"]; ``settings`` -> card["certification"]."""

    records: pd.DataFrame
    summary: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float64`` / ``"float64"`` -> torch dtype (float32 or float64 only)."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise InvalidConfig(f"dtype {dtype!r}: choose float64 (default, sound) or float32")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise InvalidConfig(f"dtype {dtype}: choose torch.float64 or torch.float32")
    return dtype


def check_verifiers(verifiers: Sequence[str]) -> tuple[str, ...]:
    """Validate names and return them in cascade order (cheapest first)."""
    if isinstance(verifiers, str):
        verifiers = (verifiers,)
    if not verifiers:
        raise InvalidConfig("no verifier given; choose from " + ", ".join(VERIFIERS))
    for v in verifiers:
        if v not in VERIFIERS:
            raise UnknownName("verifier", v, VERIFIERS)
    return tuple(v for v in VERIFIERS if v in verifiers)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled, transient=False)


def _radii_adaptive(model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, eps_max: float,
                    method: str, init: torch.Tensor | None, rtol: float, snap: list[float],
                    deadline: float | None):
    """``certified_radii`` that halves the batch when a verifier refuses it for memory (ResourceLimit)."""
    try:
        return [(slice(0, x.shape[0]), certified_radii(model, x, y, eps_max, method, rtol=rtol, logits=logits,
                                                       init=init, snap=snap, deadline=deadline))]
    except ResourceLimit:
        if x.shape[0] == 1:
            raise
    half = x.shape[0] // 2
    out = []
    for part in (slice(0, half), slice(half, x.shape[0])):
        sub = _radii_adaptive(model, x[part], y[part], logits[part], eps_max, method,
                              None if init is None else init[part], rtol, snap, deadline)
        out += [(slice(part.start + s.start, part.start + s.stop), r) for s, r in sub]
    return out


@no_tf32
def certify(
    model: nn.Module,
    split: Split,
    eps_max: float,
    eps_grid: Sequence[float],
    verifiers: Sequence[str] = DEFAULT_CASCADE,
    attack: bool = True,
    samples: int | None = None,
    dtype: torch.dtype | str = torch.float64,
    max_seconds: float | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = True,
    eps_test: Sequence[float] = (),
    rtol: float = 1e-4,
    cascade: bool = True,
    attack_settings: AttackSettings | None = None,
    complete: CompleteSettings | None = None,
) -> CertifyReport:
    """Certify the first ``samples`` samples of ``split`` (all when None); see the module docstring.

    The model is deep-copied, converted to ``dtype`` (float64 by default) and put in eval mode; the
    caller's model is not modified. Raises ``SoundnessError`` if a certificate contradicts an attack.
    """
    verifiers = check_verifiers(verifiers)
    dtype = resolve_dtype(dtype)
    eps_max = parse_eps(eps_max)
    grid = parse_eps_grid(list(eps_grid))
    tests = parse_eps_grid(list(eps_test)) if len(eps_test) else []
    if batch_size < 1:
        raise InvalidConfig(f"batch size must be >= 1, got {batch_size}")
    if max_seconds is not None and not max_seconds > 0:
        raise InvalidConfig(f"max_seconds must be positive, got {max_seconds}")
    attack_settings = attack_settings or AttackSettings()
    device = torch.device(device)
    net = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    data = split.subset(samples)
    n = len(data)
    if n == 0:
        raise InvalidConfig("nothing to certify: the split is empty")
    snap = sorted({e for e in [*grid, *tests] if 0 < e <= eps_max})
    batches = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]

    def batch(s: int, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        return data.tensors(torch.arange(s, e), device=device, dtype=dtype)  # uint8 to the device, then cast

    with torch.no_grad():
        parts = [net(batch(s, e)[0]) for s, e in batches]
    logits = torch.cat(parts).double().cpu()
    # samples per root search: CROWN's A matrices grow with classes x widest layer (see certify.memory)
    chunks = {v: samples_per_pass(v, net, batch(0, 1)[0], logits.shape[1], batch_size) for v in verifiers}
    labels = data.labels.clone().cpu()
    margin = clean_margin(logits, labels)
    correct = margin > 0
    radius = {v: torch.full((n,), math.nan, dtype=torch.float64) for v in verifiers}
    passes = {v: torch.zeros(n, dtype=torch.int64) for v in verifiers}
    unknown = {v: torch.zeros(n, dtype=torch.bool) for v in verifiers}
    best = torch.zeros(n, dtype=torch.float64)
    seconds: dict[str, float] = {}

    with _progress(progress) as bar:
        for v in verifiers:
            start = time.monotonic()
            deadline = None if max_seconds is None else start + max_seconds
            radius[v][~correct] = 0.0
            todo = correct.clone()
            if eps_max == 0:  # every correctly classified sample is certified at the cap, 0
                radius[v][correct] = 0.0
                todo[:] = False
            if cascade:
                todo &= best < eps_max
            task = bar.add_task(f"certify {v}", total=int(todo.sum()))
            for s, e in batches:
                idx = torch.arange(s, e)[todo[s:e]]
                if idx.numel() == 0:
                    continue
                if deadline is not None and time.monotonic() > deadline:
                    unknown[v][idx] = True
                    bar.advance(task, idx.numel())
                    continue
                x, y = batch(s, e)
                for chunk in idx.split(chunks[v]):
                    if deadline is not None and time.monotonic() > deadline:
                        unknown[v][chunk] = True
                        bar.advance(task, chunk.numel())
                        continue
                    local = chunk - s
                    init = best[chunk] if cascade else None
                    init = None if init is None or not bool((init > 0).any()) else init
                    for part, res in _radii_adaptive(net, x[local], y[local], logits[chunk].to(dtype), eps_max, v,
                                                     init, rtol, snap, deadline):
                        sub = chunk[part]
                        r = res.radius.double().cpu().clamp(max=eps_max)  # float32 cap may be 1 ulp above
                        timed_out = deadline is not None and time.monotonic() > deadline
                        late = ~res.converged.cpu() & timed_out
                        radius[v][sub] = torch.where(late, torch.full_like(r, math.nan), r)
                        unknown[v][sub] = late
                        passes[v][sub] = res.passes.cpu()
                    bar.advance(task, chunk.numel())
            best = torch.fmax(best, torch.nan_to_num(radius[v], nan=0.0))
            seconds[v] = time.monotonic() - start

        attack_r = torch.full((n,), math.nan, dtype=torch.float64)
        if attack:
            start = time.monotonic()
            gen = torch.Generator().manual_seed(attack_settings.seed)
            # PGD iterates in float32 (faster); every success is re-checked on the float64 model.
            runner = copy.deepcopy(net).float() if dtype == torch.float64 else None
            task = bar.add_task("attack", total=n)
            for s, e in batches:
                x, y = batch(s, e)
                res = attack_radii(net, x, y, eps_max, attack_settings.steps, attack_settings.restarts,
                                   attack_settings.step_size, attack_settings.bisect_steps, start=best[s:e],
                                   generator=gen, attack_model=runner)
                attack_r[s:e] = res.radius.cpu()
                bar.advance(task, e - s)
            seconds["attack"] = time.monotonic() - start
            _check_consistency(radius, best, attack_r, correct)

        phase = None
        if complete is not None:  # complete verification of the samples left between certified and attacked
            start = time.monotonic()
            m = n if complete.samples is None else min(int(complete.samples), n)
            phase = complete_phase(net, batch(0, m)[0], labels, correct, best, attack_r, complete, bar)
            seconds["complete"] = time.monotonic() - start

    records = _records(labels, logits, correct, radius, passes, unknown, best, attack_r, eps_max, verifiers)
    summary = summarize(records, verifiers, eps_max, grid, tests, cascade, attack)
    if phase is not None:
        records = records.assign(**complete_columns(phase.records, n))
        summary["complete"] = phase.summary
    settings = {
        "verifiers": list(verifiers),
        "cascade": cascade,
        "dtype": str(dtype).replace("torch.", ""),
        "samples": n,
        "eps_max": eps_max,
        "rtol": rtol,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "passes_per_sample": {v: _mean_passes(passes[v], radius[v], correct) for v in verifiers},
        "attack": attack_settings.to_dict() if attack else None,
        "unknown": int((records["status"] == "unknown").sum()),
        "metric_rule": "cumulative over the cascade" if cascade and len(verifiers) > 1 else "own",
        "max_seconds": max_seconds,
        "device": device_info(device),
        "complete": None if complete is None else complete.to_dict(),
    }
    return CertifyReport(records, summary, settings)


def _mean_passes(passes: torch.Tensor, radius: torch.Tensor, correct: torch.Tensor) -> float:
    """Mean bound passes over the correctly classified samples the verifier ran on."""
    ran = correct & (passes > 0)
    return round(float(passes[ran].double().mean()), 3) if bool(ran.any()) else 0.0


def _check_consistency(radius: dict[str, torch.Tensor], best: torch.Tensor, attack_r: torch.Tensor,
                       correct: torch.Tensor) -> None:
    bad = correct & (best > 0) & (best >= attack_r)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        which = [v for v, r in radius.items() if float(torch.nan_to_num(r[i], nan=0.0)) >= float(attack_r[i])]
        raise SoundnessError(
            f"sample {i}: certified radius {float(best[i]):.6g} ({', '.join(which)}) is not below the radius "
            f"{float(attack_r[i]):.6g} at which PGD found an adversarial example; a verifier is unsound, "
            "please report this with the checkpoint")


def _records(labels: torch.Tensor, logits: torch.Tensor, correct: torch.Tensor, radius: dict[str, torch.Tensor],
             passes: dict[str, torch.Tensor], unknown: dict[str, torch.Tensor], best: torch.Tensor,
             attack_r: torch.Tensor, eps_max: float, verifiers: tuple[str, ...]) -> pd.DataFrame:
    n = labels.shape[0]
    cols: dict[str, Any] = {
        "index": np.arange(n, dtype=np.int64),
        "label": labels.numpy().astype(np.int64),
        "prediction": logits.argmax(1).numpy().astype(np.int64),
        "correct": correct.numpy(),
        "margin": clean_margin(logits, labels).numpy(),
    }
    for v in verifiers:
        cols[f"radius_{v}"] = radius[v].numpy()
    cols["radius_best"] = best.numpy()
    cols["radius_attack"] = attack_r.numpy()
    for v in verifiers:
        cols[f"passes_{v}"] = passes[v].numpy()
    any_unknown = torch.zeros(n, dtype=torch.bool)
    for v in verifiers:
        any_unknown |= unknown[v]
    status = np.where(~correct.numpy(), "misclassified",
                      np.where(best.numpy() >= eps_max, "certified_max",
                               np.where(any_unknown.numpy(), "unknown", "partial")))
    cols["status"] = status
    return pd.DataFrame(cols)


def summarize(records: pd.DataFrame, verifiers: Sequence[str], eps_max: float, eps_grid: Sequence[float],
              eps_test: Sequence[float] = (), cascade: bool = True, attack: bool = True) -> dict[str, Any]:
    """Card metrics from per-sample records (``certify`` output or a stored ``radii.parquet``)."""
    correct = records["correct"].to_numpy(bool)
    n = len(records)
    curves: dict[str, np.ndarray] = {}
    cum = np.zeros(n)
    for v in verifiers:
        own = np.nan_to_num(records[f"radius_{v}"].to_numpy(float), nan=0.0)
        cum = np.maximum(cum, own) if cascade else own
        curves[v] = cum.copy()
    curves["best"] = records["radius_best"].to_numpy(float)

    def acc(r: np.ndarray, eps: float) -> float:
        return float(np.mean(correct & (r >= eps)))

    summary: dict[str, Any] = {
        "clean_accuracy": float(np.mean(correct)),
        "samples": n,
        "eps_grid": [float(e) for e in eps_grid],
        "acr": {k: float(np.mean(np.where(correct, r, 0.0))) for k, r in curves.items()},
        "certified_accuracy": {k: [acc(r, e) for e in eps_grid] for k, r in curves.items()},
        "attack_accuracy": None,
        "eps_test": [float(e) for e in eps_test],
        "certified_accuracy_test": {k: [acc(r, e) for e in eps_test] for k, r in curves.items()},
    }
    if attack and "radius_attack" in records and not records["radius_attack"].isna().all():
        ra = records["radius_attack"].to_numpy(float)
        summary["attack_accuracy"] = [float(np.mean(correct & (ra > e))) for e in eps_grid]
    return summary
