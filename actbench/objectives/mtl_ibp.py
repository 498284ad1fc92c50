"""MTL-IBP (De Palma et al., ICLR 2024, "Expressive losses for verified robustness via convex
combinations"): ``L = α·CE_rob(lb_IBP(B(x, eps_t))) + (1 − α)·CE(z(x_adv), y)``.

What follows the reference implementation (alessandrodepalma/expressive-losses, ``train.py`` with
``--mtlibp``, ``attack.py:pgd_attack``):

- **Attack** (:func:`attack`): over the clipped box of radius ``s·eps_t`` (``attack_eps_factor`` s,
  default 1; not clipped to the final eps, as in the reference), a start drawn uniformly in the box,
  ``steps`` signed-gradient steps on CE of ``step_size`` times the box's per-pixel half-width, each
  projected back onto the box. With one step the attack point is the point after the step (the
  reference's ``n_steps == 1`` case); with more, the best-CE point seen. The default — one step of 10×
  the half-width (``--train_att_n_steps 1 --train_att_step_size 10.0``, the MNIST, CIFAR-10 8/255 and
  TinyImageNet settings) — lands every pixel whose gradient is not zero on a corner of the box.
  The attack runs with BatchNorm in eval mode (``model.eval()`` before the attack).
- **BatchNorm**: after the attack the model returns to train mode and the adversarial batch is
  forwarded there, so the adversarial logits use *the adversarial batch's* statistics; the IBP bounds
  then use the statistics of that last forward pass too (the reference's note: "the bounding
  computation will use the BN statistics from the last forward pass: in this case, from the adversarial
  points"). The clean batch is forwarded first in train mode as well (no gradient: its loss is not part
  of the objective once eps > 0), so the running statistics see both batches, as in the reference.
- **Warm-up** (eps_t = 0): clean CE plus the Shi regulariser on a 1e-6 box (``eps_handling`` with
  ``min_eps_reg``); the reference also runs its attack on that 1e-6 box, whose point differs from x by
  at most 1e-6 — here the clean batch's statistics serve the regulariser's bounds instead.

α per track from the paper (``baselines/mtl_ibp.toml``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from actbench.bounds import clean_forward as bn_forward
from actbench.certify.attack import eval_mode
from actbench.objectives import passes
from actbench.objectives.base import (
    Objective,
    Param,
    Stats,
    StepContext,
    positive,
    register_objective,
    unit_interval,
)
from actbench.objectives.cost import FORWARD
from actbench.objectives.ibp import IBP_FAMILY_DEFAULTS
from actbench.objectives.losses import robust_ce
from actbench.objectives.robust import accuracy, regulariser, regulariser_eps


def attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, radius: float, steps: int, step_size: float,
    lo: float = 0.0, hi: float = 1.0, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MTL-IBP's PGD on CE inside the clipped box of ``radius`` (see the module docstring); eval mode."""
    x = x.detach()
    lower, upper = (x - radius).clamp(min=lo, max=hi), (x + radius).clamp(min=lo, max=hi)
    half = (upper - lower) / 2
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    current = lower + noise * (upper - lower)
    best_x = current.clone()
    best_loss = torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)
    with eval_mode(model), torch.enable_grad():
        for i in range(steps + (1 if steps > 1 else 0)):
            point = current.detach().requires_grad_(True)
            loss = F.cross_entropy(model(point), y, reduction="none")
            better = loss.detach() >= best_loss
            best_loss = torch.where(better, loss.detach(), best_loss)
            best_x[better] = point.detach()[better]
            if i == steps:  # the final evaluation of a multi-step attack
                break
            (grad,) = torch.autograd.grad(loss.sum(), point)
            current = torch.maximum(torch.minimum(point.detach() + step_size * half * grad.sign(), upper), lower)
    return (current if steps == 1 else best_x).detach()


@register_objective("mtl_ibp")
class MTLIBP(Objective):
    """Convex combination of the IBP robust loss and an adversarial loss."""

    KEY_PARAM = "alpha"
    PARAMS = {
        **IBP_FAMILY_DEFAULTS,
        "alpha": unit_interval("weight α of the IBP robust loss", 0.5),
        "attack_scale": Param(float, 1.0, "attack radius s·eps_t", lambda v: v >= 1.0, ">= 1"),
        "steps": positive(int, "PGD steps of the attack", 1),
        "step_size": positive(float, "PGD step size relative to the attack box's per-pixel half-width", 10.0),
    }

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, Stats]:
        if ctx.eps_t <= 0:
            return self._warmup(model, x, y, ctx)
        with torch.no_grad():  # the clean batch in train mode: running statistics, accuracy stat
            logits = passes.plain_forward(model, x, ctx, grad=False)
        steps = self.params["steps"]
        x_adv = attack(model, x, y, self.params["attack_scale"] * ctx.eps_t, steps, self.params["step_size"],
                       ctx.lo, ctx.hi)  # fmt: skip
        ctx.counter.add("attack", x.shape[0], FORWARD * (2 * steps + (1 if steps > 1 else 0)))
        ctx.counter.add("forward", x.shape[0], FORWARD, grad=True)
        adv_logits, adv_stats = bn_forward(model, x_adv)  # train mode: the adversarial batch's statistics
        adversarial = F.cross_entropy(adv_logits, y)
        result = passes.margin_bounds(model, x, y, ctx.eps_t, ctx, "ibp", adv_stats)
        robust = robust_ce(result.lower)
        alpha = self.params["alpha"]
        loss = alpha * robust + (1 - alpha) * adversarial
        stats: Stats = {"train_acc": accuracy(logits, y), "robust_loss": float(robust.detach()),
                        "adv_loss": float(adversarial.detach()), "adv_acc": accuracy(adv_logits, y)}  # fmt: skip
        reg, reg_stats = regulariser(result, ctx, self.shi_reg)
        stats.update(reg_stats)
        return (loss + reg if reg is not None else loss), stats

    def _warmup(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                ctx: StepContext) -> tuple[torch.Tensor, Stats]:
        """eps_t = 0: clean CE plus the regulariser on a 1e-6 box."""
        logits, bn_stats = passes.clean_forward(model, x, ctx)
        clean = F.cross_entropy(logits, y)
        stats: Stats = {"clean_loss": float(clean.detach()), "train_acc": accuracy(logits, y)}
        if not (self.shi_reg and ctx.reg_weight > 0):
            return clean, stats
        result = passes.margin_bounds(model, x, y, regulariser_eps(ctx.eps_t), ctx, "ibp", bn_stats)
        reg, reg_stats = regulariser(result, ctx, self.shi_reg)
        stats.update(reg_stats)
        return (clean + reg if reg is not None else clean), stats
