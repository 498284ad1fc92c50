"""Per-epoch validation metrics and the model-selection rules (validation split only, never test).

Every epoch the model is evaluated in eval mode on the first ``track.selection_samples`` validation
samples: clean accuracy, IBP certified accuracy at the track's eps and the IBP average certified
radius capped at eps (``certified_radii``, rtol ``SELECTION_RTOL``), plus PGD accuracy at eps when the
rule needs it. The rule is the track's (``val-acceps``) unless the method spec declares its own, one
per method family:

- ``val-acceps`` (certified-training methods): the epoch with the best ``acceps = sqrt(clean_acc ·
  ACR/eps)`` (the geometric mean of clean accuracy and normalised ACR, computed over all selection
  samples at once, not per batch as in the ACERT reference), among epochs whose scheduled eps has
  reached its target by the end of the epoch.
- ``val-accuracy`` (standard training): the epoch with the best clean validation accuracy, any epoch.
  Its ACR is about 0, so acceps would pick on noise.
- ``val-pgd-accuracy`` (PGD-AT): the epoch with the best validation accuracy under a 10-step PGD at the
  track's eps, among epochs whose eps has reached its target: the robust-overfitting early stopping of
  Rice, Wong and Kolter (ICML 2020), the usual model selection of adversarial training. Clean accuracy
  would favour the least robust epochs; IBP-based acceps is ≈ 0 for PGD-AT models.
- ``last``: the last epoch.

The card's ``selection`` records the rule, the selected epoch, its value and (``validation``) that
epoch's validation metrics: clean accuracy, IBP certified accuracy and ACR at the track's eps, acceps
(and PGD accuracy when measured). ``actbench tune`` scores trials on them.

The first best wins ties. If training ends before eps reaches its target, a rule that needs it selects
the last epoch and records that fallback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from actbench.data import Split
from actbench.errors import InvalidConfig

SELECTION_RTOL = 1e-3
SELECTION_RULES = ("val-acceps", "val-accuracy", "val-pgd-accuracy", "last")
NEEDS_EPS = {"val-acceps": True, "val-pgd-accuracy": True, "val-accuracy": False, "last": False}
PGD_STEPS, PGD_STEP_SIZE, PGD_SEED = 10, 0.25, 0  # the validation attack of val-pgd-accuracy


@dataclass(frozen=True)
class ValMetrics:
    """Validation metrics of one epoch (``pgd_acc`` is NaN when the rule does not need it)."""

    acc: float
    cert_acc: float
    acr: float
    acceps: float
    pgd_acc: float = float("nan")

    def value(self, rule: str) -> float:
        """The number ``rule`` maximises."""
        return {"val-acceps": self.acceps, "val-accuracy": self.acc, "val-pgd-accuracy": self.pgd_acc,
                "last": 0.0}[rule]  # fmt: skip


def acceps(acc: float, acr: float, eps: float) -> float:
    """``sqrt(acc · ACR/eps)``; ``acc`` when eps is 0."""
    if eps <= 0:
        return acc
    return math.sqrt(max(acc, 0.0) * max(acr, 0.0) / eps)


def evaluate(model: nn.Module, split: Split, eps: float, batch_size: int, device: torch.device | str,
             pgd: bool = False) -> ValMetrics:
    """Clean accuracy, IBP certified accuracy at ``eps`` and IBP ACR (capped at eps), in eval mode;
    with ``pgd`` also the accuracy under a 10-step margin PGD at ``eps`` (a fixed seed, reproducible)."""
    from actbench.certify.attack import attack_success
    from actbench.certify.radius import certified_radii

    was_training = model.training
    model.eval()
    correct = certified = robust = 0
    radius_sum = 0.0
    generator = torch.Generator().manual_seed(PGD_SEED)
    try:
        for x, y, _ in split.batches(batch_size):
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                logits = model(x)
                correct += int((logits.argmax(1) == y).sum())
                if eps > 0:
                    res = certified_radii(model, x, y, eps, method="ibp", rtol=SELECTION_RTOL, logits=logits)
                    certified += int(res.certified_at_max.sum())
                    radius_sum += float(res.radius.double().sum())
            if pgd:
                hit = attack_success(model, x, y, eps, steps=PGD_STEPS, restarts=1, step_size_ratio=PGD_STEP_SIZE,
                                     generator=generator) if eps > 0 else (logits.argmax(1) != y)  # fmt: skip
                robust += int((~hit).sum())
    finally:
        model.train(was_training)
    n = max(len(split), 1)
    acc, acr = correct / n, radius_sum / n
    cert_acc = certified / n if eps > 0 else acc
    return ValMetrics(acc, cert_acc, acr, acceps(acc, acr, eps), robust / n if pgd else float("nan"))


@dataclass
class Selector:
    """Keeps the selected epoch, its value and a copy of its weights."""

    rule: str
    epoch: int | None = None
    value: float | None = None
    state: dict | None = None
    fallback: bool = False
    metrics: dict | None = None  # the selected epoch's validation metrics (the card's selection.validation)

    def __post_init__(self) -> None:
        if self.rule not in SELECTION_RULES:
            raise InvalidConfig(f"selection rule {self.rule!r}: choose one of {', '.join(SELECTION_RULES)}")

    @property
    def needs_pgd(self) -> bool:
        """Whether validation must run the PGD attack for this rule."""
        return self.rule == "val-pgd-accuracy"

    def update(self, epoch: int, metrics: ValMetrics, eps_reached: bool, model: nn.Module) -> bool:
        """Offer the model after ``epoch`` (1-based); returns True when it becomes the selected one."""
        value = metrics.value(self.rule)
        if self.rule == "last":
            take, fallback = True, False
        elif eps_reached or not NEEDS_EPS[self.rule]:
            take = self.fallback or self.value is None or value > self.value
            fallback = False
        else:  # eps not reached yet: provisional pick (the last epoch) until a candidate appears
            take, fallback = self.epoch is None or self.fallback, True
        if take:
            self.epoch, self.value, self.fallback = epoch, value, fallback
            self.metrics = {"accuracy": metrics.acc, "certified_accuracy": metrics.cert_acc, "acr": metrics.acr,
                            "acceps": metrics.acceps, **({} if math.isnan(metrics.pgd_acc) else
                                                         {"pgd_accuracy": metrics.pgd_acc})}  # fmt: skip
            self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return take

    def summary(self) -> dict:
        out = {"rule": self.rule, "epoch": self.epoch, "value": self.value}
        if self.metrics is not None:
            out["validation"] = dict(self.metrics)
        if self.fallback:
            out["note"] = "eps never reached its target: the last epoch was selected"
        return out

    def state_dict(self) -> dict:
        return {"rule": self.rule, "epoch": self.epoch, "value": self.value, "state": self.state,
                "fallback": self.fallback, "metrics": self.metrics}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
