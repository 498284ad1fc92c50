"""Per-epoch validation metrics and the model-selection rule (validation split only, never test).

Every epoch the model is evaluated in eval mode on the first ``track.selection_samples`` validation
samples: clean accuracy, IBP certified accuracy at the track's eps and the IBP average certified
radius capped at eps (``certified_radii``, rtol ``SELECTION_RTOL``). One rule for every method:

- ``val-acceps``: keep the epoch with the best ``acceps = sqrt(clean_acc · ACR/eps)`` (the geometric
  mean of clean accuracy and normalised ACR, computed over all selection samples at once, not per
  batch as in the ACERT reference), considering only epochs whose scheduled eps has reached its target
  by the end of the epoch; the first best wins ties. If training ends before eps reaches its target,
  the last epoch is selected and the selection records that fallback.
- ``last``: the last epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from actbench.data import Split
from actbench.errors import InvalidConfig

SELECTION_RTOL = 1e-3
SELECTION_RULES = ("val-acceps", "last")


@dataclass(frozen=True)
class ValMetrics:
    """Validation metrics of one epoch."""

    acc: float
    cert_acc: float
    acr: float
    acceps: float


def acceps(acc: float, acr: float, eps: float) -> float:
    """``sqrt(acc · ACR/eps)``; ``acc`` when eps is 0."""
    if eps <= 0:
        return acc
    return math.sqrt(max(acc, 0.0) * max(acr, 0.0) / eps)


def evaluate(model: nn.Module, split: Split, eps: float, batch_size: int, device: torch.device | str) -> ValMetrics:
    """Clean accuracy, IBP certified accuracy at ``eps`` and IBP ACR (capped at eps), in eval mode."""
    from actbench.certify.radius import certified_radii

    was_training = model.training
    model.eval()
    correct = certified = 0
    radius_sum = 0.0
    try:
        with torch.no_grad():
            for x, y, _ in split.batches(batch_size, device=device):
                logits = model(x)
                correct += int((logits.argmax(1) == y).sum())
                if eps > 0:
                    res = certified_radii(model, x, y, eps, method="ibp", rtol=SELECTION_RTOL, logits=logits)
                    certified += int(res.certified_at_max.sum())
                    radius_sum += float(res.radius.double().sum())
    finally:
        model.train(was_training)
    n = max(len(split), 1)
    acc, acr = correct / n, radius_sum / n
    cert_acc = certified / n if eps > 0 else acc
    return ValMetrics(acc, cert_acc, acr, acceps(acc, acr, eps))


@dataclass
class Selector:
    """Keeps the selected epoch, its value and a copy of its weights."""

    rule: str
    epoch: int | None = None
    value: float | None = None
    state: dict | None = None
    fallback: bool = False

    def __post_init__(self) -> None:
        if self.rule not in SELECTION_RULES:
            raise InvalidConfig(f"selection rule {self.rule!r}: choose one of {', '.join(SELECTION_RULES)}")

    def update(self, epoch: int, metrics: ValMetrics, eps_reached: bool, model: nn.Module) -> bool:
        """Offer the model after ``epoch`` (1-based); returns True when it becomes the selected one."""
        if self.rule == "last":
            take, fallback = True, False
        elif eps_reached:
            take = self.fallback or self.value is None or metrics.acceps > self.value
            fallback = False
        else:  # eps not reached yet: provisional pick (the last epoch) until a candidate appears
            take, fallback = self.epoch is None or self.fallback, True
        if take:
            self.epoch, self.value, self.fallback = epoch, metrics.acceps, fallback
            self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return take

    def summary(self) -> dict:
        out = {"rule": self.rule, "epoch": self.epoch, "value": self.value}
        if self.fallback:
            out["note"] = "eps never reached its target: the last epoch was selected"
        return out

    def state_dict(self) -> dict:
        return {"rule": self.rule, "epoch": self.epoch, "value": self.value, "state": self.state,
                "fallback": self.fallback}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
